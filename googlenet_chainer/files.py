"""Files written whole or not at all, outputs checked before work, locks."""
import contextlib
import hashlib
import os
import re
import shutil
import stat
import tempfile
import time

import numpy

from googlenet_chainer.console import shown
from googlenet_chainer.errors import UserError
from googlenet_chainer.interrupts import sigint_deferred
from googlenet_chainer.locks import is_stale, try_lock

CHUNK = 1 << 20


@contextlib.contextmanager
def atomic_write(path, mode='wb'):
    """Yields a file that replaces ``path`` only once it is completely written.

    What is promised: ``path`` holds either its old content (or nothing) or
    the complete new content, never a part, whatever happens to this process;
    an exception in the block, Ctrl-C included, removes the temporary file.
    A process killed outright (kill -9, power loss) cannot remove its own
    temporary file, ``.NAME.PID.XXXXXX.tmp`` beside ``path``: the next
    atomic_write of the same ``path`` removes every such file whose process
    (by the PID in its name) no longer runs on this machine.

    A symlink is written through, as ``>`` in a shell writes: its target is
    replaced and the link kept (a rename onto the link would turn it into a
    file and leave its target stale). The new file keeps the permissions of
    the one it replaces (a model kept 0640 stays so), else 0666 less the umask.

    Args:
        path: the file to write.
        mode: the open mode of the file yielded, 'wb' or 'w'.

    Yields:
        The temporary file, open, in the folder of ``path``'s target.

    Raises:
        UserError: naming ``path``: the folder cannot be written or the disk is
            full (any OSError with an errno, the block's own too), or ``path``
            is a folder, device, FIFO or socket, which a rename would replace
            (as root, /dev/null itself); the old file stays in place.
    """
    check_output_path(path)
    target = written_path(path)
    directory = os.path.dirname(os.path.abspath(target))
    prefix = '.' + os.path.basename(target) + '.'
    remove_stale_temporaries(directory, prefix)
    try:
        permissions = stat.S_IMODE(os.stat(target).st_mode)
    except OSError:
        permissions = 0o666 & ~_umask()
    try:
        fd, tmp = tempfile.mkstemp(dir=directory, suffix='.tmp',
                                   prefix='{}{}.'.format(prefix, os.getpid()))
    except OSError as e:
        raise UserError('cannot write {}: {}'.format(path, e.strerror or e))
    try:
        with os.fdopen(fd, mode) as f:
            try_lock(f.fileno())  # live while locked: is_stale
            os.chmod(tmp, permissions)  # mkstemp's 0600 is for secrets
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException as e:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(e, OSError) and e.errno is not None:
            raise UserError('cannot write {}: {}'.format(
                path, e.strerror or e)) from e
        raise


def remove_stale_temporaries(directory, prefix):
    """Removes the ``PREFIX<pid>.*.tmp`` files and folders in directory that
    their writers left when killed (locks.is_stale: no one holds their lock,
    and they have not changed for a while). The PID in the name is for
    people: another container or host can run a live writer of the same
    PID, or of a PID this process cannot see.

    Args:
        directory: the folder to look in.
        prefix: what the names start with before the PID.
    """
    pattern = re.compile(re.escape(prefix) + r'\d+\.[^/]*\.tmp\Z')
    try:
        names = os.listdir(directory)
    except OSError:
        return
    now = time.time()
    for name in names:
        path = os.path.join(directory, name)
        if pattern.match(name) and is_stale(path, now):
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path, ignore_errors=True)
            with contextlib.suppress(OSError):
                os.unlink(path)


def written_path(path):
    """The file that atomic_write(path) replaces.

    Args:
        path: a path, which need not exist.

    Returns:
        str: path itself, or if it is a symlink its final target (realpath).
    """
    return os.path.realpath(path) if os.path.islink(path) else path


def read_npy_header(f):
    """The header of the .npy array that starts at f's position.

    Args:
        f: a binary file, left at the array's data (versions 1.0 and 2.0).

    Returns:
        (shape, fortran_order, dtype), or None for another version.

    Raises:
        ValueError: what starts there is not a .npy header.
    """
    version = numpy.lib.format.read_magic(f)
    if version == (1, 0):
        return numpy.lib.format.read_array_header_1_0(f)
    if version == (2, 0):
        return numpy.lib.format.read_array_header_2_0(f)
    return None


def save_npz(file, arrays):
    """numpy.savez(file, **arrays) with Ctrl-C held back until it is done.

    Interrupted, numpy's ZipFile outlives the file it wrote to and prints a
    traceback when it is collected. For files of seconds, not minutes.

    Args:
        file: a binary file open for writing (atomic_write's), or a path.
        arrays: {name: array}, the archive's members, uncompressed.
    """
    with sigint_deferred():
        numpy.savez(file, **arrays)


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def check_output_path(path, inputs=(), what='output', kind=None):
    """Refuses an output that would overwrite something it must not.

    An existing file not of ``kind`` (a photo where a model goes) is more
    likely a slip of the keyboard than a file to lose.

    Args:
        path: the output file; a symlink is judged by its target.
        inputs: input paths, files or folders, which need not exist.
        what: the output's name in the messages, such as '--output'.
        kind: None, or (test, description) of what an existing path must be.

    Raises:
        UserError: naming ``what``, when path is one of ``inputs`` or lies in
            one that is a folder (check_outside), is not a regular file,
            cannot be examined, exists and is not of ``kind``, or has a name
            too long for the temporary file it is written under
            (check_name_fits).
    """
    check_name_fits(path, what)
    target = os.path.realpath(path)
    for source in inputs:
        if os.path.isdir(source):
            check_outside(path, [source], what)
        elif target == os.path.realpath(source):
            raise UserError('{} {} is the input {}; choose another file'
                            .format(what, path, source))
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return
    except OSError as e:
        raise UserError('cannot use {} {}: {}'.format(what, path,
                                                      e.strerror or e))
    if stat.S_ISDIR(mode):
        raise UserError('{} {} is a folder; give a file name'.format(
            what, path))
    if not stat.S_ISREG(mode):
        raise UserError('{} {} is not a regular file (a device, FIFO or '
                        'socket); give a file name'.format(what, path))
    if kind is not None and not os.access(path, os.R_OK):
        raise UserError('{} {} exists and cannot be read to check that it is '
                        '{}: it is kept; choose another file'.format(
                            what, path, kind[1]))
    if kind is not None and not kind[0](path):
        raise UserError('{} {} exists and is not {}: it is kept; choose '
                        'another file'.format(what, path, kind[1]))


def _temporary_name(name):
    """The name atomic_write writes a file of that name under, its random
    part as long as tempfile.mkstemp's."""
    return '.{}.{}.{}.tmp'.format(name, os.getpid(), 'x' * 8)


def check_name_fits(path, what='output'):
    """Refuses, before any work, a file name the file system will refuse
    at the end: the temporary name a file is written under (atomic_write)
    adds bytes to its own.

    Args:
        path: the file to be written (a symlink is judged by its target).
        what: the output's name in the message, such as '--csv'.

    Raises:
        UserError: the temporary name is over the folder's NAME_MAX, or its
            path over PATH_MAX.
    """
    target = written_path(path)
    folder = os.path.dirname(os.path.abspath(target))
    existing = folder
    while not os.path.isdir(existing):
        existing = os.path.dirname(existing)
    name = os.fsencode(os.path.basename(target))
    temporary = os.fsencode(_temporary_name(os.path.basename(target)))
    try:
        name_max = os.pathconf(existing, 'PC_NAME_MAX')
        path_max = os.pathconf(existing, 'PC_PATH_MAX')
    except (OSError, ValueError):
        return
    if len(temporary) > name_max:
        raise UserError('{} {}: its name is too long ({} bytes; a name in '
                        '{} may have {}, and it is written under a '
                        'temporary one {} bytes longer)'.format(
                            what, shown(path), len(name), shown(folder),
                            name_max, len(temporary) - len(name)))
    if len(os.fsencode(folder)) + 1 + len(temporary) >= path_max:
        raise UserError('{} {}: its path is too long (a path may have {} '
                        'bytes)'.format(what, shown(path), path_max))


def check_outside(path, folders, what):
    """Refuses a path that is one of ``folders`` or lies inside one.

    What is written there would replace an input or be read as one by the
    next run (a folder ``features`` as a class).

    Args:
        path: the output, a file or folder, existing or not.
        folders: the input folders; one inside ``path`` is fine.
        what: the output's name in the messages, such as '--out'.

    Raises:
        UserError: path is one of folders or lies inside one, links resolved.
    """
    target = os.path.realpath(path)
    for folder in folders:
        real = os.path.realpath(folder)
        if target == real:
            raise UserError('{} {} is the input folder {}; choose another '
                            'place'.format(what, shown(path), shown(folder)))
        if os.path.commonpath([target, real]) == real:
            raise UserError('{} {} lies inside the input folder {}; choose '
                            'a place outside it'.format(
                                what, shown(path), shown(folder)))


def check_writable(folder, option):
    """Refuses, before any work, an output folder that is missing or
    cannot be written: found only at the end, it would cost the run.

    Args:
        folder: the folder the output goes in.
        option: the output's name in the messages, such as '--out'.

    Raises:
        UserError: folder is missing, or a test file cannot be made in it.
    """
    if not os.path.isdir(folder):
        raise UserError('cannot write {} in {}: no such folder'.format(
            option, folder))
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as e:
        raise UserError('cannot write {} in {}: {}'.format(
            option, folder, e.strerror or e))


def check_out_folder(folder, option, inputs=()):
    """Refuses, up front, an output folder that would cost the work at its end.

    Args:
        folder: the output folder, existing or not.
        option: its name in the messages, such as '--out'.
        inputs: the input paths; those that are folders count.

    Raises:
        UserError: naming ``option``: folder is a file, is or lies inside an
            input folder (check_outside), or cannot be written (if missing,
            its parent, which make_out_folder then makes it in).
    """
    if os.path.exists(folder) and not os.path.isdir(folder):
        raise UserError('{} {} is a file, not a folder'.format(
            option, shown(folder)))
    check_outside(folder, inputs, option)
    check_writable(folder if os.path.isdir(folder) else os.path.dirname(
        os.path.abspath(folder)), option)


def make_out_folder(folder, option, parents=False):
    """Makes an output folder unless it is there.

    Args:
        folder: the folder.
        option: its name in the messages, such as '--out'.
        parents: make every missing level, not the last one only.

    Raises:
        UserError: folder is a file, or cannot be made.
    """
    if os.path.isdir(folder):
        return
    if os.path.exists(folder):
        raise UserError('{} {} is a file, not a folder'.format(
            option, shown(folder)))
    try:
        (os.makedirs if parents else os.mkdir)(folder)
    except FileExistsError:
        if not os.path.isdir(folder):  # made meanwhile, by another run
            raise UserError('{} {} is a file, not a folder'.format(
                option, shown(folder)))
    except OSError as e:
        raise UserError('cannot create {} {}: {}'.format(
            option, shown(folder), e.strerror or e))


def file_sha1(path):
    """The SHA-1 of a file's content, read a CHUNK at a time.

    Args:
        path: the file.

    Returns:
        A hashlib sha1 object; its hexdigest() is the sha1 to compare.
    """
    digest = hashlib.sha1()
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(CHUNK), b''):
            digest.update(block)
    return digest
