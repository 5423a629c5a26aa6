"""The web as this project touches it: URLs checked and shown without
their secrets, a GET's failures told in one line, a body as it arrives and
decoded by its bytes."""
import re
import time
import urllib.parse
import zlib

from googlenet_chainer.errors import Unreachable, UserError, one_line
from googlenet_chainer.files import CHUNK

CONNECT_TIMEOUT = 10
READ_TIMEOUT = 60
# A download that receives fewer bytes than this within the read time-out
# has stalled (curl's --speed-limit/--speed-time rule).
STALL_BYTES = 1024


def shown_url(url):
    """url as it may be printed or kept: without the user and password a
    URL can carry (``https://user:password@host/...``), which are secrets.

    Args:
        url: any text; only a URL with a ``user@`` part is changed.

    Returns:
        str: url with its user information replaced by ``***``.
    """
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return url
    if '@' not in parts.netloc:
        return url
    host = parts.netloc.rsplit('@', 1)[1]
    return urllib.parse.urlunsplit(parts._replace(netloc='***@' + host))


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
    if not parts.hostname:
        raise UserError('{} names no host'.format(shown_url(url)))


def http_get(url, headers=None, timeout=(CONNECT_TIMEOUT, READ_TIMEOUT),
             allow=()):
    """Starts a streamed GET and turns transport failures into UserErrors.

    requests follows redirects and takes the proxy from the environment
    (HTTP_PROXY, HTTPS_PROXY, NO_PROXY); a failure names the proxy when it
    is the proxy that failed. No message holds a URL's user or password.

    Args:
        url: an http or https URL; check_scheme checks it first.
        headers: None, or extra request headers, such as Range.
        timeout: (connect, read) in seconds, as requests takes them: the read
            time-out bounds each wait for data, not the whole body.
        allow: statuses of 400 or more to return rather than refuse (416,
            for a resumed download).

    Returns:
        requests.Response with a status under 400 or in allow, its body not
        yet read (iter_body); the caller closes it (a with block).

    Raises:
        Unreachable: no connection could be made (the name does not resolve,
            the connection is refused or times out, the proxy cannot be
            reached).
        UserError: check_scheme refuses the URL, TLS fails, the server does
            not answer in time, redirects go round in a loop, the status is
            400 or more, or requests fails otherwise.
    """
    check_scheme(url)
    # Imported here: requests takes a third of a local run's start-up.
    import requests
    try:
        response = requests.get(url, headers=headers, stream=True,
                                timeout=timeout)
    except (requests.exceptions.RequestException, ValueError) as e:
        # ValueError: urllib3's LocationParseError, e.g. a host name label
        # over 63 characters, passes through requests unwrapped.
        raise _failure(e, url)
    if response.status_code >= 400 and response.status_code not in allow:
        response.close()
        if response.status_code == 407:
            raise UserError('HTTP 407: the proxy {} wants credentials (give '
                            'them in its URL)'.format(_proxy_of(url)))
        raise UserError('HTTP {} {}'.format(
            response.status_code, response.reason or '').strip())
    return response


def _failure(error, url):
    """http_get's one line for requests' exception: Unreachable where no
    connection was made, else UserError; url's secrets never in it."""
    import requests
    exceptions = requests.exceptions
    host = _host(url)
    # Most specific first: a ProxyError, an SSLError and a ConnectTimeout
    # are ConnectionErrors too, and a ConnectTimeout a Timeout.
    if isinstance(error, exceptions.ProxyError):
        return Unreachable('cannot reach the proxy {} for {}: {}'.format(
            _proxy_of(url), host, _connection_reason(error)))
    if isinstance(error, exceptions.SSLError):
        return UserError('TLS failure with {}: {}'.format(
            host, _tls_reason(error)))
    if isinstance(error, exceptions.ConnectTimeout):
        return Unreachable('cannot reach {}: connection timed out'.format(
            host))
    if isinstance(error, exceptions.ConnectionError):
        return Unreachable('cannot reach {}: {}'.format(
            host, _connection_reason(error)))
    if isinstance(error, exceptions.Timeout):
        return UserError('timed out waiting for the server')
    if isinstance(error, exceptions.TooManyRedirects):
        return UserError('too many redirects (over {}): the server sends '
                         'the request round in a loop'.format(
                             requests.models.DEFAULT_REDIRECT_LIMIT))
    return UserError(_without_secrets(one_line(error), url))


def _host(url):
    """The host (and port) of url, never its user and password."""
    parts = urllib.parse.urlsplit(url)
    return parts.netloc.rsplit('@', 1)[-1]


def _proxy_of(url):
    """The proxy requests takes from the environment for url (HTTP_PROXY,
    HTTPS_PROXY, ALL_PROXY), shown without its credentials."""
    import requests
    proxies = requests.utils.get_environ_proxies(url)
    scheme = urllib.parse.urlsplit(url).scheme.lower()
    proxy = proxies.get(scheme) or proxies.get('all')
    return '{} (set in the environment)'.format(shown_url(proxy)) if proxy \
        else '(set in the environment)'


def _without_secrets(text, url):
    """text with url's user information, wherever it appears, as ***."""
    userinfo = urllib.parse.urlsplit(url).netloc.rpartition('@')[0]
    return text.replace(userinfo, '***') if userinfo else text


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
    """The response body in chunks as they arrive (each socket read), as the
    server sent them: not decoded by its Content-Encoding (decoded_body
    decides by the bytes).

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
        bytes: each chunk.

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
            chunk = raw.read1(CHUNK, decode_content=False)
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


def looks_like_html(head):
    """Whether a body that starts with ``head`` is a web page, by its bytes
    (a server's Content-Type can be wrong either way).

    Args:
        head: bytes, the body's start; its first 512 bytes are looked at.

    Returns:
        bool: True when head starts (after whitespace, in any case) with an
        HTML doctype, an <html> or <head> tag, or an XML declaration
        (XHTML; any XML document too).
    """
    start = head[:512].lstrip().lower()
    return start.startswith((b'<!doctype html', b'<html', b'<head', b'<?xml'))


GZIP_MAGIC = b'\x1f\x8b'


def decoded_body(body, content_encoding, max_bytes):
    """The body a server sent, decoded as its Content-Encoding says only
    when its bytes are so encoded: a server may label a file it sends as
    it is (a .gz, or a plain image) with gzip.

    Args:
        body: bytes as they arrived.
        content_encoding: the response's Content-Encoding, or None.
        max_bytes: the most bytes the decoded body may hold.

    Returns:
        bytes.

    Raises:
        UserError: the decoded body is over max_bytes, or is not the gzip
            or deflate data its first bytes announce.
    """
    encoding = (content_encoding or '').lower()
    if 'gzip' in encoding and body[:2] == GZIP_MAGIC:
        wbits = 16 + zlib.MAX_WBITS
    elif 'deflate' in encoding and len(body) > 1 and body[0] & 0x0f == 8 \
            and int.from_bytes(body[:2], 'big') % 31 == 0:
        wbits = zlib.MAX_WBITS  # a zlib stream's header, RFC 1950
    else:
        return body
    inflater = zlib.decompressobj(wbits)
    try:
        data = inflater.decompress(body, max_bytes + 1)
    except zlib.error as e:
        raise UserError('the {} data sent is damaged ({})'.format(
            encoding, e))
    if len(data) > max_bytes:
        raise UserError('larger than the download limit ({} bytes) once '
                        'decompressed'.format(max_bytes))
    return data
