"""download and web: stalls, resumes, what decides what arrived, time-outs,
proxies, and URLs' secrets."""
import gzip
import hashlib
import os
import socket
import sys
import time

import pytest

from googlenet_chainer import download, model_store, web
from googlenet_chainer.errors import Unreachable, UserError

from helpers import sha1_of
from http_fixtures import closed_port, drip, send_range_headers


def test_a_dripping_server_shows_progress_then_fails_as_stalled(
        tmp_path, capsys, server, monkeypatch):
    server.routes['/m'] = drip(b'x' * 1000, 0.05)
    monkeypatch.setattr(sys.stderr, 'isatty', lambda: True)
    dest = str(tmp_path / 'm.caffemodel')
    start = time.monotonic()
    with pytest.raises(UserError, match=r'stalled: under 1024 bytes in 1 s'):
        download.download_file(server.url('/m'), dest, stall_timeout=1)
    assert time.monotonic() - start < 20  # not the 50 s of the whole drip
    err = capsys.readouterr().err
    # On a terminal the progress line moved with the bytes that came.
    assert err.count('\rdownloading m.caffemodel') >= 3
    assert 0 < os.path.getsize(dest + '.part') < 1000  # kept for resume
    assert not os.path.exists(dest)


def _resumed_from(start, body):
    """A route that answers any Range with a 206 from byte start (HTTP
    allows a server to send more than asked, with an honest
    Content-Range)."""
    def answer(handler):
        if 'Range' not in handler.headers:
            send_range_headers(handler, body)
            handler.wfile.write(body)
            return
        handler.send_response(206)
        handler.send_header('Content-Range', 'bytes {}-{}/{}'.format(
            start, len(body) - 1, len(body)))
        handler.send_header('Content-Length', str(len(body) - start))
        handler.end_headers()
        handler.wfile.write(body[start:])
    return answer


@pytest.mark.parametrize('start', [0, 1000, 5000, 9000])
def test_a_resume_is_written_where_the_content_range_says(tmp_path, server,
                                                          start):
    """Before the part's end: written from there (nothing grows too
    long); after it (a gap): the whole file asked for again."""
    body = os.urandom(20000)
    server.routes['/f'] = _resumed_from(start, body)
    dest = str(tmp_path / 'f')
    with open(dest + '.part', 'wb') as f:
        f.write(body[:8000])
    download.download_file(server.url('/f'), dest, sha1=_sha1(body),
                           progress=False)
    assert open(dest, 'rb').read() == body
    ranges = [headers.get('Range') for _, headers in server.requests]
    assert ranges == (['bytes=8000-'] if start <= 8000 else
                      ['bytes=8000-', None])


def _sha1(data):
    return hashlib.sha1(data).hexdigest()


def test_the_bytes_decide_what_arrived_not_the_labels(tmp_path, server,
                                                      png=b'\x89PNG\r\n' +
                                                      b'\0' * 200):
    # A file served as it is but labelled gzip, and a gzip stream of it
    # labelled so: the file either way.
    body = os.urandom(5000)
    server.routes['/plain'] = (200, {'Content-Encoding': 'gzip'}, body)
    server.routes['/packed'] = (200, {'Content-Encoding': 'gzip'},
                                gzip.compress(body))
    for route in ('/plain', '/packed'):
        dest = str(tmp_path / route[1:])
        download.download_file(server.url(route), dest, sha1=_sha1(body),
                               progress=False)
        assert open(dest, 'rb').read() == body
        assert download.fetch_bytes(server.url(route), 10 ** 6, 10) == body
    # An image labelled text/html is an image; a page labelled image/png
    # is a page.
    server.routes['/image'] = (200, {'Content-Type': 'text/html'}, png)
    assert download.fetch_bytes(server.url('/image'), 10 ** 6, 10) == png
    server.routes['/page'] = (200, {'Content-Type': 'image/png'},
                              b'<!DOCTYPE html><html></html>')
    with pytest.raises(UserError, match='the server sent an HTML page'):
        download.fetch_bytes(server.url('/page'), 10 ** 6, 10)


def test_the_time_out_bounds_the_whole_request_a_slow_resolver_too(
        server, monkeypatch):
    server.routes['/a.png'] = b'x' * 100
    real = socket.getaddrinfo

    def slow(*args, **kwargs):  # a resolver that takes its time
        time.sleep(5)
        return real(*args, **kwargs)
    monkeypatch.setattr(socket, 'getaddrinfo', slow)
    start = time.monotonic()
    with pytest.raises(UserError, match='^timed out: the download took '
                       'longer than the time-out$'):
        download.fetch_bytes(server.url('/a.png'), 10 ** 6, 1)
    assert time.monotonic() - start < 3


def test_a_failing_proxy_is_named_as_the_cause(server, monkeypatch):
    proxy = 'http://user:secret@127.0.0.1:{}'.format(closed_port())
    for variable in ('HTTP_PROXY', 'http_proxy'):
        monkeypatch.setenv(variable, proxy)
    for variable in ('NO_PROXY', 'no_proxy'):
        monkeypatch.delenv(variable, raising=False)
    with pytest.raises(Unreachable) as e:
        web.http_get(server.url('/x'))
    assert str(e.value).startswith('cannot reach the proxy http://***@'
                                   '127.0.0.1:')
    assert 'for 127.0.0.1:{}'.format(server.httpd.server_port) in str(
        e.value)
    assert 'secret' not in str(e.value)


def test_a_redirect_loop_is_one_line_of_ours(server):
    server.routes['/loop'] = (302, {'Location': '/loop'}, b'')
    with pytest.raises(UserError) as e:
        web.http_get(server.url('/loop'))
    assert str(e.value) == 'too many redirects (over 30): the server sends ' \
        'the request round in a loop'


def test_a_urls_user_and_password_are_never_shown():
    assert web.shown_url('https://me:pa55@example.org:8080/a.jpg?x=1') == \
        'https://***@example.org:8080/a.jpg?x=1'
    assert web.shown_url('https://example.org/a.jpg') == \
        'https://example.org/a.jpg'
    port = closed_port()
    with pytest.raises(Unreachable) as e:
        web.http_get('http://me:pa55@127.0.0.1:{}/x.jpg'.format(port))
    assert str(e.value) == 'cannot reach 127.0.0.1:{}: connection ' \
        'refused'.format(port)


def test_download_resumes_a_partial_file(tmp_path, caffemodels, server,
                                         monkeypatch):
    body = open(caffemodels['v1'], 'rb').read()
    server.routes['/m.caffemodel'] = body
    dest = tmp_path / 'bvlc_googlenet.caffemodel'
    (tmp_path / 'bvlc_googlenet.caffemodel.part').write_bytes(body[:1000000])
    monkeypatch.setenv('GOOGLENET_CAFFEMODEL_URL', server.url('/m.caffemodel'))
    monkeypatch.setenv('GOOGLENET_CAFFEMODEL_SHA1', sha1_of(caffemodels['v1']))
    model_store.ensure_caffemodel(str(dest))
    assert server.requests[-1][1]['Range'] == 'bytes=1000000-'
    assert dest.read_bytes() == body
    assert not (tmp_path / 'bvlc_googlenet.caffemodel.part').exists()
