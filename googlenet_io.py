"""What the scripts share: errors, atomic writes, downloads, images, labels."""
import argparse
import concurrent.futures
import contextlib
import fcntl
import hashlib
import io
import json
import math
import os
import re
import shutil
import signal
import stat
import sys
import tempfile
import threading
import time
import urllib.parse
import warnings

import numpy
from PIL import Image, ImageOps, UnidentifiedImageError

CONNECT_TIMEOUT = 10
READ_TIMEOUT = 60
CHUNK = 1 << 20
# A download that receives fewer bytes than this within the read time-out
# has stalled (curl's --speed-limit/--speed-time rule).
STALL_BYTES = 1024


class UserError(Exception):
    """A problem with the user's input; reported as one line, no traceback."""


class Unreachable(UserError):
    """The server could not be reached at all (as opposed to answering badly)."""


def report_errors(function, *args, **kwargs):
    """Runs function; a UserError becomes one line on stderr and exit code 1,
    Ctrl-C ``interrupted`` and 130, and a reader of stdout that went away
    (``| head``) a quiet stop with 141, as a Unix tool killed by SIGPIPE."""
    try:
        result = function(*args, **kwargs)
    except UserError as e:
        print('error: {}'.format(e), file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print('interrupted', file=sys.stderr)
        return 130
    except BrokenPipeError:
        # What is still buffered would fail again when Python flushes
        # stdout at exit (the recipe of Python's signal documentation).
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    return 0 if result is None else result


def positive_int(text):
    """An argparse type: a whole number above zero."""
    return _whole_in(text, lambda value: value > 0, 'a positive whole number')


def non_negative_int(text):
    """An argparse type: a whole number, zero or above (seeds, counts that
    may be none)."""
    return _whole_in(text, lambda value: value >= 0,
                     'a whole number, zero or above')


def random_seed(text):
    """An argparse type: a seed numpy.random.seed takes, 0 to 2**32 - 1."""
    value = non_negative_int(text)
    if value >= 2 ** 32:
        raise argparse.ArgumentTypeError(
            'expected a seed from 0 to 4294967295, got {!r}'.format(text))
    return value


def positive_float(text):
    """An argparse type: a finite number above zero."""
    return _finite_in(text, lambda value: value > 0, 'a positive number')


def non_negative_float(text):
    """An argparse type: a finite number, zero or above."""
    return _finite_in(text, lambda value: value >= 0,
                      'a number, zero or above')


def unit_fraction(text):
    """An argparse type: a finite number in [0, 1) (a momentum)."""
    return _finite_in(text, lambda value: 0 <= value < 1,
                      'a number from 0 up to (not including) 1')


def _whole_in(text, accept, expected):
    try:
        value = int(text)
    except ValueError:
        value = None
    if value is None or not accept(value):
        raise argparse.ArgumentTypeError('expected {}, got {!r}'.format(
            expected, text))
    return value


def _finite_in(text, accept, expected):
    try:
        value = float(text)
    except ValueError:
        value = float('nan')
    if not (math.isfinite(value) and accept(value)):
        raise argparse.ArgumentTypeError('expected {}, got {!r}'.format(
            expected, text))
    return value


def one_line(exc):
    """The first line of an exception's message, for one-line reports."""
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


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
    the one it replaces (a model kept 0640 stays so), else 0666 less the
    umask.

    Raises UserError naming ``path`` when the folder cannot be written or the
    disk fills up (any OSError with an errno), and when ``path`` is a folder,
    a device, a FIFO or a socket, which a rename would replace (as root,
    /dev/null itself); the old file stays in place.
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
        os.chmod(tmp, permissions)  # mkstemp's 0600 is for secrets
        with os.fdopen(fd, mode) as f:
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
    """Removes ``PREFIX<pid>.*.tmp`` files and folders in directory whose
    writer is gone.

    A PID that still runs is left alone (it may be a concurrent writer; a
    reused PID only delays the clean-up to a later write).
    """
    pattern = re.compile(re.escape(prefix) + r'(\d+)\.[^/]*\.tmp\Z')
    try:
        names = os.listdir(directory)
    except OSError:
        return
    for name in names:
        match = pattern.match(name)
        if match and not _process_runs(int(match.group(1))):
            path = os.path.join(directory, name)
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path, ignore_errors=True)
            with contextlib.suppress(OSError):
                os.unlink(path)


def written_path(path):
    """The file that atomic_write(path) replaces: path, or the target of
    the symlink path is."""
    return os.path.realpath(path) if os.path.islink(path) else path


def read_npy_header(f):
    """(shape, fortran_order, dtype) of the .npy array that starts at
    f's position, read past its header (numpy.lib.format's versions 1.0
    and 2.0), or None for another version; ValueError if it is not one."""
    version = numpy.lib.format.read_magic(f)
    if version == (1, 0):
        return numpy.lib.format.read_array_header_1_0(f)
    if version == (2, 0):
        return numpy.lib.format.read_array_header_2_0(f)
    return None


def save_npz(file, arrays):
    """numpy.savez(file, **arrays) with Ctrl-C held back until it is done:
    interrupted, numpy's ZipFile outlives the file it wrote to and prints a
    traceback when it is collected. For files of seconds, not minutes."""
    with sigint_deferred():
        numpy.savez(file, **arrays)


@contextlib.contextmanager
def sigint_deferred():
    """Holds a Ctrl-C back until the block ends, then delivers it to the
    handler that was in place: for blocks that must not be left half done,
    such as starting or stopping worker processes (a process started but
    not yet recorded would outlive this one). Only the main thread can
    change handlers; elsewhere, and where Python has no handler, the
    block runs as it is.
    """
    # None: the handler is not Python's (at interpreter exit, collectors
    # run after the signal module has let go of its handlers).
    if threading.current_thread() is not threading.main_thread() or \
            signal.getsignal(signal.SIGINT) is None:
        yield
        return
    held = []
    previous = signal.signal(signal.SIGINT,
                             lambda signum, frame: held.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if held:
            signal.raise_signal(signal.SIGINT)


def _process_runs(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # it exists, but belongs to someone else
    return True


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def check_output_path(path, inputs=(), what='output', kind=None):
    """Refuses an output that would overwrite something it must not.

    ``path`` must be nothing yet or a regular file (a symlink is judged by
    its target), none of ``inputs`` (paths that need not exist) and inside
    none of those that are folders (check_outside). ``kind`` is (test,
    description) of what an existing ``path`` must be to be replaced, e.g.
    a model this project wrote: anything else there (a photo) is more
    likely a slip of the keyboard than a file to lose.
    Raises UserError in one line otherwise.
    """
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


def check_outside(path, folders, what):
    """Refuses a path (file or folder, existing or not) that is one of
    ``folders`` or lies inside one: what is written there would replace an
    input or be read as one by the next run (a folder ``features`` as a
    class). Paths are compared with their links resolved; a folder inside
    ``path`` is fine."""
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
    cannot be written: found only at the end, it would cost the run."""
    if not os.path.isdir(folder):
        raise UserError('cannot write {} in {}: no such folder'.format(
            option, folder))
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as e:
        raise UserError('cannot write {} in {}: {}'.format(
            option, folder, e.strerror or e))


@contextlib.contextmanager
def file_lock(path, log=None):
    """Holds an exclusive lock on ``path.lock`` (fcntl.flock) for the block.

    Serialises processes that create the same ``path`` (downloads,
    conversions): a second one says that it waits, then blocks until the
    first is done, and should then look again whether ``path`` exists. The
    holder removes the lock file when done; a waiter that then holds the
    removed file's lock notices (the inode at the path differs) and locks
    afresh. The kernel drops a lock when its holder dies, even by kill -9,
    leaving an unlocked file that the next holder removes.
    """
    log = log or (lambda line: print(line, file=sys.stderr))
    lock_path = path + '.lock'
    waited = False
    while True:
        try:
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o666)
        except OSError as e:
            raise UserError('cannot write {}: {} (creating its lock file)'
                            .format(path, e.strerror or e))
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if not waited:
                    log('waiting for another process that is writing {} '
                        '(it holds {})'.format(path, lock_path))
                    waited = True
                fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                current = os.stat(lock_path).st_ino
            except FileNotFoundError:
                current = None
        except BaseException:
            os.close(fd)
            raise
        if current == os.fstat(fd).st_ino:
            break
        os.close(fd)  # the holder removed it meanwhile: lock the new one
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            os.unlink(lock_path)
        os.close(fd)


def make_once(path, make, made_by='made'):
    """Calls make() to create path unless it exists, holding file_lock(path).

    A process that waited for another finds path there and says so
    ('using PATH, which another process MADE_BY') instead of making it again.
    """
    if os.path.exists(path):
        return
    with file_lock(path):
        if os.path.exists(path):
            print('using {}, which another process {}'.format(path, made_by),
                  file=sys.stderr)
            return
        make()
def progress(iterable, description, enabled=True, total=None):
    """iterable with a tqdm bar on stderr (count, rate, time left); none when
    not enabled or when stderr is not a terminal, so logs get no control
    codes."""
    # Imported here: tqdm takes 60 ms of every start-up (its version
    # lookup through importlib.metadata), and prediction shows no bar.
    from tqdm import tqdm
    return tqdm(iterable, desc=description, total=total, unit='image',
                file=sys.stderr, disable=None if enabled else True)


def check_scheme(url):
    """Refuses a URL that is not http(s)://HOST/..., saying how to fix it."""
    try:
        parts = urllib.parse.urlsplit(url)
        parts.port  # a port that is not a number is a ValueError here
    except ValueError as e:
        raise UserError('not a valid URL: {}'.format(e))
    scheme = parts.scheme.lower()
    if '://' not in url:
        raise UserError('the URL has no scheme: add http:// or https:// in '
                        'front')
    if scheme not in ('http', 'https'):
        raise UserError('unsupported URL scheme {!r} (only http and https)'
                        .format(scheme))
    if not parts.netloc:
        raise UserError('{} names no host'.format(url))


def http_get(url, headers=None, timeout=(CONNECT_TIMEOUT, READ_TIMEOUT)):
    """Starts a streamed GET and turns transport failures into UserErrors.

    Raises Unreachable when no connection could be made (DNS, refused,
    connect time-out), UserError for TLS failures, HTTP status >= 400 and
    the rest.
    """
    check_scheme(url)
    host = urllib.parse.urlsplit(url).netloc
    # Imported here: requests takes a third of a local run's start-up.
    import requests
    try:
        response = requests.get(url, headers=headers, stream=True,
                                timeout=timeout)
    except requests.exceptions.SSLError as e:
        raise UserError('TLS failure with {}: {}'.format(host, _tls_reason(e)))
    except requests.exceptions.ConnectTimeout:
        raise Unreachable('cannot reach {}: connection timed out'.format(
            host))
    except requests.exceptions.ConnectionError as e:
        raise Unreachable('cannot reach {}: {}'.format(
            host, _connection_reason(e)))
    except requests.exceptions.Timeout:
        raise UserError('timed out waiting for the server')
    except (requests.exceptions.RequestException, ValueError) as e:
        # ValueError: urllib3's LocationParseError, e.g. a host name label
        # over 63 characters, passes through requests unwrapped.
        raise UserError(one_line(e))
    if response.status_code >= 400:
        response.close()
        raise UserError('HTTP {} {}'.format(
            response.status_code, response.reason or '').strip())
    return response


def _tls_reason(exc):
    text = str(exc)
    if 'CERTIFICATE_VERIFY_FAILED' in text:
        detail = re.search(r'certificate verify failed: ([^(\')]*)', text)
        return 'the server\'s certificate could not be verified ({})'.format(
            detail.group(1).strip() if detail else 'untrusted')
    return one_line(exc)


def _connection_reason(exc):
    text = str(exc)
    for reason in ('Name or service not known', 'Connection refused',
                   'Temporary failure in name resolution',
                   'No route to host', 'Network is unreachable'):
        if reason in text:
            return reason.lower()
    return 'connection failed'


def iter_body(response, stall_timeout=READ_TIMEOUT, deadline=None):
    """The response body in chunks as they arrive (each socket read).

    Raises UserError when the connection is cut, when fewer than
    STALL_BYTES arrive in ``stall_timeout`` seconds (a server that drips a
    byte now and then makes no progress either), or when the monotonic
    clock passes ``deadline``.
    """
    import urllib3
    raw = response.raw
    mark_time, mark_bytes, received = time.monotonic(), 0, 0
    try:
        while True:
            chunk = raw.read1(CHUNK, decode_content=True)
            if not chunk:
                return
            received += len(chunk)
            now = time.monotonic()
            if deadline is not None and now > deadline:
                raise UserError(_TIMED_OUT)
            if received - mark_bytes >= STALL_BYTES:
                mark_time, mark_bytes = now, received
            elif now - mark_time > stall_timeout:
                raise UserError(_stalled(stall_timeout))
            yield chunk
    except urllib3.exceptions.ReadTimeoutError:
        raise UserError(_TIMED_OUT if deadline is not None
                        else _stalled(stall_timeout))
    except urllib3.exceptions.ProtocolError:
        raise UserError('the download broke off (the connection closed '
                        'before the end)')
    except (urllib3.exceptions.HTTPError, OSError) as e:
        raise UserError('the download broke off ({})'.format(one_line(e)))


_TIMED_OUT = 'timed out: the download took longer than the time-out'


def _stalled(seconds):
    return ('the download stalled: under {} bytes in {:g} s'.format(
        STALL_BYTES, seconds))


def looks_like_html(head, content_type=''):
    """Whether a body that starts with ``head`` is a web page."""
    if 'html' in (content_type or '').lower():
        return True
    start = head[:512].lstrip().lower()
    return start.startswith((b'<!doctype html', b'<html', b'<head', b'<?xml'))


def fetch_bytes(url, max_bytes, timeout=READ_TIMEOUT):
    """The body of url in memory, refusing anything over max_bytes.

    ``timeout`` (seconds) bounds the whole request, connection and body
    together, checked at every chunk received. A web page is refused.
    """
    deadline = time.monotonic() + timeout
    response = http_get(url, timeout=(min(CONNECT_TIMEOUT, timeout),
                                      timeout))
    with response:
        length = response.headers.get('Content-Length')
        if length and length.isdigit() and int(length) > max_bytes:
            raise UserError('larger than the download limit ({} > {} bytes)'
                            .format(length, max_bytes))
        if looks_like_html(b'', response.headers.get('Content-Type')):
            raise UserError('the server sent an HTML page, not an image')
        body = bytearray()
        for chunk in iter_body(response, timeout, deadline):
            body += chunk
            if len(body) > max_bytes:
                raise UserError('larger than the download limit ({} bytes)'
                                .format(max_bytes))
    if looks_like_html(bytes(body[:512])):
        raise UserError('the server sent an HTML page, not an image')
    return bytes(body)


def file_sha1(path):
    digest = hashlib.sha1()
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(CHUNK), b''):
            digest.update(block)
    return digest


def check_sha1(text, source='--sha1'):
    """Refuses anything but 40 hexadecimal digits, naming where it came
    from; returns it in lower case."""
    if not re.fullmatch(r'[0-9a-fA-F]{40}', text or ''):
        raise UserError('{} {!r} is not a sha1 (40 hexadecimal digits)'
                        .format(source, text))
    return text.lower()


def download_file(url, dest, sha1=None, progress=True,
                  stall_timeout=READ_TIMEOUT):
    """Downloads url to dest, resuming ``dest.part``, verifying the sha1.

    The file appears at dest only when it is complete and verified; a
    broken-off or stalled download keeps ``dest.part`` for the next try, a
    wrong one (checksum mismatch, a web page) is removed. Callers that may
    run concurrently hold file_lock(dest). Raises Unreachable or UserError.
    """
    part = dest + '.part'
    offset = os.path.getsize(part) if os.path.exists(part) else 0
    headers = {'Range': 'bytes={}-'.format(offset)} if offset else None
    try:
        response = http_get(url, headers=headers,
                            timeout=(CONNECT_TIMEOUT, stall_timeout))
    except UserError as e:
        # 416: the part file already holds the whole body.
        if not (offset and str(e).startswith('HTTP 416')):
            raise
        response = None
    if response is not None:
        _receive(response, part, offset, os.path.basename(dest), progress,
                 stall_timeout)
    with open(part, 'rb') as f:
        head = f.read(512)
    if looks_like_html(head):
        os.unlink(part)
        raise UserError('the server sent a web page, not the file; check '
                        'the URL (the download was removed)')
    if sha1:
        actual = file_sha1(part).hexdigest()
        if actual != sha1.lower():
            os.unlink(part)
            raise UserError(
                'checksum mismatch: expected sha1 {}, got {}; the download '
                'was removed. Check that the server sends the right file '
                'and that the expected sha1 (--sha1 or '
                'GOOGLENET_CAFFEMODEL_SHA1) is its sha1'.format(sha1, actual))
    os.replace(part, dest)


def _receive(response, part, offset, name, progress, stall_timeout):
    with response:
        if response.status_code != 206:
            offset = 0  # the server ignored the range: start afresh
        total = _total_size(response, offset)
        try:
            out = open(part, 'ab' if offset else 'wb')
        except OSError as e:
            raise UserError('cannot write {}: {}'.format(
                part, e.strerror or e))
        done = offset
        # On a terminal one line redrawn; elsewhere (a log) a line a tenth.
        tty = sys.stderr.isatty()
        try:
            with out:
                for chunk in iter_body(response, stall_timeout):
                    try:
                        out.write(chunk)
                    except OSError as e:
                        raise UserError('cannot write {}: {} (what arrived '
                                        'so far is kept for the next try)'
                                        .format(part, e.strerror or e))
                    done += len(chunk)
                    if progress and (tty or _tenth(done - len(chunk), total)
                                     != _tenth(done, total)):
                        _show_progress(name, done, total, tty)
        except OSError as e:  # the buffered last bytes, written at close
            raise UserError('cannot write {}: {}'.format(
                part, e.strerror or e))
        finally:
            if progress and tty and done > offset:
                print(file=sys.stderr)  # end the progress line


def _total_size(response, offset):
    length = response.headers.get('Content-Length')
    return offset + int(length) if length and length.isdigit() else None


def _tenth(done, total):
    """Which tenth of the download (of 10 MB steps when the size is not
    known) done bytes are in."""
    return 10 * done // total if total else done // 10 ** 7


def _show_progress(name, done, total, tty):
    # Bytes, not MB: a slow server's progress must visibly move.
    if total:
        text = 'downloading {} {:5.1f}% {:,} of {:,} bytes'.format(
            name, 100.0 * done / total, done, total)
    else:
        text = 'downloading {} {:,} bytes'.format(name, done)
    sys.stderr.write('\r' + text if tty else text + '\n')
    sys.stderr.flush()


# --- images: Caffe's reference preprocessing ------------------------------

MEAN_BGR = numpy.array([104.0, 117.0, 123.0], dtype=numpy.float32)
RESIZE = 256
CROP = 224
CENTER = (RESIZE - CROP) // 2
# A 200 MP photo decodes to 600 MB of RGB; a PNG declaring far more is
# more likely a decompression bomb than a photo.
DEFAULT_MAX_PIXELS = 200 * 1000 * 1000
# Modes Pillow converts to RGB by their definition; alpha is dropped, as
# Caffe's cv::imread(IMREAD_COLOR) drops it.
RGB_READABLE = {'1', 'L', 'P', 'RGB', 'RGBA', 'RGBX', 'RGBa', 'LA', 'PA',
                'CMYK', 'YCbCr', 'HSV'}
SIXTEEN_BIT = {'I;16', 'I;16L', 'I;16B', 'I;16N'}


# What shown() escapes: backslashes (so that its escapes have one reading),
# the control characters (C0, DEL, C1), the line and paragraph separators
# (str.splitlines breaks lines at them) and lone surrogates (a file name's
# undecodable bytes, as os.fsdecode holds them).
_UNSAFE = re.compile('[\\\\\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]')
_NAMED = {'\\': '\\\\', '\n': '\\n', '\r': '\\r', '\t': '\\t'}
# Characters no name may hold: the control characters and separators.
CONTROL = re.compile('[\x00-\x1f\x7f-\x9f\u2028\u2029]')
# Where str.splitlines (and so many readers of a names file) ends a line.
LINE_BREAK = re.compile('[\n\r\x0b\x0c\x1c-\x1e\x85\u2028\u2029]')


def _escape(match):
    char = match.group()
    code = ord(char)
    if char in _NAMED:
        return _NAMED[char]
    if 0xdc80 <= code <= 0xdcff:  # surrogateescape's form of a byte
        return '\\x{:02x}'.format(code - 0xdc00)
    if code < 0x80:
        return '\\x{:02x}'.format(code)
    # \u, not \x: a C1 control stays distinct from the undecodable byte
    # of the same value.
    return '\\u{:04x}'.format(code)


def shown(text):
    """Text safe to print or store, on one line whatever it holds, and
    different for different texts: a file name's bytes that are not UTF-8
    (held by Python as surrogates) appear as backslash escapes (\\xe9),
    control characters as \\n, \\r, \\t, \\x1b (C1 ones and U+2028/9 as
    \\u0085), and a backslash as \\\\."""
    return _UNSAFE.sub(_escape, text)


def decoded(name):
    """A file name as text, the form class names take from folder names:
    bytes that are not UTF-8 appear as in shown() (\\xe9), the rest as it
    is, backslashes included (a folder a\\b is class a\\b)."""
    return name.encode('utf-8', 'surrogateescape').decode(
        'utf-8', 'backslashreplace')


def controls_in(text):
    """The control characters text holds, as shown() writes them ('' if
    none): a name with one cannot be printed or kept one per line."""
    return ' '.join(shown(c) for c in sorted(set(CONTROL.findall(text))))


def one_per_line(names, what, path):
    """The text of a one-name-per-line file (labels.txt, a list of inputs);
    a name with a line break is a UserError rather than two lines that
    shift every later name for the file's readers."""
    for name in names:
        if LINE_BREAK.search(name):
            raise UserError('{} {} has a line break: {} holds one name per '
                            'line'.format(what, shown(name), shown(path)))
    return ''.join(name + '\n' for name in names)


_OPENING = threading.Lock()


def open_image(source, max_pixels=DEFAULT_MAX_PIXELS):
    """A decoded RGB PIL image from a path or bytes, EXIF orientation applied.

    Samples are scaled by the range of their type, as Caffe's loaders do
    (cv::imread for 16 bits, skimage's img_as_float in classify.py): 16-bit
    grey (Pillow's I;16 modes, and mode I of a 16-bit PNM) is divided by
    257 and float (mode F) is taken as 0..1, each rounded to 8 bits, so an
    image whose values are 257x an 8-bit one reads as that image exactly.
    16-bit RGB(A) PNG and TIFF arrive from Pillow as 8-bit already (the
    high byte of each sample). Transparency is dropped, not composited.
    Images over ``max_pixels`` (width x height) are refused before they
    are decoded; so are modes without an honest RGB reading (LAB, 32-bit
    integers, premultiplied La), by name, and images with nothing in them
    to classify (check_content). Every failure is a UserError.
    """
    stream = io.BytesIO(source) if isinstance(source, bytes) else source
    if isinstance(source, str):
        _check_regular(source)
    # Pillow's limit and the warnings filter are process-wide: one image
    # opens at a time (prefetch's other threads resize meanwhile).
    with _OPENING:
        previous = Image.MAX_IMAGE_PIXELS
        try:
            # Pillow checks the declared size when it opens a file, before
            # decoding; its warning (at the limit) becomes the refusal.
            Image.MAX_IMAGE_PIXELS = max_pixels
            with warnings.catch_warnings():
                # Pillow's UserWarnings (corrupt EXIF data: the pixels
                # decode, the tags it cannot read are skipped) would print
                # two lines of its source per image among the results.
                warnings.filterwarnings('ignore', category=UserWarning,
                                        module='PIL')
                warnings.simplefilter('error', Image.DecompressionBombWarning)
                with Image.open(stream) as image:
                    image.load()
                    _check_jpeg_end(image)
                    ImageOps.exif_transpose(image, in_place=True)
                    return _check_content(_to_rgb(image), image.mode)
        except FileNotFoundError:
            raise UserError('no such file')
        except IsADirectoryError:
            raise UserError('is a folder')
        except PermissionError as e:
            raise UserError('cannot read: {}'.format(e.strerror))
        except (Image.DecompressionBombError,
                Image.DecompressionBombWarning) as e:
            raise UserError('larger than the pixel limit ({}; --max-pixels '
                            'raises it)'.format(_bomb_reason(e, max_pixels)))
        except UnidentifiedImageError:
            raise UserError('not an image')
        except (OSError, SyntaxError, ValueError) as e:
            text = one_line(e)
            if 'truncated' in text.lower() or 'broken data stream' in text:
                raise UserError('truncated image')
            raise UserError('cannot decode image ({})'.format(text))
        finally:
            Image.MAX_IMAGE_PIXELS = previous


def _check_jpeg_end(image):
    """UserError for a JPEG that ends in rows of exactly the grey a decoder
    fills in for missing data.

    Data cut short and closed with an end marker decodes without error:
    libjpeg decodes the blocks past the cut as zero coefficients, flat
    mid-grey in every channel (128; 127 in Pillow's inverted CMYK), from
    the cut to the end in scan order (in a progressive file, when the cut
    falls in its first scan), and Pillow passes its warning over. Nothing
    in the pixels tells that from a picture that really ends in that grey,
    so the message says both; a band matched by one about as tall at the
    top (letterboxing) is taken for content, as is an image grey throughout
    (check_content's case). The last MCU row (8 or 16 pixel rows) is read
    first; the whole image only when it is grey.
    """
    # Pillow names a JPEG with an MPF segment of several images (many
    # cameras' files) MPO; its first image decodes as any JPEG's.
    if image.format not in ('JPEG', 'MPO') or image.mode not in (
            'L', 'RGB', 'CMYK'):
        return
    layers = getattr(image, 'layer', None) or []
    # One component is coded in 8x8 blocks whatever its sampling factor.
    mcu = 8 * max(v for _, _, v, _ in layers) if len(layers) > 1 else 8
    height = image.height
    last_row = (height - 1) // mcu * mcu
    extrema = image.crop((0, last_row, image.width, height)).getextrema()
    bands = extrema if image.mode != 'L' else (extrema,)
    fill = 127 if image.mode == 'CMYK' else 128
    if any(band != (fill, fill) for band in bands):
        return
    grey = (numpy.asarray(image) == fill).reshape(height, -1).all(axis=1)
    if grey.all():
        return
    begin = height - int(numpy.argmin(grey[::-1]))
    # Letterboxing: a band at the top too, as tall give or take the MCU row
    # where each band meets the picture (its blocks ring, not exactly grey).
    if grey[:max(1, height - begin - mcu)].all():
        return
    raise UserError('truncated image, or one that really ends in flat grey: '
                    'its rows from {} on are exactly the grey a JPEG decoder '
                    'fills in for missing data (save such a picture as PNG '
                    'to classify it)'.format(begin))


def _check_content(image, mode):
    """image, or UserError if it is one colour throughout: a blank frame
    (a lens cap, a failed capture, an empty canvas) has no object in it,
    and the network would still name one with confidence. ``mode`` is the
    file's: 16-bit and float samples are judged once read at 8 bits (a
    level of 65535 apart makes the same network input), and said so."""
    # A 16x16 sample settles a photo in microseconds; the whole image is
    # read (40 ms for 6 MP) only when the sample is one colour.
    sample = image.resize((min(16, image.width), min(16, image.height)),
                          Image.Resampling.NEAREST)
    if any(low != high for low, high in sample.getextrema()):
        return image
    extrema = image.getextrema()
    if all(low == high for low, high in extrema):
        raise UserError('one colour throughout{} (RGB {}): nothing to '
                        'classify'.format(
                            '' if mode in RGB_READABLE else
                            ' once read at 8 bits',
                            ', '.join(str(low) for low, _ in extrema)))
    return image


def _bomb_reason(exc, max_pixels):
    numbers = [int(n) for n in re.findall(r'\d+', str(exc))]
    pixels = numbers[0] if numbers else None
    return '{} pixels > {}'.format(pixels, max_pixels) if pixels else (
        'over {} pixels'.format(max_pixels))


def _to_rgb(image):
    mode = image.mode
    if mode == 'RGB':
        return image
    if mode in RGB_READABLE:
        return image.convert('RGB')
    if mode in SIXTEEN_BIT or (mode == 'I' and image.format == 'PPM'):
        # Pillow reads a PNM of more than 8 bits as mode I, scaled from its
        # maxval to 0..65535.
        array = numpy.asarray(image, dtype=numpy.float64) / 257.0
    elif mode == 'F':
        array = numpy.asarray(image, dtype=numpy.float64)
        if not numpy.isfinite(array).all():
            raise UserError('float samples that are NaN or infinite')
        if array.min() < 0 or array.max() > 1:
            # 9 digits: a float32 just over 1 does not print as 1.
            raise UserError('float samples outside 0..1 ({:.9g}..{:.9g}); '
                            'float images are read as 0..1'.format(
                                array.min(), array.max()))
        array = array * 255.0
    else:
        raise UserError('pixel mode {} has no RGB reading this toolkit '
                        'trusts; save the image as 8- or 16-bit RGB or '
                        'grey'.format(mode))
    grey = Image.fromarray(numpy.rint(array).astype(numpy.uint8), 'L')
    return grey.convert('RGB')


def resized_bgr(image):
    """The 256x256 image as float32 HWC, BGR, minus the mean."""
    image = image.resize((RESIZE, RESIZE), Image.BILINEAR)
    array = numpy.asarray(image, dtype=numpy.float32)[:, :, ::-1]
    return array - MEAN_BGR


def crop(array, top=CENTER, left=CENTER, mirror=False):
    """A 224x224 CHW crop of a resized_bgr array, mirrored if asked."""
    patch = array[top:top + CROP, left:left + CROP]
    if mirror:
        patch = patch[:, ::-1]
    return numpy.ascontiguousarray(patch.transpose(2, 0, 1))


def preprocess(image):
    """Caffe's reference input: the centre 224 crop of the 256x256 image."""
    return crop(resized_bgr(image))


def ten_crops(image):
    """Caffe's oversample: four corners and the centre, each also mirrored."""
    array = resized_bgr(image)
    far = RESIZE - CROP
    offsets = [(0, 0), (0, far), (far, 0), (far, far), (CENTER, CENTER)]
    return numpy.stack([crop(array, top, left, mirror)
                        for mirror in (False, True)
                        for top, left in offsets])


def image_suffixes():
    """The file name endings Pillow registers for its formats, lower case
    with the dot (a few, such as .pdf, it can only write: such a file is
    then reported as undecodable rather than passed over)."""
    return set(Image.registered_extensions())


def is_hidden(name):
    """Dot-files and dot-folders, macOS's ._NAME companions and the
    __MACOSX folder that macOS zips carry: never data."""
    return name.startswith('.') or name == '__MACOSX'


def _check_regular(path):
    """Refuses a FIFO, device or socket by its name: opening a FIFO would
    wait for a writer forever."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return  # open() says what is wrong, in open_image's words
    if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
        raise UserError('not a regular file (a FIFO, device or socket)')


def list_images(folder, recursive=False):
    """The image files in folder (and its visible sub-folders when
    recursive, following links once), sorted, and {reason: count} of the
    files left out: 'hidden' or 'not an image file (.EXT)'.

    A file is an image file when its ending is one of image_suffixes();
    whether it decodes is for open_image to say. A folder that cannot be
    read is a UserError naming it.
    """
    suffixes = image_suffixes()
    images, skipped, seen = [], {}, set()
    pending = [folder]
    while pending:
        current = pending.pop()
        try:
            info = os.stat(current)
            if (info.st_dev, info.st_ino) in seen:
                continue  # a link back to a folder already listed
            seen.add((info.st_dev, info.st_ino))
            entries = list(os.scandir(current))
        except OSError as e:
            raise UserError('cannot read folder {}: {}'.format(
                shown(current), e.strerror or e))
        for entry in entries:
            try:
                kind = 'folder' if entry.is_dir() else (
                    'file' if entry.is_file() else None)
            except OSError:  # a link in a loop (ELOOP), an entry gone
                kind = None
            if is_hidden(entry.name):
                reason = 'hidden'
            elif kind == 'folder':
                if recursive:
                    pending.append(entry.path)
                continue
            elif kind is None:
                # A FIFO would block a read; a dangling or looping link.
                reason = 'not a regular file'
            elif os.path.splitext(entry.name)[1].lower() in suffixes:
                images.append(entry.path)
                continue
            else:
                reason = 'not an image file ({})'.format(
                    shown(os.path.splitext(entry.name)[1].lower()) or
                    'no extension')
            skipped[reason] = skipped.get(reason, 0) + 1
    return sorted(images), skipped


def read_text_lines(path, what):
    """The lines of a UTF-8 text file (a byte-order mark and CRLF line ends
    are fine); an unreadable file or another encoding is a UserError."""
    try:
        with open(path, encoding='utf-8-sig') as f:
            # Lines end at line ends only (the universal newlines of text
            # mode: \n, \r\n, \r), not also at the form feeds, \x1c-\x1e,
            # NEL and U+2028 where str.splitlines would split a name in two.
            lines = f.read().split('\n')
    except UnicodeDecodeError as e:
        raise UserError('{} {} is not UTF-8 text (byte 0x{:02x} at offset '
                        '{}): save it as UTF-8'.format(
                            what, shown(path), e.object[e.start], e.start))
    except OSError as e:
        raise UserError('cannot read {} {}: {}'.format(
            what, shown(path), e.strerror or e))
    if lines[-1] == '':  # the last line's end
        lines.pop()
    return lines


def read_labels(path):
    """One label per line (Caffe's synset_words.txt format), surrounding
    whitespace stripped; blank lines after the last are fine. An empty name
    before it, a name given twice or one with a control character is a
    UserError: each would shift, merge or garble the labels."""
    names = [line.strip() for line in read_text_lines(path, 'label file')]
    while names and not names[-1]:
        names.pop()
    lines = {}
    for number, name in enumerate(names, 1):
        where = 'label file {} line {}'.format(shown(path), number)
        if not name:
            raise UserError('{} is empty: each line names the class of its '
                            'number; name the class'.format(where))
        if controls_in(name):
            raise UserError('{}: {} has a control character ({})'.format(
                where, shown(name), controls_in(name)))
        if name in lines:
            raise UserError('label file {}: {} is on lines {} and {}; '
                            'class names must differ'.format(
                                shown(path), shown(name), lines[name],
                                number))
        lines[name] = number
    return names


def usable_cores():
    """How many cores this process may run on: its CPU affinity where the
    system reports one (a container's or taskset's limit), else all."""
    if hasattr(os, 'sched_getaffinity'):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def prefetch(function, items, ahead=2, workers=1):
    """Yields (item, future of function(item)) for each item, in order.

    ``workers`` daemon threads work through the items ahead of the caller,
    at most ``ahead`` results waiting beyond those in progress, so that
    decoding and resizing (Pillow and numpy release the GIL) overlap with
    what the caller does meanwhile (the forward pass), and with each other
    where one thread's decoding is slower than the forward pass.
    ``future.result()`` returns the result or raises what function raised.
    Closing the generator early (an error, Ctrl-C) stops the threads after
    their current items; being daemons they never hold up the process's
    exit.

    The threads start at once, not at the first ``next()``: the first
    images decode while the caller still loads its model. The result is
    an iterator whose ``close()`` (or the end of a with block) stops them,
    whether or not it was iterated.
    """
    items = iter(items)
    workers = max(1, workers)
    taking = threading.Lock()
    # One slot per item taken and not yet handed to the caller.
    slots = threading.Semaphore(max(1, ahead) + workers)
    arrived = threading.Condition()
    finished = {}
    state = {'taken': 0, 'total': None}
    stop = threading.Event()

    def work():
        while not stop.is_set():
            # Polled: a closed generator releases no more slots.
            if not slots.acquire(timeout=0.1):
                continue
            with taking:
                if state['total'] is not None:
                    return
                index = state['taken']
                try:
                    item = next(items)
                except StopIteration:
                    with arrived:
                        state['total'] = index
                        arrived.notify_all()
                    return
                state['taken'] += 1
            future = concurrent.futures.Future()
            try:
                future.set_result(function(item))
            except BaseException as e:  # the caller decides what it means
                future.set_exception(e)
            with arrived:
                finished[index] = (item, future)
                arrived.notify_all()

    def in_order():
        index = 0
        while True:
            with arrived:
                # Polled: Ctrl-C's signal may reach a prefetching thread,
                # and a main thread in an untimed wait would never see it.
                while index not in finished and index != state['total']:
                    arrived.wait(timeout=0.1)
                if index == state['total']:
                    return
                entry = finished.pop(index)
            slots.release()
            index += 1
            yield entry

    for _ in range(workers):
        threading.Thread(target=work, name='prefetch', daemon=True).start()
    return _Prefetched(in_order(), stop)


class _Prefetched:
    """prefetch's iterator: close() stops its threads even before the
    first next(), which a generator's own close() would not."""

    def __init__(self, generator, stop):
        self._generator, self._stop = generator, stop

    def __iter__(self):
        return self

    def __next__(self):
        try:
            return next(self._generator)
        except BaseException:
            self._stop.set()
            raise

    def close(self):
        self._stop.set()
        self._generator.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


# --- the out-of-core row cache ------------------------------------------------

class RowCache:
    """A float32 array of rows kept on disk, filled in blocks, resumable.

    ``NAME.npy`` is a plain ``.npy`` file of the whole shape, created at once
    (sparse) and read back memory-mapped (``read``); ``NAME.json``, written
    atomically, records the key, the shape, the dtype, the block length (in
    rows) and the sha1 of each complete block (None for the others). Rows
    reach the file with ``pwrite`` and ``fsync`` (``write``) before the index
    says they are complete (``commit``), so a process killed at any moment
    leaves an index that promises only rows on disk, and the next ``open``
    carries on from there. Several processes may write disjoint blocks of
    the same file; one of them commits their digests.

    Writes do not go through a memory map: the pages of a mapped file count
    in the writer's resident memory, and a cache larger than RAM is the point.
    """

    def __init__(self, path, key, shape, block):
        self.path = path  # NAME.npy
        self.index_path = os.path.splitext(path)[0] + '.json'
        self.key = key
        self.shape = tuple(int(n) for n in shape)
        self.block = int(block)
        self.dtype = numpy.dtype(numpy.float32)
        self.blocks = [None] * self.n_blocks
        self.offset = None

    @property
    def n_blocks(self):
        return -(-self.shape[0] // self.block)

    @property
    def row_bytes(self):
        return int(numpy.prod(self.shape[1:], dtype=numpy.int64)) * \
            self.dtype.itemsize

    def rows(self, i):
        """The rows [start, stop) of block i."""
        return i * self.block, min((i + 1) * self.block, self.shape[0])

    def open(self, note=print):
        """Checks the files against the key; returns the indices of the
        blocks still to compute (all of them for a new or changed cache).

        A damaged cache (an index that does not parse, a ``.npy`` that is
        missing, truncated or of another shape, a complete block whose bytes
        changed) is reported through note(line) and recomputed: the whole
        file, or only the changed blocks.
        """
        index = self._read_index(note)
        if index is not None and index.get('key') == self.key and \
                index.get('shape') == list(self.shape) and \
                index.get('dtype') == self.dtype.str:
            self.block = int(index['block'])
            blocks = index['blocks']
            if self._open_file(note) and len(blocks) == self.n_blocks:
                self.blocks = blocks
                changed = [i for i, digest in enumerate(blocks)
                           if digest is not None and
                           self._digest(i) != digest]
                if changed:
                    note('{}: {} complete block{} changed on disk since '
                         'written: recomputing {}'.format(
                             self.path, len(changed),
                             's' if len(changed) > 1 else '',
                             'them' if len(changed) > 1 else 'it'))
                    for i in changed:
                        self.blocks[i] = None
                return self.pending()
        self._create()
        return self.pending()

    def pending(self):
        return [i for i, digest in enumerate(self.blocks) if digest is None]

    def complete_rows(self):
        return sum(self.rows(i)[1] - self.rows(i)[0]
                   for i, digest in enumerate(self.blocks) if digest)

    def _read_index(self, note):
        if not os.path.exists(self.index_path):
            return None
        if not os.path.isfile(self.index_path):  # a FIFO would block
            note('{}: not a regular file: recomputing the cache'.format(
                self.index_path))
            return None
        try:
            with open(self.index_path) as f:
                index = json.load(f)
            if not isinstance(index, dict) or not isinstance(
                    index.get('blocks'), list) or int(index['block']) < 1:
                raise ValueError('not an index of this project')
        except (OSError, ValueError, KeyError, TypeError) as e:
            note('{}: damaged index ({}): recomputing the cache'.format(
                self.index_path, one_line(e)))
            return None
        return index

    def _open_file(self, note):
        """Whether NAME.npy is there whole, with the index's shape."""
        fmt = numpy.lib.format
        if not os.path.exists(self.path):
            note('{}: missing: recomputing it'.format(self.path))
            return False
        if not os.path.isfile(self.path):  # opening a FIFO would block
            note('{}: not a regular file: recomputing it'.format(self.path))
            return False
        try:
            with open(self.path, 'rb') as f:
                version = fmt.read_magic(f)
                read_header = (fmt.read_array_header_1_0 if version == (1, 0)
                               else fmt.read_array_header_2_0)
                shape, fortran, dtype = read_header(f)
                self.offset = f.tell()
            size = os.path.getsize(self.path)
        except Exception as e:  # whatever numpy makes of foreign bytes
            problem = 'not a .npy file: {}'.format(one_line(e))
        else:
            expected = self.offset + self.row_bytes * self.shape[0]
            problem = (
                'holds {} {}, its index says {} {}'.format(
                    dtype, shape, self.dtype, self.shape)
                if (shape, dtype, fortran) != (self.shape, self.dtype, False)
                else '{} bytes where {} were written'.format(size, expected)
                if size != expected else None)
        if problem:
            note('{}: damaged ({}): recomputing it'.format(self.path,
                                                           problem))
        return problem is None

    def _create(self):
        if os.path.lexists(self.path) and not os.path.isfile(self.path):
            try:  # what _open_file found in the cache's place
                os.unlink(self.path)
            except OSError as e:
                raise UserError('cannot replace {}: {}'.format(
                    self.path, e.strerror or e))
        array = numpy.lib.format.open_memmap(self.path, mode='w+',
                                             dtype=self.dtype,
                                             shape=self.shape)
        self.offset = array.offset
        del array
        self.blocks = [None] * self.n_blocks
        self.commit({})

    def _digest(self, i):
        start, stop = self.rows(i)
        size = (stop - start) * self.row_bytes
        with open(self.path, 'rb') as f:
            data = os.pread(f.fileno(), size, self.offset +
                            start * self.row_bytes)
        return hashlib.sha1(data).hexdigest() if len(data) == size else ''

    def attach(self):
        """For a process that writes blocks of a cache another opened."""
        if not self._open_file(note=print):
            raise UserError('{} changed while this run was starting'.format(
                self.path))

    def write(self, i, rows):
        """Writes block i (an array of its rows) to disk, synced; returns
        its digest for commit."""
        data = numpy.ascontiguousarray(rows, self.dtype).tobytes()
        start, stop = self.rows(i)
        if len(data) != (stop - start) * self.row_bytes:
            raise ValueError('block {} takes {} rows'.format(i, stop - start))
        fd = os.open(self.path, os.O_WRONLY)
        try:
            os.pwrite(fd, data, self.offset + start * self.row_bytes)
            os.fsync(fd)
        finally:
            os.close(fd)
        return hashlib.sha1(data).hexdigest()

    def commit(self, digests):
        """Records {block: digest} of written blocks in the index."""
        for i, digest in digests.items():
            self.blocks[i] = digest
        index = {'key': self.key, 'shape': list(self.shape),
                 'dtype': self.dtype.str, 'block': self.block,
                 'rows_complete': self.complete_rows(),
                 'blocks': self.blocks}
        with atomic_write(self.index_path, 'w') as f:
            json.dump(index, f)

    def read(self):
        """The whole array, memory-mapped read-only."""
        return numpy.load(self.path, mmap_mode='r')
