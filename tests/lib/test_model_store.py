"""model_store: where the caffemodel comes from when BVLC's server is down."""
import os

import pytest

from googlenet_chainer import model_store
from googlenet_chainer.errors import UserError

from helpers import sha1_of
from http_fixtures import closed_port, drip


def test_sources_put_the_users_first_and_mirrors_only_for_bvlcs_file(
        monkeypatch):
    monkeypatch.delenv('GOOGLENET_CAFFEMODEL_MIRRORS')
    monkeypatch.delenv('GOOGLENET_CAFFEMODEL_SHA1', raising=False)
    monkeypatch.setenv('GOOGLENET_CAFFEMODEL_URL', 'http://a/m http://b/m')
    urls, sha1, origin = model_store.sources(['http://c/m', 'http://a/m'])
    assert urls == ['http://c/m', 'http://a/m', 'http://b/m'] + list(
        model_store.MIRRORS)
    assert urls[3].startswith('http://dl.caffe.berkeleyvision.org/')
    assert (sha1, origin) == (model_store.CAFFEMODEL_SHA1,
                              'BVLC\'s published sha1')
    # Another file's sha1: the mirrors of BVLC's would only fail it.
    urls, sha1, origin = model_store.sources(['http://c/m'], 'AB' * 20)
    assert (urls, sha1, origin) == (['http://c/m', 'http://a/m',
                                     'http://b/m'], 'ab' * 20,
                                    'given with --sha1')
    monkeypatch.setenv('GOOGLENET_CAFFEMODEL_MIRRORS', 'http://d/m')
    assert model_store.sources()[0] == ['http://a/m', 'http://b/m',
                                        'http://d/m']


def test_a_dead_a_slow_and_a_wrong_source_are_passed_for_the_right_one(
        tmp_path, caffemodels, server, capsys):
    import caffe_fixtures
    body = open(caffemodels['v1'], 'rb').read()
    other = str(tmp_path / 'other.caffemodel')
    caffe_fixtures.write_caffemodel(other, caffe_fixtures.random_weights(1),
                                    'v1')
    server.routes['/slow'] = drip(body, 0.05)
    server.routes['/wrong'] = open(other, 'rb').read()
    server.routes['/right'] = body
    dead = 'http://127.0.0.1:{}/dead'.format(closed_port())
    dest = str(tmp_path / 'bvlc_googlenet.caffemodel')
    model_store.ensure_caffemodel(
        dest, [dead, server.url('/slow'), server.url('/wrong'),
               server.url('/right')], sha1_of(caffemodels['v1']),
        stall_timeout=0.5)
    assert open(dest, 'rb').read() == body
    err = capsys.readouterr().err
    assert '{}: cannot reach 127.0.0.1'.format(dead) in err
    assert '{}: the download stalled'.format(server.url('/slow')) in err
    assert '{}: its file has sha1 {}'.format(server.url('/wrong'),
                                             sha1_of(other)) in err
    # What the slow one sent was resumed, then thrown away with the wrong
    # one's rest; the right one was asked for all of it.
    assert [(path, headers.get('Range')) for path, headers in
            server.requests] == [
        ('/slow', None), ('/wrong', 'bytes={}-'.format(
            server.requests[1][1]['Range'][6:-1])), ('/wrong', None),
        ('/right', None)]
    assert not os.path.exists(dest + '.part')


def test_the_part_a_slow_source_left_is_resumed_by_the_next(
        tmp_path, caffemodels, server):
    body = open(caffemodels['v1'], 'rb').read()
    server.routes['/slow'] = drip(body, 0.05)
    server.routes['/right'] = body
    dest = str(tmp_path / 'bvlc_googlenet.caffemodel')
    model_store.ensure_caffemodel(
        dest, [server.url('/slow'), server.url('/right')],
        sha1_of(caffemodels['v1']), stall_timeout=0.5)
    assert open(dest, 'rb').read() == body
    resumed = server.requests[-1][1]['Range']
    assert resumed.startswith('bytes=') and resumed != 'bytes=0-'


def test_when_no_source_gives_the_file_each_failure_is_named(
        tmp_path, server, capsys):
    server.routes['/page'] = b'<!DOCTYPE html><html>Not here</html>'
    dead = 'http://127.0.0.1:{}/dead'.format(closed_port())
    dest = str(tmp_path / 'bvlc_googlenet.caffemodel')
    with pytest.raises(UserError) as e:
        model_store.ensure_caffemodel(dest, [dead, server.url('/page'),
                                             server.url('/missing')])
    # Each failure once: the first two as they happen, the last in the
    # error, which counts them.
    err = capsys.readouterr().err
    assert [line for line in err.splitlines()
            if not line.startswith('downloading ')] == [
        '{}: cannot reach {}: connection refused; trying the next '
        'source'.format(dead, dead.split('/')[2]),
        '{}: the server sent a web page, not the file; check the URL (the '
        'download was removed); trying the next source'.format(
            server.url('/page'))]
    assert str(e.value).startswith(
        'none of the 3 sources gave it (the last, {}: HTTP 404 Not '
        'Found). '.format(server.url('/missing')))
    assert 'Ways out: put a copy of bvlc_googlenet.caffemodel (sha1 {}) at '\
        '{}'.format(model_store.CAFFEMODEL_SHA1, dest) in str(e.value)
    assert os.listdir(tmp_path) == []


def test_the_way_out_says_who_finds_the_copy(tmp_path, monkeypatch):
    monkeypatch.setenv('GOOGLENET_CAFFEMODEL_MIRRORS', '')
    monkeypatch.delenv('GOOGLENET_CAFFEMODEL_URL', raising=False)
    dead = 'http://127.0.0.1:{}/dead'.format(closed_port())
    default = model_store.default_caffemodel()
    for path, finder in ((default, 'every script finds it'),
                         (str(tmp_path / 'dl2.caffemodel'),
                          'this command looks for it')):
        with pytest.raises(UserError) as e:
            model_store.ensure_caffemodel(path, [dead])
        assert ' at {}, where {}; or try another mirror of it, its URL in ' \
            'GOOGLENET_CAFFEMODEL_URL'.format(path, finder) in str(e.value)
