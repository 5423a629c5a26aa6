"""The feature cache out of core and over MPI ranks.

    .venv/bin/python bench/bench_cache_mpi.py [SMALL LARGE]

Builds a synthetic 4-class model and LARGE (default 2,000) small PNG images,
then computes the trunk features of the first SMALL (default 500) and of all
LARGE images into a fresh cache (feature_cache.cached_features: the
centre crop, blocks of 32) in fresh processes with one BLAS thread each:

- peak resident memory (ru_maxrss) of one process for SMALL and for LARGE:
  the cache is 70 KB per image on disk, so a cache held in memory would add
  about (LARGE - SMALL) x 70 KB; written in blocks it should not grow;
- the wall time of the extraction of SMALL images with 1 and 2 ranks
  (mpiexec -n 2, the naive communicator) and their ratio.
"""
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

import numpy
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path[:0] = [ROOT, os.path.join(ROOT, 'tests')]

ENV = dict(os.environ, OPENBLAS_NUM_THREADS='1', OMP_NUM_THREADS='1')


def make_images(root, n):
    rng = numpy.random.RandomState(0)
    for i in range(n):
        folder = os.path.join(root, 'class{}'.format(i % 4))
        os.makedirs(folder, exist_ok=True)
        array = rng.randint(0, 256, (48, 64, 3)).astype(numpy.uint8)
        Image.fromarray(array).save(os.path.join(folder, '{:05d}.png'.format(
            i)))


def worker(model_path, data, n, out):
    """Runs in the measured process (or in each rank): prints one JSON line
    from rank 0 with the extraction's wall time and each rank's peak RSS."""
    from googlenet_chainer import datasets, model_file, mpi
    from googlenet_chainer.devices import get_device
    from googlenet_chainer.files import file_sha1
    from googlenet_chainer.inference import Predictor
    from googlenet_chainer.training import feature_cache
    comm = mpi.communicator()
    model, _ = model_file.load_model(model_path)
    pairs = datasets.read_folder(data).pairs
    pairs = sorted(pairs)[:int(n)]
    comm.barrier()
    start = time.perf_counter()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    cpu = usage.ru_utime + usage.ru_stime
    feature_cache.cached_features(
        Predictor(model, get_device('@numpy')),
        [(path, file_sha1(path).hexdigest()) for path, _ in pairs], out, 32,
        0, 60, show=False, comm=comm)
    comm.barrier()
    wall = time.perf_counter() - start
    usage = resource.getrusage(resource.RUSAGE_SELF)
    cpu = usage.ru_utime + usage.ru_stime - cpu
    peaks, cpus = zip(*comm.gather((usage.ru_maxrss, cpu)) or [(0, 0)])
    if not comm.rank:
        sys.__stdout__.write(json.dumps({'wall': wall, 'peak_kb': peaks,
                                         'cpu': cpus}) + '\n')


def measure(command):
    result = subprocess.run(command, env=ENV, capture_output=True, text=True)
    if result.returncode:
        raise SystemExit('failed:\n' + result.stdout + result.stderr)
    return json.loads(result.stdout.splitlines()[-1])


def main():
    small, large = (int(a) for a in sys.argv[1:3]) if len(sys.argv) > 2 \
        else (500, 2000)
    import caffe_fixtures
    from googlenet_chainer import mpi
    with tempfile.TemporaryDirectory() as tmp:
        model = caffe_fixtures.converted_model(tmp, 4)
        data = os.path.join(tmp, 'data')
        make_images(data, large)
        load = os.getloadavg()[0]
        me = [sys.executable, os.path.abspath(__file__), 'worker', model,
              data]
        runs = {}
        for n in (small, large):
            runs[n] = measure(me + [str(n), os.path.join(tmp, 'one{}.npy'
                                                         .format(n))])
        two = measure(mpi.local_mpiexec(2) + me + [
            str(small), os.path.join(tmp, 'two.npy')])
    print('feature cache, 1 view of 70 KB per image, blocks of 32, one '
          'BLAS thread per process')
    print('load average before: {:.1f} (this machine has {} cores)'.format(
        load, os.cpu_count()))
    for n, result in runs.items():
        print('{:5d} images, 1 process: peak RSS {:6.0f} MB, extraction '
              '{:6.1f} s ({:.1f} images/s, CPU {:.1f} s)'.format(
                  n, result['peak_kb'][0] / 1024, result['wall'],
                  n / result['wall'], result['cpu'][0]))
    grown = (runs[large]['peak_kb'][0] - runs[small]['peak_kb'][0]) / 1024
    print('peak RSS grew by {:.0f} MB from {} to {} images (a cache in '
          'memory: {:.0f} MB more)'.format(grown, small, large,
                                           (large - small) * 70656 / 2**20))
    print('{:5d} images, 2 ranks:   peak RSS {} MB, extraction {:6.1f} s '
          '(CPU {} s)'.format(small, ' and '.join(
              '{:.0f}'.format(kb / 1024) for kb in two['peak_kb']),
              two['wall'], ' and '.join('{:.1f}'.format(c)
                                        for c in two['cpu'])))
    print('1 rank / 2 ranks wall time: {:.2f}x'.format(
        runs[small]['wall'] / two['wall']))
    print('load average after: {:.1f}: with other jobs on the cores, two '
          'ranks cannot both get one, and the ratio shows it'.format(
              os.getloadavg()[0]))


if __name__ == '__main__':
    if sys.argv[1:2] == ['worker']:
        worker(*sys.argv[2:])
    else:
        main()
