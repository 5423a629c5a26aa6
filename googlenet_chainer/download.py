"""Downloads: an image into memory within a time-out, a file to disk,
resumably and verified by its sha1."""
import gzip
import hashlib
import os
import queue
import re
import shutil
import sys
import threading
import time

from googlenet_chainer.errors import UserError
from googlenet_chainer.files import CHUNK, file_sha1
from googlenet_chainer.web import (CONNECT_TIMEOUT, GZIP_MAGIC, READ_TIMEOUT,
                                   decoded_body, http_get, iter_body,
                                   looks_like_html)

_TIMED_OUT = 'timed out: the download took longer than the time-out'


def fetch_bytes(url, max_bytes, timeout=READ_TIMEOUT):
    """The body of url in memory, refusing anything over max_bytes.

    Args:
        url: an http or https URL (an image given with -u).
        max_bytes: the most bytes the body may hold; a Content-Length over
            it is refused before the body is read.
        timeout: seconds for the whole request: resolving the host name,
            connecting, and the body (a thread of its own does the request,
            so that a resolver that takes longer does not hold it).

    Returns:
        bytes: the body (web.decoded_body).

    Raises:
        Unreachable: no connection could be made (web.http_get).
        UserError: the time-out, http_get's and iter_body's failures, a body
            over max_bytes, or a web page (by its bytes).
    """
    deadline = time.monotonic() + timeout
    body = _within(deadline, _fetch, url, max_bytes, timeout, deadline)
    if looks_like_html(body[:512]):
        raise UserError('the server sent an HTML page, not an image')
    return body


def _fetch(url, max_bytes, timeout, deadline):
    """fetch_bytes' request, in the thread _within gives it."""
    response = http_get(url, timeout=(min(CONNECT_TIMEOUT, timeout),
                                      timeout))
    with response:
        length = response.headers.get('Content-Length')
        if length and length.isdigit() and int(length) > max_bytes:
            raise UserError('larger than the download limit ({} > {} bytes)'
                            .format(length, max_bytes))
        body = bytearray()
        for chunk in iter_body(response, timeout, deadline):
            body += chunk
            if len(body) > max_bytes:
                raise UserError('larger than the download limit ({} bytes)'
                                .format(max_bytes))
        return decoded_body(bytes(body),
                            response.headers.get('Content-Encoding'),
                            max_bytes)


def _within(deadline, function, *args):
    """function(*args) in a daemon thread, given up on (UserError, the
    time-out) at the monotonic ``deadline``: a thread blocked in the
    resolver cannot be interrupted, only left behind, and its own socket
    time-outs end it soon after."""
    done = queue.Queue(1)

    def run():
        try:
            done.put((True, function(*args)))
        except BaseException as e:  # raised again in the caller's thread
            done.put((False, e))
    threading.Thread(target=run, name='download', daemon=True).start()
    try:
        ok, value = done.get(timeout=max(0.0, deadline - time.monotonic()))
    except queue.Empty:
        raise UserError(_TIMED_OUT)
    if ok:
        return value
    raise value


def check_sha1(text, source='--sha1'):
    """Refuses anything but 40 hexadecimal digits, naming where it came from.

    Args:
        text: the sha1 as given, or None.
        source: where it came from, for the message: '--sha1' or
            'GOOGLENET_CAFFEMODEL_SHA1'.

    Returns:
        str: text in lower case.

    Raises:
        UserError: text is not 40 hexadecimal digits.
    """
    if not re.fullmatch(r'[0-9a-fA-F]{40}', text or ''):
        raise UserError('{} {!r} is not a sha1 (40 hexadecimal digits)'
                        .format(source, text))
    return text.lower()


class ChecksumMismatch(UserError):
    """A download whose sha1 is not the one expected; it was removed.

    Args:
        expected: the sha1 asked for.
        actual: the sha1 of what arrived.
    """

    def __init__(self, expected, actual):
        super().__init__('checksum mismatch: expected sha1 {}, got {}; the '
                         'download was removed'.format(expected, actual))
        self.expected = expected
        self.actual = actual


def download_file(url, dest, sha1=None, progress=True,
                  stall_timeout=READ_TIMEOUT):
    """Downloads url to dest, resuming ``dest.part``, verifying the sha1.

    The file appears at dest only when it is complete and verified. A
    broken-off or stalled download keeps ``dest.part`` for the next try
    (from any server of the same file); a wrong one (a web page, the wrong
    sha1) is removed. The bytes decide what arrived, not the server's
    labels: the body is kept as sent (identity encoding is asked for), and
    a gzip stream whose content has the sha1 is taken decompressed. A
    resumed request is honoured as the Content-Range says: a server that
    resumes before the part's end is written from where it resumes, one
    that would leave a gap is asked for the whole file. Callers that may
    run concurrently hold file_lock(dest).

    Args:
        url: an http or https URL.
        dest: the file to create.
        sha1: None, or the expected sha1 in hexadecimal, either case.
        progress: whether to report progress on stderr: one line redrawn
            on a terminal, else a line each tenth of the file (each 10 MB
            when its size is unknown).
        stall_timeout: seconds within which STALL_BYTES must arrive
            (web.iter_body); also the request's read time-out.

    Raises:
        Unreachable: no connection could be made (web.http_get).
        ChecksumMismatch: what arrived has another sha1.
        UserError: any other failure: the URL or the HTTP status, a
            broken-off or stalled download, ``dest.part`` cannot be written,
            or a web page.
    """
    part = dest + '.part'
    offset = os.path.getsize(part) if os.path.exists(part) else 0
    response, start = _request(url, offset, stall_timeout)
    if response is not None:
        _write_body(response, part, start, os.path.basename(dest), progress,
                    stall_timeout)
    with open(part, 'rb') as f:
        head = f.read(512)
    if looks_like_html(head):
        os.unlink(part)
        raise UserError('the server sent a web page, not the file; check '
                        'the URL (the download was removed)')
    if sha1:
        _verify(part, sha1.lower(), head)
    os.replace(part, dest)


def _request(url, offset, stall_timeout):
    """(the response to write from, where its body starts in the file), or
    (None, offset) when the part already holds the whole file (HTTP 416
    whose Content-Range gives exactly that size)."""
    headers = {'Accept-Encoding': 'identity'}
    if offset:
        headers['Range'] = 'bytes={}-'.format(offset)
    response = http_get(url, headers=headers,
                        timeout=(CONNECT_TIMEOUT, stall_timeout),
                        allow=(416,) if offset else ())
    if response.status_code == 416:
        response.close()
        if _content_range(response) == (None, offset):
            return None, offset
    elif response.status_code != 206:
        return response, 0  # the whole file
    else:
        start, _ = _content_range(response)
        if start is not None and start <= offset:
            return response, start
        response.close()
    # The part cannot be continued from here: the whole file again.
    del headers['Range']
    return http_get(url, headers=headers,
                    timeout=(CONNECT_TIMEOUT, stall_timeout)), 0


def _content_range(response):
    """(first byte, total) of a response's Content-Range (``bytes S-E/T``,
    or ``bytes */T`` with 416); None for what it does not give."""
    match = re.fullmatch(r'\s*bytes\s+(?:(\d+)-\d+|\*)/(\d+|\*)\s*',
                         response.headers.get('Content-Range') or '')
    if not match:
        return None, None
    first, total = match.groups()
    return (int(first) if first else None,
            int(total) if total and total != '*' else None)


def _verify(part, sha1, head):
    """Raises ChecksumMismatch (the part removed) unless part, or the
    content of the gzip stream it is, has the sha1."""
    actual = file_sha1(part).hexdigest()
    if actual == sha1:
        return
    if head[:2] == GZIP_MAGIC and _gunzipped_sha1(part) == sha1:
        unpacked = part + '.gunzip'
        with gzip.open(part, 'rb') as source, open(unpacked, 'wb') as out:
            shutil.copyfileobj(source, out, CHUNK)
        os.replace(unpacked, part)
        return
    os.unlink(part)
    raise ChecksumMismatch(sha1, actual)


def _gunzipped_sha1(path):
    """The sha1 of a gzip file's content, or None if it is not whole."""
    digest = hashlib.sha1()
    try:
        with gzip.open(path, 'rb') as f:
            for block in iter(lambda: f.read(CHUNK), b''):
                digest.update(block)
    except (OSError, EOFError):
        return None
    return digest.hexdigest()


def _write_body(response, part, start, name, progress, stall_timeout):
    """Writes the response's body into the part file from byte ``start``
    (what was there from start on is replaced); progress on stderr if
    asked. UserError when the part file cannot be written."""
    with response:
        total = _total_size(response, start)
        try:
            out = open(part, 'r+b' if start else 'wb')
            if start:
                out.truncate(start)
                out.seek(start)
        except OSError as e:
            raise UserError('cannot write {}: {}'.format(
                part, e.strerror or e))
        done = start
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
            if progress and tty and done > start:
                print(file=sys.stderr)  # end the progress line


def _total_size(response, start):
    """The file's whole size: start plus the Content-Length, or None when
    the server gives none."""
    length = response.headers.get('Content-Length')
    return start + int(length) if length and length.isdigit() else None


def _tenth(done, total):
    """Which tenth of the download (of 10 MB steps when the size is not
    known) done bytes are in."""
    return 10 * done // total if total else done // 10 ** 7


def _show_progress(name, done, total, tty):
    """Prints a progress line: redrawn in place on a terminal."""
    # Bytes, not MB: a slow server's progress must visibly move.
    if total:
        text = 'downloading {} {:5.1f}% {:,} of {:,} bytes'.format(
            name, 100.0 * done / total, done, total)
    else:
        text = 'downloading {} {:,} bytes'.format(name, done)
    sys.stderr.write('\r' + text if tty else text + '\n')
    sys.stderr.flush()
