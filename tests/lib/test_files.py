"""files: atomic writes and locks."""
import os
import signal
import stat
import subprocess
import sys

import pytest

from googlenet_chainer import files
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
    with files.atomic_write(str(target)) as f:
        f.write(b'new')
    assert target.read_bytes() == b'new'
    assert temporaries(tmp_path) == []


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
        with files.file_lock(target):
            raise UserError('boom')
    with files.file_lock(target, log=pytest.fail):
        pass  # taken at once, without waiting
    assert os.listdir(tmp_path) == []
