"""The scripts under mpiexec, two ranks on 127.0.0.1, against one process."""
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy
import pytest

import evaluate_googlenet
import googlenet_predict
import train_googlenet
from googlenet_chainer import mpi
from googlenet_chainer.training import run_folder, snapshots

from image_fixtures import FEATURES_ARGV

# One BLAS thread per rank, in one-process runs too: the same bytes.
ENV = dict(os.environ, OPENBLAS_NUM_THREADS='1')


TRAIN = ['-B', '4', '--epoch', '2', '--snapshot-interval', '1 iteration',
         '--keep-snapshots', '9', '--lr', '1e-3', '--no-progress',
         '--loaderjob', '0']


def two_ranks(script, *argv):
    return mpi.local_mpiexec(2) + [sys.executable, script] + list(
        argv)


def run(command):
    return subprocess.run(command, env=ENV, capture_output=True, text=True,
                          timeout=300)


def _without_times(log):
    return [{k: v for k, v in entry.items() if k != 'elapsed_time'}
            for entry in log]


@pytest.fixture(scope='module')
def cached_model(dataset, model_3, features, tmp_path_factory):
    """A model trained one epoch on the features fixture's cache: it
    stores its class names, as evaluation needs."""
    out = tmp_path_factory.mktemp('m') / 'r'
    shutil.copytree(features, out / 'features')
    assert train_googlenet.main(['--train', dataset, '--model', model_3,
                                 '--out', str(out)] + FEATURES_ARGV +
                                ['--epoch', '1', '--no-progress',
                                 '--loaderjob', '0']) == 0
    return str(out / 'tuned_googlenet.model')


def test_two_ranks_cache_bit_for_bit_and_train_once_resuming_after_a_kill(
        dataset, model_3, features, tmp_path):
    argv = ['--train', dataset, '--model', model_3] + FEATURES_ARGV + TRAIN
    out = tmp_path / 'killed'
    process = subprocess.Popen(
        two_ranks(train_googlenet.__file__, *argv, '--out', str(out)),
        env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True)
    deadline = time.time() + 240
    try:
        while time.time() < deadline and process.poll() is None and not (
                out.is_dir() and snapshots.snapshot_files(str(out))):
            time.sleep(0.05)
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    done = snapshots.snapshot_files(str(out))
    assert done and done[-1][0] < 10, done  # killed inside the run
    # Each rank wrote its blocks of the cache: the one-process bytes.
    for name in ('train', 'val'):
        two = numpy.load(out / 'features' / (name + '.npy'))
        one = numpy.load(os.path.join(features, name + '.npy'))
        assert two.tobytes() == one.tobytes(), name
        with open(out / 'features' / (name + '.json')) as f:
            assert json.load(f)['rows_complete'] == len(one)
    resumed = run(two_ranks(train_googlenet.__file__, *argv, '--out',
                            str(out), '--resume', 'latest'))
    assert resumed.returncode == 0, resumed.stderr
    assert resumed.stdout.count('best model: ') == 1
    assert resumed.stdout.count('training set: 18 images') == 1
    assert 'computing trunk features' not in resumed.stdout
    assert 'Traceback' not in resumed.stderr
    whole = tmp_path / 'whole'
    uninterrupted = run(two_ranks(train_googlenet.__file__, *argv, '--out',
                                  str(whole)))
    assert uninterrupted.returncode == 0, uninterrupted.stderr
    # Rank 0 alone wrote the run's files, once; resumed, the same log.
    names = set(os.listdir(out))
    assert names == set(os.listdir(whole))
    assert {'log', 'run.json', 'tuned_googlenet.model', 'report.json',
            'report.txt', 'loss.png', 'features'} <= names
    assert not [n for n in names if run_folder.STRAY_PATTERN.match(n)]
    with open(out / 'log') as f, open(whole / 'log') as g:
        log = json.load(f)
        assert _without_times(log) == _without_times(json.load(g))
    assert [entry['epoch'] for entry in log] == [1, 2]
    with open(out / 'run.json') as f:
        assert json.load(f)['processes'] == 2
    # Validation counts each image once, on whichever rank holds it: the
    # log's accuracy is a whole number of images, and the best model's
    # report (rank 0, the whole set) says what the log said of it.
    with open(out / 'report.json') as f:
        report = json.load(f)
    images = report['images']
    for entry in log:
        right = entry['validation/main/accuracy'] * images
        assert right == pytest.approx(round(right), abs=1e-6), entry
    assert report['accuracy'] == pytest.approx(
        report['best_validation_accuracy'], abs=1e-6)


def test_two_rank_prediction_prints_every_input_once_in_order(
        dataset, model_1000, tmp_path, capsys):
    inputs = [os.path.join(dataset, colour, '{}.png'.format(i))
              for colour in ('red', 'blue') for i in range(3)]
    inputs.insert(2, str(tmp_path / 'missing.png'))
    argv = ['--model', model_1000, '-b', '2', '--top', '2'] + inputs
    # One process, as before MPI: mpi4py is never imported.
    one = run([sys.executable, '-c', 'import sys, googlenet_predict; '
               'code = googlenet_predict.main(sys.argv[1:]); '
               'print("mpi4py" in sys.modules, file=sys.stderr); '
               'sys.exit(code)'] + argv)
    assert one.returncode == 1
    assert one.stderr.splitlines()[-1] == 'False'
    two = run(two_ranks(googlenet_predict.__file__, *argv))
    assert two.returncode == 1
    assert two.stdout == one.stdout
    assert [line for line in two.stdout.splitlines()
            if not line.startswith(' ')] == inputs[:2] + inputs[3:]
    assert two.stderr == 'error: {}: no such file\n'.format(inputs[2])


def test_two_rank_evaluation_equals_one_process(dataset, tmp_path,
                                                cached_model):
    argv = ['--model', cached_model, '--data', dataset, '-b', '3', '--json',
            '--no-progress']
    one = run([sys.executable, evaluate_googlenet.__file__] + argv)
    assert one.returncode == 0, one.stderr
    two = run(two_ranks(evaluate_googlenet.__file__, *argv,
                        '--out', str(tmp_path / 'e')))
    assert two.returncode == 0, two.stderr
    assert two.stdout == one.stdout  # three images each, in order
    assert json.loads(one.stdout)['images'] == 24
    assert (tmp_path / 'e' / 'report.json').exists()


def test_refusals_under_mpiexec_are_one_line_and_exit_1(dataset, model_3,
                                                        tmp_path):
    result = run(two_ranks(train_googlenet.__file__, '--train',
                           str(tmp_path / 'none'), '--model', model_3,
                           '--out', str(tmp_path / 'r'), '--no-progress'))
    assert result.returncode == 1
    assert result.stderr.startswith('error: ') and result.stderr.count(
        '\n') == 1, result.stderr
    assert result.stdout == ''
