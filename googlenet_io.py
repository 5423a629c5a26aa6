"""What the scripts share: user-facing errors, atomic writes, and downloads."""
import contextlib
import hashlib
import os
import sys
import tempfile
import urllib.parse

import requests

CONNECT_TIMEOUT = 10
READ_TIMEOUT = 60
CHUNK = 1 << 20


class UserError(Exception):
    """A problem with the user's input; reported as one line, no traceback."""


class Unreachable(UserError):
    """The server could not be reached at all (as opposed to answering badly)."""


def report_errors(function, *args, **kwargs):
    """Runs function; a UserError becomes one line on stderr and exit code 1."""
    try:
        result = function(*args, **kwargs)
    except UserError as e:
        print('error: {}'.format(e), file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print('interrupted', file=sys.stderr)
        return 130
    return 0 if result is None else result


def one_line(exc):
    """The first line of an exception's message, for one-line reports."""
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


@contextlib.contextmanager
def atomic_write(path, mode='wb'):
    """Yields a file that replaces ``path`` only once it is completely written.

    A crash or an exception at any moment leaves the old file (or none) in
    place and no temporary file behind.
    """
    directory = os.path.dirname(os.path.abspath(path))
    try:
        fd, tmp = tempfile.mkstemp(dir=directory, suffix='.tmp',
                                   prefix='.' + os.path.basename(path) + '.')
    except OSError as e:
        raise UserError('cannot write {}: {}'.format(path, e.strerror or e))
    try:
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def check_scheme(url):
    scheme = urllib.parse.urlsplit(url).scheme.lower()
    if scheme not in ('http', 'https'):
        raise UserError('unsupported URL scheme {!r} in {} (only http and '
                        'https)'.format(scheme or '', url))


def http_get(url, headers=None, timeout=(CONNECT_TIMEOUT, READ_TIMEOUT)):
    """Starts a streamed GET and turns transport failures into UserErrors."""
    check_scheme(url)
    try:
        response = requests.get(url, headers=headers, stream=True,
                                timeout=timeout)
    except requests.exceptions.ConnectTimeout:
        raise Unreachable('cannot reach {}: connection timed out'.format(
            urllib.parse.urlsplit(url).netloc))
    except requests.exceptions.ConnectionError as e:
        raise Unreachable('cannot reach {}: {}'.format(
            urllib.parse.urlsplit(url).netloc, _connection_reason(e)))
    except requests.exceptions.Timeout:
        raise UserError('{} timed out'.format(url))
    except requests.exceptions.RequestException as e:
        raise UserError('cannot download {}: {}'.format(url, one_line(e)))
    return response


def _connection_reason(exc):
    text = str(exc)
    for reason in ('Name or service not known', 'Connection refused',
                   'Temporary failure in name resolution',
                   'No route to host', 'Network is unreachable'):
        if reason in text:
            return reason.lower()
    return 'connection failed'


def http_error(url, response):
    return UserError('{} answered HTTP {} {}'.format(
        url, response.status_code, response.reason or ''))


def iter_body(url, response):
    """The response body in chunks; a stalled or cut connection is a UserError."""
    try:
        yield from response.iter_content(CHUNK)
    except requests.exceptions.RequestException as e:
        raise UserError('download of {} broke off: {}'.format(
            url, one_line(e)))


def file_sha1(path, digest=None):
    digest = digest or hashlib.sha1()
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(CHUNK), b''):
            digest.update(block)
    return digest


def download_file(url, dest, sha1=None, progress=True):
    """Downloads url to dest, resuming ``dest.part``, verifying the sha1.

    The file appears at dest only when it is complete and verified.
    """
    part = dest + '.part'
    offset = os.path.getsize(part) if os.path.exists(part) else 0
    headers = {'Range': 'bytes={}-'.format(offset)} if offset else None
    response = http_get(url, headers=headers)
    with response:
        if response.status_code == 416 and offset:
            pass  # the part file already holds the whole body
        elif response.status_code in (200, 206):
            if response.status_code == 200:
                offset = 0  # the server ignored the range: start afresh
            total = _total_size(response, offset)
            try:
                out = open(part, 'ab' if offset else 'wb')
            except OSError as e:
                raise UserError('cannot write {}: {}'.format(
                    part, e.strerror or e))
            with out:
                done = offset
                for chunk in iter_body(url, response):
                    out.write(chunk)
                    done += len(chunk)
                    if progress:
                        _show_progress(os.path.basename(dest), done, total)
            if progress:
                print(file=sys.stderr)
        else:
            raise http_error(url, response)
    if sha1:
        actual = file_sha1(part).hexdigest()
        if actual != sha1.lower():
            os.unlink(part)
            raise UserError('checksum mismatch for {}: expected sha1 {}, got '
                            '{}; the download was removed, run again to '
                            'fetch it afresh'.format(url, sha1, actual))
    os.replace(part, dest)


def _total_size(response, offset):
    length = response.headers.get('Content-Length')
    return offset + int(length) if length and length.isdigit() else None


def _show_progress(name, done, total):
    if total:
        text = '\rdownloading {} {:5.1f}% {:.1f}/{:.1f} MB'.format(
            name, 100.0 * done / total, done / 1e6, total / 1e6)
    else:
        text = '\rdownloading {} {:.1f} MB'.format(name, done / 1e6)
    sys.stderr.write(text)
    sys.stderr.flush()
