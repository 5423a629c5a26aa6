"""Fine-tuning epochs with and without --cache-features, at several cuts.

    .venv/bin/python bench/bench_train_cache.py [IMAGES_PER_CLASS [CUT...]]

Builds a synthetic caffemodel and a 4-class dataset of photo-sized JPEGs
(36 a class by default), then runs train_googlenet in one process, on the
same images, with the defaults (batch 32, two loader processes, snapshots,
plots, evaluation):

- at --freeze-until inc4e (inc5a, inc5b and the heads training): 3 epochs
  on the feature cache, then 2 epochs without it; the ratio of their later
  epochs, side by side;
- at each other CUT (default inc5b inc4a), 2 epochs on the cache.

The run takes train_googlenet.train's steps but the final report. Epoch
times come from the training log (elapsed_time between epochs); the cache
is built before the first epoch, its time per image and view is printed
apart (with the data's decoding for it). The cache's size per image and view is printed for every cut
(feature_cache.feature_size; the files measured agree), and the host, its
load average at the start and the end.
"""
import contextlib
import io
import os
import sys
import tempfile
import time

import numpy
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path[:0] = [ROOT, os.path.join(ROOT, 'tests')]

import caffe_fixtures  # noqa: E402
import train_googlenet  # noqa: E402
from googlenet_chainer.training import feature_cache, run_folder  # noqa
from googlenet_chainer.training.trainer import (  # noqa: E402
    build_trainer, set_up_model, training_sets)

TARGET = 10.0


def make_images(root, per_class):
    rng = numpy.random.RandomState(0)
    for label in range(4):
        folder = os.path.join(root, 'class{}'.format(label))
        os.makedirs(folder)
        for i in range(per_class):
            array = rng.randint(0, 256, (300, 400, 3)).astype(numpy.uint8)
            array[:, :, label % 3] //= 2
            Image.fromarray(array).save(os.path.join(folder, '{}.jpg'.format(
                i)), quality=90)


def run(argv):
    """A run as train_googlenet.train takes its steps, printing nothing:
    (seconds to make the datasets, the feature cache included; each
    epoch's seconds from the log; the run's folder)."""
    with contextlib.redirect_stdout(io.StringIO()):
        args = train_googlenet.parse_arguments(argv)
        model, plan = run_folder.plan_run(args)
        args = plan.args
        device = set_up_model(args, model, plan)
        start = time.perf_counter()
        train_set, val_set = training_sets(args, plan, model, device)
        made = time.perf_counter() - start
        trainer = build_trainer(args, plan, model, train_set, val_set,
                                device)
        trainer.run()
    log = trainer.get_extension('LogReport').log
    return made, numpy.diff([0.0] + [e['elapsed_time'] for e in log]), \
        args.out


def host():
    with open('/proc/cpuinfo') as f:
        names = [line.split(':', 1)[1].strip() for line in f
                 if line.startswith('model name')]
    return '{}, {} cores'.format(names[0] if names else 'unknown',
                                 os.cpu_count())


def cached(common, tmp, cut, epochs):
    """(later epochs' median, first epoch, cache seconds per image and
    view, bytes per image and view on disk) of a cached run at cut."""
    made, times, out = run(common + [
        '--out', os.path.join(tmp, 'cached_' + cut), '--cache-features',
        '--freeze-until', cut, '--epoch', str(epochs)])
    views = numpy.load(os.path.join(out, 'features', 'train.npy'),
                       mmap_mode='r')
    val = numpy.load(os.path.join(out, 'features', 'val.npy'), mmap_mode='r')
    crops = views.shape[0] * views.shape[1] + val.shape[0]
    return (float(numpy.median(times[1:])), times[0], made / crops,
            views[0, 0].nbytes)


def main():
    per_class = int(sys.argv[1]) if len(sys.argv) > 1 else 36
    cuts = sys.argv[2:] or ['inc5b', 'inc4a']
    print('host: {}; load average at the start: {:.2f}'.format(
        host(), os.getloadavg()[0]))
    print('KB per image and view, with the aux heads / without:')
    for cut in feature_cache.CUTS:
        print('  {:6} {:6.0f} / {:4.0f}'.format(
            cut, feature_cache.feature_size(cut) * 4 / 1000,
            feature_cache.feature_size(cut, False) * 4 / 1000))
    with tempfile.TemporaryDirectory() as tmp:
        model = caffe_fixtures.converted_model(tmp, 4)
        data = os.path.join(tmp, 'data')
        make_images(data, per_class)
        common = ['--train', data, '--model', model, '--no-progress',
                  '--lr', '3e-4']
        results = {'inc4e': cached(common, tmp, 'inc4e', 3)}
        _, uncached, _ = run(common + ['--out', os.path.join(tmp, 'plain'),
                                       '--freeze-until', 'inc4e',
                                       '--epoch', '2'])
        for cut in cuts:
            results[cut] = cached(common, tmp, cut, 2)
    images = 4 * per_class
    print('{} images ({} for training), batch 32'.format(
        images, images - 4 * round(per_class * 0.1)))
    print('cut     cached epoch (later / first)   cache build, per image '
          'and view   on disk')
    for cut in feature_cache.CUTS:
        if cut in results:
            later, first, build, size = results[cut]
            print('{:6} {:9.2f} s / {:6.2f} s {:16.3f} s {:17.0f} KB'.format(
                cut, later, first, build, size / 1000))
    later = results['inc4e'][0]
    print('uncached epoch at inc4e (the trunk to inc4e each step, fast '
          'path): {:.2f} s, then {:.2f} s'.format(*uncached[:2]))
    ratio = uncached[1] / later
    print('ratio at inc4e: a cached epoch is {:.1f}x faster than an '
          'uncached one; target >= {:.0f}x: {}'.format(
              ratio, TARGET, 'met' if ratio >= TARGET else 'NOT MET'))
    print('load average at the end: {:.2f}'.format(os.getloadavg()[0]))


if __name__ == '__main__':
    main()
