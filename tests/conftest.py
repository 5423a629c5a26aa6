import os
import subprocess
import sys

import numpy
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [ROOT, os.path.dirname(os.path.abspath(__file__))]

from chainer_compat import chainer  # noqa: E402

import caffe_fixtures  # noqa: E402
import googlenet_caffe  # noqa: E402
from http_fixtures import LocalServer  # noqa: E402
from image_fixtures import FEATURES_ARGV, QUIET, make_dataset  # noqa: E402


@pytest.fixture(scope='session')
def weights():
    return caffe_fixtures.random_weights(seed=0)


@pytest.fixture(scope='session')
def caffemodels(tmp_path_factory, weights):
    """{'v1': path, 'v2': path} of the same seeded weights."""
    root = tmp_path_factory.mktemp('caffemodels')
    paths = {}
    for fmt in ('v1', 'v2'):
        paths[fmt] = str(root / 'bvlc_googlenet_{}.caffemodel'.format(fmt))
        caffe_fixtures.write_caffemodel(paths[fmt], weights, fmt)
    return paths


@pytest.fixture(scope='session')
def model_1000(tmp_path_factory, caffemodels):
    """A complete 1000-class model converted from the V1 file."""
    path = str(tmp_path_factory.mktemp('models') / 'googlenet.model')
    googlenet_caffe.convert(caffemodels['v1'], path, log=lambda s: None)
    return path


@pytest.fixture(scope='session')
def model_3(tmp_path_factory, caffemodels):
    """A 3-class model converted from the V1 file. Its fresh heads are drawn
    from numpy's global generator, seeded here: a session fixture is made
    before the test's own seeding, and the heads must not depend on which
    test asked for them first."""
    path = str(tmp_path_factory.mktemp('m3') / 'tuned_googlenet.model')
    numpy.random.seed(0)
    googlenet_caffe.convert(caffemodels['v1'], path, n_classes=3,
                                log=lambda line: None)
    return path


@pytest.fixture(scope='session')
def dataset(tmp_path_factory):
    """Three colour classes of 8 small PNGs."""
    return make_dataset(tmp_path_factory.mktemp('data') / 'colours', 8)


@pytest.fixture(scope='session')
def features(dataset, model_3, tmp_path_factory):
    """The feature cache of cached_run's split, computed once (the trunk
    is most of a short run's time); each run starts with a copy. Computed
    in one process with one BLAS thread, as each MPI rank is run, so that
    the two-rank cache can be compared with it byte for byte."""
    out = tmp_path_factory.mktemp('features') / 'r'
    argv = ['--train', dataset, '--model', model_3, '--out', str(out)] + \
        FEATURES_ARGV + QUIET
    subprocess.run([sys.executable, '-c', 'import sys, train_googlenet; '
                    'train_googlenet.Session(train_googlenet.build_parser()'
                    '.parse_args(sys.argv[1:]))'] + argv, check=True,
                   cwd=ROOT, stdout=subprocess.DEVNULL,
                   env=dict(os.environ, OPENBLAS_NUM_THREADS='1'))
    return str(out / 'features')


@pytest.fixture
def server():
    with LocalServer() as s:
        yield s


@pytest.fixture
def rng():
    return numpy.random.RandomState(1)


@pytest.fixture(autouse=True)
def seeded():
    """numpy's global generator, which Chainer's iterators, dropout and the
    cached-feature views draw from, starts every test in the same state, so
    no outcome depends on the order or the set of tests run before it."""
    numpy.random.seed(0)


@pytest.fixture(autouse=True)
def dataset_root(tmp_path_factory, monkeypatch):
    """Chainer's dataset root, where the default caffemodel and model go, is
    a fresh temporary folder in every test and its subprocesses: no test
    writes to ~/.chainer or sees another test's downloads."""
    root = str(tmp_path_factory.mktemp('chainer_dataset'))
    monkeypatch.setenv('CHAINER_DATASET_ROOT', root)
    previous = chainer.dataset.get_dataset_root()
    chainer.dataset.set_dataset_root(root)
    yield root
    chainer.dataset.set_dataset_root(previous)


@pytest.fixture
def locked_folder(tmp_path, monkeypatch):
    """Makes folders in which writing fails with EACCES, as for a user
    without write permission (the tests run as root, whom chmod does not
    stop): googlenet_io.check_writable's probe file cannot be made there.
    Undone with monkeypatch.undo() or at the test's end."""
    import googlenet_io
    real = googlenet_io.tempfile.TemporaryFile
    locked = set()

    def temporary_file(*args, dir=None, **kwargs):
        if dir in locked:
            raise PermissionError(13, 'Permission denied')
        return real(*args, dir=dir, **kwargs)
    monkeypatch.setattr(googlenet_io.tempfile, 'TemporaryFile',
                        temporary_file)

    def make():
        folder = str(tmp_path / 'locked{}'.format(len(locked)))
        os.mkdir(folder)
        locked.add(folder)
        return folder
    return make
