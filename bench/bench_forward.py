"""GoogLeNet's forward pass: ours against chainer.links.GoogLeNet.

    .venv/bin/python bench/bench_forward.py [ROUNDS]

Both networks hold the same synthetic weights and classify the same random
224x224 batches, alternating within each round, at batch 1, 8 and 32; the best
round of each is reported as images/s with the ratio. Peak memory at batch 32
is measured in a fresh process per side that loads only that network: its
peak RSS (VmHWM), and the peak of what the forward pass allocated
(tracemalloc, which sees numpy's buffers). GOOGLENET_FAST=0 measures our
standard-function path instead.
"""
import os
import subprocess
import sys
import tempfile
import time

import numpy

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path[:0] = [ROOT, os.path.join(ROOT, 'tests')]

from googlenet_chainer.compat import chainer  # noqa: E402

import caffe_fixtures  # noqa: E402
import tuned_googlenet  # noqa: E402
from googlenet_chainer.caffemodel import transfer  # noqa: E402
from googlenet_chainer.model_file import save_model  # noqa: E402

BATCHES = (1, 8, 32)
TARGET = 3.0


def networks():
    weights = caffe_fixtures.random_weights(0)
    ours = tuned_googlenet.GoogLeNet(1000)
    transfer({k: list(v) for k, v in weights.items()}, ours,
             log=lambda line: None)
    return ours, caffe_fixtures.chainer_port(weights)


def forward(side, net, x):
    if side == 'ours':
        return net.predict(x)
    with chainer.no_backprop_mode(), chainer.using_config('train', False):
        return net.forward(x, layers=['prob'])['prob'].array


def images_per_second(side, net, x, repeat):
    start = time.perf_counter()
    for _ in range(repeat):
        forward(side, net, x)
    return repeat * len(x) / (time.perf_counter() - start)


MEMORY_PROBE = """
import sys, tracemalloc
sys.path[:0] = {path!r}
import numpy
import bench_forward
import chainer.links as L
from googlenet_chainer.model_file import load_model
side, model, batch = sys.argv[1], sys.argv[2], int(sys.argv[3])
if side == 'ours':
    net, _ = load_model(model)
else:
    net = L.GoogLeNet(pretrained_model=model)
x = numpy.random.RandomState(0).uniform(-120, 130, (batch, 3, 224, 224))
x = x.astype(numpy.float32)
before = bench_forward.peak_rss_kb()
tracemalloc.start()
bench_forward.forward(side, net, x)
traced = tracemalloc.get_traced_memory()[1]
print(before, bench_forward.peak_rss_kb(), traced)
"""


def peak_rss_kb():
    # VmHWM: ru_maxrss would carry the parent's peak across exec.
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith('VmHWM:'):
                return int(line.split()[1])


def peak_memory_mb(side, model, batch):
    """(peak RSS before the forward pass, peak RSS after it, peak of the
    allocations it made), in MB, in a fresh process holding one network."""
    code = MEMORY_PROBE.format(path=[HERE, ROOT])
    out = subprocess.run([sys.executable, '-c', code, side, model,
                          str(batch)], capture_output=True, text=True,
                         check=True).stdout.split()
    return int(out[0]) / 1024, int(out[1]) / 1024, int(out[2]) / 2 ** 20


def main():
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    ours, theirs = networks()
    rng = numpy.random.RandomState(0)
    results = {}
    for batch in BATCHES:
        x = rng.uniform(-120, 130, (batch, 3, 224, 224)).astype(numpy.float32)
        repeat = max(1, 8 // batch)
        forward('ours', ours, x)  # warm up both
        forward('chainer', theirs, x)
        best = {'ours': 0.0, 'chainer': 0.0}
        for _ in range(rounds):
            for side, net in (('ours', ours), ('chainer', theirs)):
                best[side] = max(best[side],
                                 images_per_second(side, net, x, repeat))
        results[batch] = best
    fast = os.environ.get('GOOGLENET_FAST', '1') != '0'
    print('forward pass, images/s (best of {} alternating rounds; ours: {} '
          'path)'.format(rounds, 'fast' if fast else 'standard'))
    print('batch   ours  chainer.links.GoogLeNet  ratio')
    for batch, best in results.items():
        print('{:5d} {:6.1f} {:24.1f} {:6.2f}x'.format(
            batch, best['ours'], best['chainer'],
            best['ours'] / best['chainer']))
    ours_rates = [results[b]['ours'] for b in BATCHES]
    ratios = [results[b]['ours'] / results[b]['chainer'] for b in (1, 8)]
    print('target >= {:.0f}x at batch 1 and 8: {}'.format(
        TARGET, 'met' if min(ratios) >= TARGET else 'NOT MET'))
    steady = all(b >= 0.95 * a for a, b in zip(ours_rates, ours_rates[1:]))
    print('throughput does not fall as the batch grows: {}'.format(
        'met' if steady else 'NOT MET'))
    with tempfile.TemporaryDirectory() as tmp:
        models = {'ours': os.path.join(tmp, 'ours.model'),
                  'chainer': os.path.join(tmp, 'chainer.npz')}
        save_model(models['ours'], ours)
        chainer.serializers.save_npz(models['chainer'], theirs)
        mem = {side: peak_memory_mb(side, path, 32)
               for side, path in models.items()}
    for side, (before, after, traced) in mem.items():
        print('batch 32, {:7s}: peak RSS {:5.0f} MB (model loaded: {:4.0f} '
              'MB); the forward pass allocated at most {:4.0f} MB'.format(
                  side, after, before, traced))
    print('peak memory not above Chainer\'s port: {}'.format(
        'met' if mem['ours'][1] <= mem['chainer'][1] else 'NOT MET'))


if __name__ == '__main__':
    main()
