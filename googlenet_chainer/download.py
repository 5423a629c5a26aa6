"""HTTP downloads: images into memory, the caffemodel to a file, resumably."""
import os
import re
import sys
import time
import urllib.parse

from googlenet_chainer.errors import Unreachable, UserError, one_line
from googlenet_chainer.files import CHUNK, file_sha1

CONNECT_TIMEOUT = 10
READ_TIMEOUT = 60
# A download that receives fewer bytes than this within the read time-out
# has stalled (curl's --speed-limit/--speed-time rule).
STALL_BYTES = 1024


def check_scheme(url):
    """Refuses a URL that is not http(s)://HOST/..., saying how to fix it.

    Args:
        url: the URL as the user gave it.

    Raises:
        UserError: the URL does not parse (a port that is not a number, say),
            has no scheme, a scheme other than http and https, or no host.
    """
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

    requests follows redirects; the body is left to read (iter_body).

    Args:
        url: an http or https URL; check_scheme checks it first.
        headers: None, or extra request headers, such as Range.
        timeout: (connect, read) in seconds, as requests takes them: the read
            time-out bounds each wait for data, not the whole body.

    Returns:
        requests.Response with a status under 400, its body not yet read;
        the caller closes it (a with block).

    Raises:
        Unreachable: no connection could be made (the name does not resolve,
            the connection is refused or times out).
        UserError: check_scheme refuses the URL, TLS fails, the server does
            not answer in time, the status is 400 or more, or requests fails
            otherwise.
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
    """Why TLS failed, in one line: for a certificate that could not be
    verified, the verifier's reason; else the error's first line."""
    text = str(exc)
    if 'CERTIFICATE_VERIFY_FAILED' in text:
        detail = re.search(r'certificate verify failed: ([^(\')]*)', text)
        return 'the server\'s certificate could not be verified ({})'.format(
            detail.group(1).strip() if detail else 'untrusted')
    return one_line(exc)


def _connection_reason(exc):
    """The system's reason a connection failed, when requests' message names
    one of the common ones; else 'connection failed'."""
    text = str(exc)
    for reason in ('Name or service not known', 'Connection refused',
                   'Temporary failure in name resolution',
                   'No route to host', 'Network is unreachable'):
        if reason in text:
            return reason.lower()
    return 'connection failed'


def iter_body(response, stall_timeout=READ_TIMEOUT, deadline=None):
    """The response body in chunks as they arrive (each socket read).

    A server that drips a byte now and then makes no progress either, so
    a stall is measured in bytes (STALL_BYTES), as curl's --speed-limit
    does. Between chunks the read time-out the request was made with
    applies: its expiry counts as a stall, or with ``deadline`` as the
    time-out.

    Args:
        response: a streamed requests.Response (http_get's).
        stall_timeout: seconds within which STALL_BYTES must arrive.
        deadline: None, or the time.monotonic() value past which the
            download is refused; checked as each chunk arrives.

    Yields:
        bytes: each chunk, decoded as the Content-Encoding says.

    Raises:
        UserError: the connection is cut, fewer than STALL_BYTES arrive in
            ``stall_timeout`` seconds, or the monotonic clock passes
            ``deadline``.
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
    """The message of a stalled download."""
    return ('the download stalled: under {} bytes in {:g} s'.format(
        STALL_BYTES, seconds))


def looks_like_html(head, content_type=''):
    """Whether a body that starts with ``head`` is a web page.

    Args:
        head: bytes, the body's start; its first 512 bytes are looked at.
        content_type: the response's Content-Type, '' or None if unknown.

    Returns:
        bool: True when the Content-Type mentions html, or when head starts
        (after whitespace, in any case) with an HTML doctype, an <html> or
        <head> tag, or an XML declaration (XHTML; any XML document too).
    """
    if 'html' in (content_type or '').lower():
        return True
    start = head[:512].lstrip().lower()
    return start.startswith((b'<!doctype html', b'<html', b'<head', b'<?xml'))


def fetch_bytes(url, max_bytes, timeout=READ_TIMEOUT):
    """The body of url in memory, refusing anything over max_bytes.

    Args:
        url: an http or https URL (an image given with -u).
        max_bytes: the most bytes the body may hold; a Content-Length over
            it is refused before the body is read.
        timeout: seconds for the whole request, connection and body
            together, checked at every chunk received; the connection gets
            at most CONNECT_TIMEOUT of them.

    Returns:
        bytes: the body.

    Raises:
        Unreachable: no connection could be made (http_get).
        UserError: http_get's and iter_body's failures, a body over
            max_bytes, or a web page (by its Content-Type or its start).
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


def download_file(url, dest, sha1=None, progress=True,
                  stall_timeout=READ_TIMEOUT):
    """Downloads url to dest, resuming ``dest.part``, verifying the sha1.

    The file appears at dest only when it is complete and verified; a
    broken-off or stalled download keeps ``dest.part`` for the next try, a
    wrong one (checksum mismatch, a web page) is removed. Callers that may
    run concurrently hold file_lock(dest). A server that ignores the Range
    sends the file afresh; HTTP 416 to a resumed request is taken to mean
    that ``dest.part`` is whole already, for the sha1 (if given) to confirm.

    Args:
        url: an http or https URL.
        dest: the file to create.
        sha1: None, or the expected sha1 in hexadecimal, either case.
        progress: whether to report progress on stderr: one line redrawn
            on a terminal, else a line each tenth of the file (each 10 MB
            when its size is unknown).
        stall_timeout: seconds within which STALL_BYTES must arrive
            (iter_body); also the request's read time-out.

    Raises:
        Unreachable: no connection could be made (http_get).
        UserError: any other failure: the URL or the HTTP status, a
            broken-off or stalled download, ``dest.part`` cannot be written,
            a web page, or a checksum mismatch.
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
        _append_body(response, part, offset, os.path.basename(dest),
                     progress, stall_timeout)
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


def _append_body(response, part, offset, name, progress, stall_timeout):
    """Writes the response's body to the part file: after its offset bytes
    when the server honoured the Range (206), else from the start; progress
    on stderr if asked. UserError when the part file cannot be written."""
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
    """The whole file's size in bytes, from the Content-Length and the bytes
    already held; None when the server gives no length."""
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
