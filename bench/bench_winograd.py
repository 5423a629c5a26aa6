"""Winograd F(4x4, 3x3) against F(2x2, 3x3) in the fast path.

    .venv/bin/python bench/bench_winograd.py [ROUNDS]

The same weights and inputs, the two alternating within each round (F(2x2)
everywhere by making fast_ops.winograd_f4_pays say no, against the rule as
it stands); per round the ratio of their speeds, reported as the median
and range of at least five rounds:

* per layer, one OpenBLAS thread: conv2's shape (56x56, 64 -> 192) and
  inc3b's (28x28, 128 -> 192), for 1 and 4 images;
* the whole forward pass, model.predict at batch 1, 8 and 32.
"""
import os
import statistics
import sys
import time

import numpy

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path[:0] = [ROOT, os.path.join(ROOT, 'tests')]

from googlenet_chainer.compat import chainer  # noqa: E402

import caffe_fixtures  # noqa: E402
import tuned_googlenet  # noqa: E402
from googlenet_chainer import fast_ops  # noqa: E402
from googlenet_chainer.caffemodel import transfer  # noqa: E402

RULE = fast_ops.winograd_f4_pays
SIDES = {'F(2x2)': lambda n, h, w: False, 'F(4x4) rule': RULE}
LAYERS = (('conv2', 56, 64, 192), ('inc3b', 28, 128, 192))


def seconds(run, repeat):
    start = time.perf_counter()
    for _ in range(repeat):
        run()
    return (time.perf_counter() - start) / repeat


def paired(run, rounds, repeat):
    """Per round, F(2x2)'s time over the rule's: the rule's speed-up."""
    ratios = []
    for _ in range(rounds):
        times = {}
        for name, pays in SIDES.items():
            fast_ops.winograd_f4_pays = pays
            times[name] = seconds(run, repeat)
        ratios.append(times['F(2x2)'] / times['F(4x4) rule'])
    fast_ops.winograd_f4_pays = RULE
    return ratios


def show(what, ratios):
    print('  {:28s} {:.2f}x  ({:.2f}-{:.2f}, {} rounds)'.format(
        what, statistics.median(ratios), min(ratios), max(ratios),
        len(ratios)))


def main():
    rounds = max(5, int(sys.argv[1]) if len(sys.argv) > 1 else 5)
    rng = numpy.random.RandomState(0)
    print('F(4x4) rule over F(2x2), speed ratio (> 1: the rule is faster)')
    print('per layer, one BLAS thread:')
    fast_ops.worker_count()  # finds OpenBLAS
    lib = fast_ops._blas['lib']
    threads = lib.get() if lib.found else None
    if lib.found:
        lib.set(1)
    for name, size, c, o in LAYERS:
        link = chainer.links.Convolution2D(c, o, 3, pad=1)
        kernels = {}  # each side's transformed filters, made once
        for n in (1, 4):
            x = rng.randn(n, size, size, c).astype(numpy.float32)
            ratios = paired(lambda: fast_ops.winograd_conv_relu(
                link, x, kernels=kernels), rounds, 5)
            show('{} {}x{}, {} image{}'.format(
                name, size, size, n, '' if n == 1 else 's'), ratios)
    if lib.found:
        lib.set(threads)
    weights = caffe_fixtures.random_weights(0)
    model = tuned_googlenet.GoogLeNet(1000)
    transfer({k: list(v) for k, v in weights.items()}, model,
             log=lambda line: None)
    print('whole forward pass (model.predict):')
    for batch in (1, 8, 32):
        x = rng.uniform(-100, 100, (batch, 3, 224, 224)).astype(
            numpy.float32)
        model.predict(x)
        ratios = paired(lambda: model.predict(x), rounds,
                        max(1, 16 // batch))
        show('batch {}'.format(batch), ratios)


if __name__ == '__main__':
    main()
