"""Converting a bvlc_googlenet-sized caffemodel: ours against Chainer's own.

    .venv/bin/python bench/bench_convert.py

Writes a synthetic V1 caffemodel with every GoogLeNet layer (about 53.5 MB,
like the published one), then times, in one run and alternating,
caffemodel.convert and chainer.links.GoogLeNet.convert_caffemodel_to_npz.
Chainer's bundled caffe_pb2 only imports under the pure-Python protobuf
backend, so its side runs in a subprocess with
PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION=python, as a user of it must.
"""
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path[:0] = [ROOT, os.path.join(ROOT, 'tests')]

import caffe_fixtures  # noqa: E402
from googlenet_chainer.caffemodel import convert  # noqa: E402

TARGET_SECONDS = 3.0

CHAINER_SIDE = '''
import sys, time
from googlenet_chainer.compat import chainer
import chainer.links as L
start = time.perf_counter()
L.GoogLeNet.convert_caffemodel_to_npz(sys.argv[1], sys.argv[2])
print(time.perf_counter() - start)
'''


def time_ours(caffemodel, out):
    start = time.perf_counter()
    convert(caffemodel, out, log=lambda line: None)
    return time.perf_counter() - start


def time_chainer(caffemodel, out):
    env = dict(os.environ, PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION='python')
    start = time.perf_counter()
    result = subprocess.run([sys.executable, '-c', CHAINER_SIDE, caffemodel,
                             out], env=env, capture_output=True, text=True,
                            cwd=ROOT)
    wall = time.perf_counter() - start
    if result.returncode:
        raise SystemExit('chainer side failed:\n' + result.stderr)
    return wall


def main():
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 2
    with tempfile.TemporaryDirectory() as tmp:
        caffemodel = os.path.join(tmp, 'bvlc_googlenet.caffemodel')
        caffe_fixtures.write_caffemodel(
            caffemodel, caffe_fixtures.random_weights(0), 'v1')
        print('synthetic V1 caffemodel: {:,} bytes'.format(
            os.path.getsize(caffemodel)))
        ours, theirs = [], []
        for _ in range(rounds):
            ours.append(time_ours(caffemodel, os.path.join(tmp, 'a.model')))
            theirs.append(time_chainer(caffemodel,
                                       os.path.join(tmp, 'b.npz')))
        best_ours, best_theirs = min(ours), min(theirs)
        print('caffemodel.convert          {:6.2f} s (best of {})'
              .format(best_ours, rounds))
        print('GoogLeNet.convert_caffemodel_to_npz  {:6.2f} s (best of {}, '
              'wall, in a subprocess)'.format(best_theirs, rounds))
        print('ratio: ours is {:.1f}x faster; target <= {:.0f} s: {}'.format(
            best_theirs / best_ours, TARGET_SECONDS,
            'met' if best_ours <= TARGET_SECONDS else 'NOT MET'))


if __name__ == '__main__':
    main()
