"""Fine-tuning epochs with and without --cache-features, at several cuts.

    .venv/bin/python bench/bench_train_cache.py [IMAGES_PER_CLASS [CUT...]]

Builds a synthetic caffemodel and a 4-class dataset of photo-sized JPEGs
(36 a class by default), then, in one process and on the same images, runs
2 epochs on the feature cache and 2 without it (the frozen part on the fast
path each step, two loader processes), side by side: ROUNDS rounds at
--freeze-until inc4e (inc5a, inc5b and the heads training), one at each
other CUT (default inc5b inc4a); the defaults otherwise (batch 32,
snapshots, plots, evaluation). It prints each cut's ratio of the second
epochs, the median and range of inc4e's, the cache's size per image and
view at every cut (feature_cache.feature_size; the files measured agree),
the host, and its load average at the start and the end.

The runs take train_googlenet.train's steps but the final report. Epoch
times come from the training log (elapsed_time between epochs); the cache
is built before the first epoch (by the first run at a cut; the others
copy it in), its time per image and view is printed apart (with the data's
decoding for it).
"""
import contextlib
import io
import os
import shutil
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
from googlenet_chainer.training import feature_cache, plan, run_folder  # noqa
from googlenet_chainer.training.trainer import (  # noqa: E402
    build_trainer, set_up_model, training_sets)

TARGET = 10.0
ROUNDS = 3


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
        model, planned = plan.plan_run(args)
        args = planned.args
        device = set_up_model(args, model, planned)
        start = time.perf_counter()
        train_set, val_set = training_sets(args, planned, model, device)
        made = time.perf_counter() - start
        trainer = build_trainer(args, planned, model, train_set, val_set,
                                device)
        try:
            trainer.run()
        finally:
            run_folder.release(args.out)
    log = trainer.get_extension('LogReport').log
    return made, numpy.diff([0.0] + [e['elapsed_time'] for e in log]), \
        args.out


def host():
    with open('/proc/cpuinfo') as f:
        names = [line.split(':', 1)[1].strip() for line in f
                 if line.startswith('model name')]
    return '{}, {} cores'.format(names[0] if names else 'unknown',
                                 os.cpu_count())


def cached(common, tmp, cut, name):
    """(the later epoch, the first epoch, cache seconds per image and view,
    bytes per image and view on disk) of a cached run at cut, in seconds;
    the cache of an earlier run at the cut is copied in, and reused."""
    out = os.path.join(tmp, name)
    first = os.path.join(tmp, 'cached_' + cut, 'features')
    if os.path.exists(first):
        shutil.copytree(first, os.path.join(out, 'features'))
    made, times, out = run(common + ['--out', out, '--cache-features',
                                     '--freeze-until', cut])
    views = numpy.load(os.path.join(out, 'features', 'train.npy'),
                       mmap_mode='r')
    val = numpy.load(os.path.join(out, 'features', 'val.npy'), mmap_mode='r')
    crops = views.shape[0] * views.shape[1] + val.shape[0]
    return times[1], times[0], made / crops, views[0, 0].nbytes


def uncached(common, tmp, cut, name):
    """The later epoch of an uncached run at cut (the first pays for the
    loader's and the kernels' start)."""
    _, times, _ = run(common + ['--out', os.path.join(tmp, name),
                                '--freeze-until', cut])
    return times[1]


def rounds(common, tmp, cut, count):
    """count rounds at cut of a cached run and an uncached one, each of 2
    epochs: (the first round's cached figures, the uncached epochs, the
    ratios)."""
    first, plain, ratios = None, [], []
    for k in range(count):
        figures = cached(common, tmp, cut, 'cached_{}{}'.format(
            cut, k or ''))
        first = first or figures
        plain.append(uncached(common, tmp, cut, 'plain_{}{}'.format(cut, k)))
        ratios.append(plain[-1] / figures[0])
    return first, plain, ratios


def main():
    per_class = int(sys.argv[1]) if len(sys.argv) > 1 else 36
    cuts = ['inc4e'] + [cut for cut in sys.argv[2:] or ['inc5b', 'inc4a']
                        if cut != 'inc4e']
    print('host: {}; load average at the start: {:.2f}'.format(
        host(), os.getloadavg()[0]))
    print('KB per image and view, with the aux heads / without:')
    for cut in feature_cache.CUTS:
        print('  {:6} {:6.0f} / {:4.0f}'.format(
            cut, feature_cache.feature_size(cut) * 4 / 1000,
            feature_cache.feature_size(cut, False) * 4 / 1000))
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        model = caffe_fixtures.converted_model(tmp, 4)
        data = os.path.join(tmp, 'data')
        make_images(data, per_class)
        common = ['--train', data, '--model', model, '--no-progress',
                  '--lr', '3e-4', '--epoch', '2']
        for cut in cuts:
            results[cut] = rounds(common, tmp, cut, ROUNDS if cut == 'inc4e'
                                  else 1)
    images = 4 * per_class
    print('{} images ({} for training), batch 32, epoch times in s (the '
          'second of each run)'.format(
              images, images - 4 * max(1, round(per_class * 0.1))))
    print('cut     cached (first)  uncached  ratio   cache build per image '
          'and view  on disk')
    for cut in feature_cache.CUTS:
        if cut in results:
            (later, first, build, size), plain, ratios = results[cut]
            print('{:6} {:6.2f} ({:5.2f}) {:9.2f} {:6.1f}x {:14.3f} s '
                  '{:12.0f} KB'.format(cut, later, first, plain[0],
                                       ratios[0], build, size / 1000))
    ratios = results['inc4e'][2]
    print('at inc4e (inc5a, inc5b and the heads training), {} rounds of a '
          'cached and an uncached run: a cached epoch is {:.1f}x faster '
          '(median; {:.1f}x to {:.1f}x); target >= {:.0f}x: {}'.format(
              len(ratios), float(numpy.median(ratios)), min(ratios),
              max(ratios), TARGET, 'met' if numpy.median(ratios) >= TARGET
              else 'NOT MET'))
    print('load average at the end: {:.2f}'.format(os.getloadavg()[0]))


if __name__ == '__main__':
    main()
