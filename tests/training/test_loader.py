"""training.loader: worker processes that die or hang."""
import contextlib
import errno
import os
import signal
import subprocess
import sys
import time

import numpy
import pytest

from googlenet_chainer import errors
from googlenet_chainer.compat import chainer
from googlenet_chainer.training import loader, sampling

from helpers import ROOT, children


class _Numbers(chainer.dataset.DatasetMixin):
    """Example i is [i % 10] * 3; in a loader worker, example 3 kills its
    process (SIGKILL, as the out-of-memory killer does) while the folder
    `kills` has a file, taking one, or sleeps for an hour when `stuck`."""

    def __init__(self, kills=None, stuck=False):
        self.parent = os.getpid()
        self.kills = kills
        self.stuck = stuck

    def __len__(self):
        return 10

    def get_example(self, i):
        if i % 10 == 3 and os.getpid() != self.parent:
            if self.stuck:
                time.sleep(3600)
            for name in sorted(os.listdir(self.kills)) if self.kills else []:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(os.path.join(self.kills, name))
                    os.kill(os.getpid(), signal.SIGKILL)
        return numpy.full(3, i % 10, numpy.float32)


def _kills(tmp_path, n):
    folder = tmp_path / 'kills'
    folder.mkdir()
    for k in range(n):
        (folder / str(k)).touch()
    return str(folder)


def _alive(pid):
    try:
        with open('/proc/{}/stat'.format(pid)) as f:
            return f.read().rsplit(')', 1)[1].split()[0] != 'Z'
    except OSError:
        return False


def test_a_killed_loader_worker_costs_a_warning_not_a_batch(tmp_path,
                                                            capfd):
    order = sampling.SeededOrder(1)
    loaded = loader.make_iterator(
        _Numbers(_kills(tmp_path, 1)), 4, 2, 60.0, order)
    serial = loader.make_iterator(_Numbers(), 4, 0, 60.0, order)
    try:
        for _ in range(8):  # three epochs, so example 3 comes up thrice
            assert numpy.array_equal(numpy.stack(next(loaded)),
                                     numpy.stack(next(serial)))
            assert (loaded.epoch_detail, loaded.is_new_epoch) == (
                serial.epoch_detail, serial.is_new_epoch)
    finally:
        loaded.finalize()
    assert not os.listdir(tmp_path / 'kills')
    assert capfd.readouterr().err == (
        'warning: a loader process died (killed by SIGKILL, as the '
        'out-of-memory killer does); reading the batch again with new '
        'ones\n')


@pytest.mark.parametrize('dataset, words', [
    ('killed', 'a loader process died twice reading the same batch (killed '
     'by SIGKILL'),
    ('stuck', 'the loader processes gave no batch in 2.0 s')])
def test_a_loader_that_cannot_deliver_stops_in_bounded_time(dataset, words,
                                                            tmp_path):
    dataset = _Numbers(_kills(tmp_path, 9)) if dataset == 'killed' else \
        _Numbers(stuck=True)
    iterator = loader.make_iterator(dataset, 4, 2, 2.0)
    start = time.monotonic()
    with pytest.raises(errors.UserError) as error:
        for _ in range(3):
            next(iterator)
    iterator.finalize()  # kills the stuck worker rather than wait for it
    assert time.monotonic() - start < 30
    assert words in str(error.value)


def test_loader_workers_die_with_a_run_killed_outright():
    process = subprocess.Popen([sys.executable, '-c', '''
import sys, time
sys.path.insert(0, {!r})
import numpy
from googlenet_chainer.training import loader
iterator = loader.make_iterator(
    [numpy.zeros(3, numpy.float32)] * 8, 2, 2, 60.0)
next(iterator)
print('ready', flush=True)
time.sleep(600)
'''.format(ROOT)],
        stdout=subprocess.PIPE, text=True, start_new_session=True)
    try:
        assert process.stdout.readline() == 'ready\n'
        workers = children(process.pid)
        assert len(workers) == 2
        os.kill(process.pid, signal.SIGKILL)  # as kill -9 of the run
        process.wait()
        deadline = time.time() + 30
        while any(map(_alive, workers)) and time.time() < deadline:
            time.sleep(0.1)
        assert not any(map(_alive, workers))
    finally:
        with contextlib.suppress(OSError):
            os.killpg(process.pid, signal.SIGKILL)


def test_a_full_shared_memory_disk_moves_the_spool_and_is_named(
        tmp_path, monkeypatch, capfd):
    """As under Docker's 64 MB /dev/shm: the examples pass through the
    temporary folder instead, and a failure there names the spool, not
    the run's folder."""
    shm, temporary = tmp_path / 'shm', tmp_path / 'tmp'
    shm.mkdir()
    temporary.mkdir()
    monkeypatch.setattr(loader, 'SHM', str(shm))
    monkeypatch.setattr(loader.tempfile, 'tempdir', str(temporary))
    monkeypatch.setattr(loader, '_load_example', _full_in_shm)
    loaded = loader.make_iterator(_Numbers(), 4, 2, 60.0)
    try:
        assert [list(example) for example in next(loaded)] == [
            [i] * 3 for i in range(4)]
        assert _spooled_in(temporary) and not os.listdir(shm)
    finally:
        loaded.finalize()
    assert capfd.readouterr().err == (
        'warning: {} is full (No space left on device; a container gets 64 '
        'MB by default): the loader\'s examples pass through {} instead\n'
        .format(shm, temporary))
    # Full there too: one line naming the spool.
    monkeypatch.setattr(loader, 'SHM', str(tmp_path / 'none'))
    monkeypatch.setattr(loader, '_load_example', _always_full)
    loaded = loader.make_iterator(_Numbers(), 4, 2, 60.0)
    try:
        with pytest.raises(errors.UserError, match=r'^the loader processes '
                           r'cannot write their examples in {}/googlenet-'
                           r'loader\.\d+\.\w+\.tmp: No space left on device$'
                           .format(temporary)):
            next(loaded)
    finally:
        loaded.finalize()


_real_load_example = loader._load_example


def _full_in_shm(index):
    """A worker's _load_example, SHM full (forked, the workers see the
    monkeypatched SHM)."""
    if loader._worker['spool'].startswith(loader.SHM):
        raise OSError(errno.ENOSPC, 'No space left on device')
    return _real_load_example(index)


def _spooled_in(folder):
    return any(name.startswith('googlenet-loader.')
               for name in os.listdir(folder))


def _always_full(index):
    raise OSError(errno.ENOSPC, 'No space left on device')
