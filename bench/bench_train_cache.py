"""Epoch time of fine-tuning with and without --cache-features.

    .venv/bin/python bench/bench_train_cache.py [IMAGES_PER_CLASS]

Builds a synthetic caffemodel and a 4-class dataset of photo-sized images,
then runs train_googlenet in one process: 3 epochs with the feature cache,
and 1 epoch without it twice, with the fast trunk (the default) and with
Chainer's standard functions (fast_ops off: the trunk at about 0.2 s per
image that the target of 50x was set against). It compares the epoch times
that the training log records (elapsed_time between epochs). The cache is
built before the cached run's first epoch (its whole wall time is printed
too). Everything else (batch size 32, snapshots, plots, evaluation) is the
default.
"""
import contextlib
import io
import json
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
from googlenet_chainer import fast_ops  # noqa: E402
import train_googlenet  # noqa: E402

TARGET = 50.0


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


def epoch_times(out):
    with open(os.path.join(out, 'log')) as f:
        elapsed = [entry['elapsed_time'] for entry in json.load(f)]
    return numpy.diff([0.0] + elapsed)


def run(argv):
    buffer = io.StringIO()
    start = time.perf_counter()
    with contextlib.redirect_stdout(buffer):
        code = train_googlenet.main(argv)
    if code:
        raise SystemExit('training failed:\n' + buffer.getvalue())
    return time.perf_counter() - start


def main():
    per_class = int(sys.argv[1]) if len(sys.argv) > 1 else 36
    with tempfile.TemporaryDirectory() as tmp:
        model = caffe_fixtures.converted_model(tmp, 4)
        data = os.path.join(tmp, 'data')
        make_images(data, per_class)
        common = ['--train', data, '--model', model, '--no-progress',
                  '--lr', '3e-4']
        cached_out = os.path.join(tmp, 'cached')
        cached_wall = run(common + ['--out', cached_out, '--cache-features',
                                    '--epoch', '3'])
        plain_out = os.path.join(tmp, 'plain')
        run(common + ['--out', plain_out, '--epoch', '1'])
        standard_out = os.path.join(tmp, 'standard')
        with fast_ops.enabled(False):
            run(common + ['--out', standard_out, '--epoch', '1'])
        cached = epoch_times(cached_out)
        plain = epoch_times(plain_out)
        standard = epoch_times(standard_out)
    images = 4 * per_class
    print('{} images ({} for training), batch 32'.format(
        images, images - 4 * round(per_class * 0.1)))
    print('epoch without the cache, standard Chainer trunk: {:7.2f} s'.format(
        standard[0]))
    print('epoch without the cache, fast trunk (default):   {:7.2f} s'.format(
        plain[0]))
    print('cached run, whole (builds the cache, 3 epochs): {:.2f} s'.format(
        cached_wall))
    print('cached, first epoch:              {:7.2f} s'.format(cached[0]))
    later = cached[1:].max()
    print('cached, later epochs (slowest):   {:7.3f} s'.format(later))
    ratio = standard[0] / later
    print('ratio to the standard trunk: later cached epochs are {:.0f}x '
          'faster; target >= {:.0f}x: {}'.format(
              ratio, TARGET, 'met' if ratio >= TARGET else 'NOT MET'))
    print('ratio to the fast trunk: {:.0f}x (the trunk itself got faster; '
          'what is left is the heads\' update and the per-epoch extensions)'
          .format(plain[0] / later))


if __name__ == '__main__':
    main()
