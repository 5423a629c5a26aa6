"""files: atomic writes and locks."""
import errno
import os
import signal
import stat
import subprocess
import sys

import pytest

from googlenet_chainer import files, locks
from googlenet_chainer.errors import UserError

from helpers import ROOT

WRITER = '''
import sys, time
sys.path.insert(0, {root!r})
from googlenet_chainer.files import atomic_write
with atomic_write({path!r}) as f:
    f.write(b'x' * 100000)
    f.flush()
    print('writing', flush=True)
    time.sleep(60)
'''


def temporaries(folder):
    return sorted(name for name in os.listdir(folder)
                  if name.endswith('.tmp'))


def test_kill_9_during_a_write_leaves_a_temporary_the_next_write_removes(
        tmp_path):
    target = tmp_path / 'out.model'
    target.write_bytes(b'old')
    writer = subprocess.Popen(
        [sys.executable, '-c', WRITER.format(root=ROOT, path=str(target))],
        stdout=subprocess.PIPE)
    try:
        assert writer.stdout.readline() == b'writing\n'
        stale = temporaries(tmp_path)
        # Its name says whose it is: the target's name and the writer's PID.
        assert stale and stale[0].startswith(
            '.out.model.{}.'.format(writer.pid))
    finally:
        writer.send_signal(signal.SIGKILL)
        writer.wait()
        writer.stdout.close()
    assert target.read_bytes() == b'old'
    # Just left, it could be a live writer's between its creation and its
    # lock: kept. Untouched for a while and locked by no one: removed.
    with files.atomic_write(str(target)) as f:
        f.write(b'new')
    assert target.read_bytes() == b'new'
    assert temporaries(tmp_path) == stale
    _age(tmp_path / stale[0])
    with files.atomic_write(str(target)) as f:
        f.write(b'newer')
    assert temporaries(tmp_path) == []


def _age(path, seconds=locks.STALE_SECONDS + 1):
    past = os.path.getmtime(path) - seconds
    os.utime(path, (past, past))


HOLDER = '''
import fcntl, sys, time
fd = open(sys.argv[1], 'rb')
fcntl.flock(fd, fcntl.LOCK_EX)
print('holding', flush=True)
time.sleep(60)
'''


def test_a_live_writer_is_told_by_its_lock_not_its_pid(tmp_path):
    # As one in another container or on another host looks from here: a
    # PID no process of this machine has, an old file, a lock held.
    live = tmp_path / '.a.model.99999999.abc123.tmp'
    live.write_bytes(b'a live writer\'s')
    _age(live)
    holder = subprocess.Popen([sys.executable, '-c', HOLDER, str(live)],
                              stdout=subprocess.PIPE)
    try:
        assert holder.stdout.readline() == b'holding\n'
        with files.atomic_write(str(tmp_path / 'a.model')) as f:
            f.write(b'a')
        assert live.exists()
    finally:
        holder.kill()
        holder.wait()
        holder.stdout.close()
    with files.atomic_write(str(tmp_path / 'a.model')) as f:
        f.write(b'b')
    assert not live.exists()  # its writer gone, its lock with it


def test_a_link_is_written_through_and_permissions_are_kept(tmp_path):
    versions = tmp_path / 'versions'
    versions.mkdir()
    target = versions / 'v2.model'
    target.write_bytes(b'v2')
    os.chmod(target, 0o640)
    link = tmp_path / 'latest.model'
    link.symlink_to(target)
    with files.atomic_write(str(link)) as f:
        f.write(b'v3')
    assert os.readlink(link) == str(target)
    assert target.read_bytes() == b'v3'
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o640
    assert sorted(os.listdir(tmp_path)) == ['latest.model', 'versions']
    assert os.listdir(versions) == ['v2.model']
    # A new file: 0666 less the umask.
    fresh = tmp_path / 'fresh.model'
    with files.atomic_write(str(fresh)) as f:
        f.write(b'x')
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(os.stat(fresh).st_mode) == 0o666 & ~umask


def test_a_running_writers_temporary_and_other_targets_are_left_alone(
        tmp_path):
    mine = tmp_path / '.a.model.{}.abc123.tmp'.format(os.getpid())
    other = tmp_path / '.b.model.999999999.abc123.tmp'
    mine.write_bytes(b'in progress')
    other.write_bytes(b'stale, but of another target')
    with files.atomic_write(str(tmp_path / 'a.model')) as f:
        f.write(b'a')
    assert mine.exists() and other.exists()


def test_the_lock_is_released_and_removed_after_an_error(tmp_path):
    target = str(tmp_path / 'x')
    with pytest.raises(UserError):
        with locks.file_lock(target):
            raise UserError('boom')
    with locks.file_lock(target, log=pytest.fail):
        pass  # taken at once, without waiting
    assert os.listdir(tmp_path) == []


def test_a_file_system_without_locks_is_said_and_the_work_goes_on(
        tmp_path, monkeypatch, capsys):
    def no_locks(fd, operation):
        raise OSError(errno.ENOLCK, 'No locks available')
    monkeypatch.setattr(locks.fcntl, 'flock', no_locks)
    target = tmp_path / 'x.model'
    with locks.file_lock(str(target)):
        target.write_bytes(b'made')
    assert os.listdir(tmp_path) == ['x.model']  # no lock file left
    assert capsys.readouterr().err == (
        'warning: the file system of {} has no locks: going on without one '
        '(two runs at once would both make it)\n'.format(target))
    # A temporary file whose writer cannot be told alive is kept.
    left = tmp_path / '.x.model.123.abc.tmp'
    left.write_bytes(b'?')
    _age(left)
    with files.atomic_write(str(target)) as f:
        f.write(b'again')
    assert left.exists() and target.read_bytes() == b'again'


def test_a_name_too_long_for_its_temporary_is_refused_before_any_work(
        tmp_path):
    # 240 bytes: a legal name, but .NAME.PID.XXXXXXXX.tmp is not.
    path = tmp_path / ('r' * 236 + '.csv')
    with pytest.raises(UserError, match=r'^--csv .*rrr\.csv: its name is too '
                       r'long \(240 bytes; a name in .* may have 255, and it '
                       r'is written under a temporary one \d+ bytes '
                       r'longer\)$'):
        files.check_output_path(str(path), what='--csv')
    files.check_output_path(str(tmp_path / ('r' * 200 + '.csv')))
    assert os.listdir(tmp_path) == []
