"""Locks that outlive nothing: fcntl.flock, which the kernel drops when its
holder dies (kill -9 included) and which holds across PID namespaces and, on
NFS with its lock manager, across hosts. They serialise the processes that
make one file, and tell a live writer's files from a dead one's."""
import contextlib
import errno
import fcntl
import os
import sys
import time

from googlenet_chainer.errors import UserError


# What flock raises on a file system without locks (NFS without its lock
# manager, some cluster file systems): ENOLCK, "No locks available".
_NO_LOCKS = (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOTSUP)
# A temporary file or folder untouched this long, and locked by no one, was
# left by a writer that is gone. Writers hold their lock while they write;
# the delay covers the instant between creating a file and locking it, and
# between closing it and renaming it.
STALE_SECONDS = 60


def try_lock(fd, wait=False):
    """Takes an exclusive flock on an open file or folder.

    Args:
        fd: a file descriptor; the lock lasts until it is closed.
        wait: block until the lock is free, rather than give up.

    Returns:
        True when this descriptor now holds the lock; False when another
        holder has it (only without ``wait``); None when the file system
        has no locks.
    """
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
    except BlockingIOError:
        return False
    except OSError as e:
        if e.errno in _NO_LOCKS:
            return None
        raise
    return True


def is_stale(path, now=None):
    """Whether a temporary file or folder was left by a writer that is gone:
    no one holds its lock (whatever PID namespace or host the writer ran
    in), and it has not changed for STALE_SECONDS.

    Args:
        path: a writer's temporary file or folder.
        now: the time to judge its age against (time.time()).

    Returns:
        bool: False too when it cannot be told (no locks on this file
        system, or path gone): what might be live is left alone.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return False
    try:
        old = (now or time.time()) - os.fstat(fd).st_mtime > STALE_SECONDS
        return old and try_lock(fd) is True
    finally:
        os.close(fd)  # and with it the lock just taken


@contextlib.contextmanager
def file_lock(path, log=None):
    """Holds an exclusive lock on ``path.lock`` (fcntl.flock) for the block.

    Serialises processes that create the same ``path`` (downloads,
    conversions): a second one says that it waits, then blocks until the
    first is done, and should then look again whether ``path`` exists. The
    holder removes the lock file when done; a waiter that then holds the
    removed file's lock notices (the inode at the path differs) and locks
    afresh. The kernel drops a lock when its holder dies, even by kill -9,
    leaving an unlocked file that the next holder removes. On a file system
    without locks the block runs unlocked, saying so.

    Args:
        path: the file to be created; the lock file is beside it.
        log: None (stderr), or line -> None, for the lines saying it waits
            or cannot lock.

    Raises:
        UserError: the lock file cannot be created.
    """
    log = log or (lambda line: print(line, file=sys.stderr))
    lock_path = path + '.lock'
    fd = _locked(path, lock_path, log)
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            os.unlink(lock_path)
        if fd is not None:
            os.close(fd)


def _locked(path, lock_path, log):
    """file_lock's descriptor of the lock file, locked; None, and the lock
    file removed, where the file system has no locks."""
    waited = False
    while True:
        try:
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o666)
        except OSError as e:
            raise UserError('cannot write {}: {} (creating its lock file)'
                            .format(path, e.strerror or e))
        try:
            state = try_lock(fd)
            if state is False:
                if not waited:
                    log('waiting for another process that is writing {} '
                        '(it holds {})'.format(path, lock_path))
                    waited = True
                state = try_lock(fd, wait=True)
            if state is None:
                log('warning: the file system of {} has no locks: going on '
                    'without one (two runs at once would both make it)'
                    .format(path))
                os.close(fd)
                os.unlink(lock_path)
                return None
            try:
                current = os.stat(lock_path).st_ino
            except FileNotFoundError:
                current = None
        except BaseException:
            with contextlib.suppress(OSError):
                os.close(fd)
            raise
        if current == os.fstat(fd).st_ino:
            return fd
        os.close(fd)  # the holder removed it meanwhile: lock the new one


def make_once(path, make, made_by='made'):
    """Calls make() to create path unless it exists, holding file_lock(path).

    Args:
        path: the file to be created.
        make: a function of no arguments that creates path.
        made_by: the past-tense verb of the line a process that waited
            prints instead: 'using PATH, which another process MADE_BY'.

    Raises:
        UserError: file_lock's, and whatever make raises.
    """
    if os.path.exists(path):
        return
    with file_lock(path):
        if os.path.exists(path):
            print('using {}, which another process {}'.format(path, made_by),
                  file=sys.stderr)
            return
        make()
