"""download: stalls, resumes."""
import os
import sys
import time

import pytest

from googlenet_chainer import download, model_store
from googlenet_chainer.errors import UserError

from helpers import sha1_of
from http_fixtures import drip


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
