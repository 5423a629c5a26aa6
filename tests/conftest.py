import os
import shutil
import subprocess
import sys

import numpy
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [ROOT, os.path.dirname(os.path.abspath(__file__))]

from googlenet_chainer.compat import chainer  # noqa: E402

import caffe_fixtures  # noqa: E402
from googlenet_chainer import (caffemodel, files, interrupts,  # noqa: E402
                               model_file)
from http_fixtures import LocalServer  # noqa: E402
from helpers import FIVE, run_training  # noqa: E402
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
    caffemodel.convert(caffemodels['v1'], path, log=lambda s: None)
    return path


@pytest.fixture(scope='session')
def model_3(tmp_path_factory, caffemodels):
    """A 3-class model converted from the V1 file. Its fresh heads are drawn
    from numpy's global generator, seeded here: a session fixture is made
    before the test's own seeding, and the heads must not depend on which
    test asked for them first."""
    path = str(tmp_path_factory.mktemp('m3') / 'tuned_googlenet.model')
    numpy.random.seed(0)
    caffemodel.convert(caffemodels['v1'], path, n_classes=3,
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
    subprocess.run([sys.executable, '-c', 'import sys, run_steps; '
                    'run_steps.datasets_of(sys.argv[1:])'] + argv, check=True,
                   cwd=ROOT, stdout=subprocess.DEVNULL,
                   env=dict(os.environ, OPENBLAS_NUM_THREADS='1',
                            PYTHONPATH=os.path.join(ROOT, 'tests')))
    return str(out / 'features')


@pytest.fixture(scope='session')
def five_class_model(tmp_path_factory, caffemodels):
    """A 5-class model (FIVE's names) whose loss3 classifier is set, not
    left as the converter drew it."""
    path = str(tmp_path_factory.mktemp('five') / 'tuned_googlenet.model')
    model = caffemodel.convert(caffemodels['v1'], path, n_classes=5,
                               log=lambda line: None)
    # Set here, not left to the converter's fresh initialisation: a
    # session fixture runs before the per-test seeding of numpy.
    # Seed 6 makes 4 of test_scores_agree_with_an_independent_count's 6
    # images right: neither score is trivial.
    rng = numpy.random.RandomState(6)
    link = model.loss3_fc
    link.W.array[...] = rng.standard_normal(link.W.shape) * 0.05
    link.b.array[...] = [0.0, 1.0, -1.0, 0.5, -0.5]
    model_file.save_model(path, model, FIVE)
    return path


@pytest.fixture
def cached_run(dataset, model_3, features):
    """Runs train_googlenet.main on the features fixture's cache."""
    def run(out, *extra, data=dataset):
        if data == dataset and not os.path.exists(out / 'features'):
            shutil.copytree(features, out / 'features')
        return run_training('--train', data, '--model', model_3, '--out',
                            str(out), '--cache-features', '-B', '4',
                            '--val-ratio', '0.25', '--lr', '1e-3', *extra)
    return run


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
def no_ctrl_c_left():
    """A Ctrl-C that an earlier test's run received in this process stays
    recorded after its run_interruptibly returned (raise_if_interrupted's
    "or the last one"): a test that runs a Trainer by its steps, outside
    run_interruptibly, does not inherit it."""
    interrupts._received.clear()


@pytest.fixture(autouse=True)
def no_public_mirrors(monkeypatch):
    """No test reaches the internet: the built-in mirrors of the caffemodel
    are replaced by none (tests that need sources set their own, on
    127.0.0.1), here and in the tests' subprocesses."""
    monkeypatch.setenv('GOOGLENET_CAFFEMODEL_MIRRORS', '')
    monkeypatch.delenv('GOOGLENET_CAFFEMODEL_URL', raising=False)


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
    stop): files.check_writable's probe file cannot be made there.
    Undone with monkeypatch.undo() or at the test's end."""
    real = files.tempfile.TemporaryFile
    locked = set()

    def temporary_file(*args, dir=None, **kwargs):
        if dir in locked:
            raise PermissionError(13, 'Permission denied')
        return real(*args, dir=dir, **kwargs)
    monkeypatch.setattr(files.tempfile, 'TemporaryFile',
                        temporary_file)

    def make():
        folder = str(tmp_path / 'locked{}'.format(len(locked)))
        os.mkdir(folder)
        locked.add(folder)
        return folder
    return make
