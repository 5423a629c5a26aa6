"""Downloads, atomic writes and locks: nothing silently wrong, no file ever
damaged (issue 11), image URLs (issue 9, item 10)."""
import errno
import hashlib
import json
import os
import signal
import stat
import subprocess
import sys
import threading
import time

import pytest

import convert_caffe_model
import googlenet_io
import googlenet_predict
from googlenet_io import UserError
from http_fixtures import TLSServer, drip, slowly

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def sha1_of(path):
    with open(path, 'rb') as f:
        return hashlib.sha1(f.read()).hexdigest()


def one_error_line(err):
    """The error line of a failed run (progress lines may come first)."""
    assert 'Traceback' not in err, err
    assert err.count('error: ') == 1, err
    return err.splitlines()[-1]


# --- item 7: atomic_write and temporary files ------------------------------

WRITER = '''
import sys, time
sys.path.insert(0, {root!r})
from googlenet_io import atomic_write
with atomic_write({path!r}) as f:
    f.write(b'x' * 100000)
    f.flush()
    print('writing', flush=True)
    time.sleep(60)
'''


def temporaries(folder):
    return sorted(name for name in os.listdir(folder)
                  if name.endswith('.tmp'))


def test_kill_9_during_a_write_leaves_a_temporary_the_next_write_removes(
        tmp_path):
    target = tmp_path / 'out.model'
    target.write_bytes(b'old')
    writer = subprocess.Popen(
        [sys.executable, '-c', WRITER.format(root=ROOT, path=str(target))],
        stdout=subprocess.PIPE)
    try:
        assert writer.stdout.readline() == b'writing\n'
        stale = temporaries(tmp_path)
        # Its name says whose it is: the target's name and the writer's PID.
        assert stale and stale[0].startswith(
            '.out.model.{}.'.format(writer.pid))
    finally:
        writer.send_signal(signal.SIGKILL)
        writer.wait()
        writer.stdout.close()
    assert target.read_bytes() == b'old'
    with googlenet_io.atomic_write(str(target)) as f:
        f.write(b'new')
    assert target.read_bytes() == b'new'
    assert temporaries(tmp_path) == []


def test_a_link_is_written_through_and_permissions_are_kept(tmp_path):
    versions = tmp_path / 'versions'
    versions.mkdir()
    target = versions / 'v2.model'
    target.write_bytes(b'v2')
    os.chmod(target, 0o640)
    link = tmp_path / 'latest.model'
    link.symlink_to(target)
    with googlenet_io.atomic_write(str(link)) as f:
        f.write(b'v3')
    assert os.readlink(link) == str(target)
    assert target.read_bytes() == b'v3'
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o640
    assert sorted(os.listdir(tmp_path)) == ['latest.model', 'versions']
    assert os.listdir(versions) == ['v2.model']
    # A new file: 0666 less the umask.
    fresh = tmp_path / 'fresh.model'
    with googlenet_io.atomic_write(str(fresh)) as f:
        f.write(b'x')
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(os.stat(fresh).st_mode) == 0o666 & ~umask


def test_a_running_writers_temporary_and_other_targets_are_left_alone(
        tmp_path):
    mine = tmp_path / '.a.model.{}.abc123.tmp'.format(os.getpid())
    other = tmp_path / '.b.model.999999999.abc123.tmp'
    mine.write_bytes(b'in progress')
    other.write_bytes(b'stale, but of another target')
    with googlenet_io.atomic_write(str(tmp_path / 'a.model')) as f:
        f.write(b'a')
    assert mine.exists() and other.exists()


def test_a_full_disk_while_saving_is_one_line_and_keeps_the_old_model(
        tmp_path, capsys, caffemodels, monkeypatch):
    import numpy
    out = tmp_path / 'keep.model'
    assert convert_caffe_model.main(['--caffemodel', caffemodels['v1'],
                                     '--output', str(out)]) == 0
    capsys.readouterr()
    old = out.read_bytes()

    def full_disk(f, **arrays):
        f.write(b'partial')
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    monkeypatch.setattr(numpy, 'savez', full_disk)
    code = convert_caffe_model.main(['--caffemodel', caffemodels['v1'],
                                     '--output', str(out)])
    err = capsys.readouterr().err
    assert code == 1
    assert err == 'error: cannot write {}: No space left on device\n'.format(
        out)
    assert out.read_bytes() == old
    assert sorted(os.listdir(tmp_path)) == ['keep.model']


# --- item 6: full disk, dripping server, sha1, web pages --------------------

class FillsUp:
    """A file that takes `room` bytes, then fails as a full disk does."""

    def __init__(self, path, mode, room):
        self.file = open(path, mode)
        self.room = room

    def write(self, data):
        if len(data) > self.room:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self.room -= len(data)
        return self.file.write(data)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.file.close()


def test_a_full_disk_while_downloading_is_one_line_naming_the_file(
        tmp_path, capsys, caffemodels, server, monkeypatch):
    body = open(caffemodels['v1'], 'rb').read()
    server.routes['/m'] = body
    monkeypatch.setattr(googlenet_io, 'open', lambda path, mode: FillsUp(
        path, mode, 3000000), raising=False)
    dest = tmp_path / 'm.caffemodel'
    code = convert_caffe_model.main([
        '--download', '--caffemodel', str(dest), '--url', server.url('/m'),
        '--sha1', hashlib.sha1(body).hexdigest(),
        '--output', str(tmp_path / 'm.model')])
    line = one_error_line(capsys.readouterr().err)
    assert code == 1
    assert 'cannot write {}.part: No space left on device'.format(
        dest) in line
    # What arrived is kept for the next try; nothing at the final path.
    assert 0 < (tmp_path / 'm.caffemodel.part').stat().st_size <= 3000000
    assert sorted(os.listdir(tmp_path)) == ['m.caffemodel.part']


def test_a_dripping_server_shows_progress_then_fails_as_stalled(
        tmp_path, capsys, server, monkeypatch):
    server.routes['/m'] = drip(b'x' * 1000, 0.05)
    monkeypatch.setattr(sys.stderr, 'isatty', lambda: True)
    dest = str(tmp_path / 'm.caffemodel')
    start = time.monotonic()
    with pytest.raises(UserError, match=r'stalled: under 1024 bytes in 1 s'):
        googlenet_io.download_file(server.url('/m'), dest, stall_timeout=1)
    assert time.monotonic() - start < 20  # not the 50 s of the whole drip
    err = capsys.readouterr().err
    # On a terminal the progress line moved with the bytes that came.
    assert err.count('\rdownloading m.caffemodel') >= 3
    assert 0 < os.path.getsize(dest + '.part') < 1000  # kept for resume
    assert not os.path.exists(dest)


@pytest.mark.parametrize('where', ['option', 'environment'])
def test_a_malformed_sha1_is_refused_before_any_download(
        tmp_path, capsys, server, monkeypatch, where):
    server.routes['/m'] = b'body'
    argv = ['--download', '--caffemodel', str(tmp_path / 'm.caffemodel'),
            '--url', server.url('/m'), '--output', str(tmp_path / 'm.model')]
    if where == 'option':
        argv += ['--sha1', 'not-a-sha1']
    else:
        monkeypatch.setenv('GOOGLENET_CAFFEMODEL_SHA1', 'abc')
    assert convert_caffe_model.main(argv) == 1
    line = one_error_line(capsys.readouterr().err)
    source = '--sha1' if where == 'option' else 'GOOGLENET_CAFFEMODEL_SHA1'
    assert line.startswith('error: {} '.format(source))
    assert 'is not a sha1 (40 hexadecimal digits)' in line
    assert server.requests == [] and os.listdir(tmp_path) == []


def test_a_web_page_instead_of_the_caffemodel_says_so(tmp_path, capsys,
                                                      server):
    page = b'<!DOCTYPE html>\n<html><body>Mirror moved</body></html>'
    server.routes['/m'] = (200, {'Content-Type': 'text/plain'}, page)
    dest = tmp_path / 'm.caffemodel'
    assert convert_caffe_model.main([
        '--download', '--caffemodel', str(dest), '--url', server.url('/m'),
        '--output', str(tmp_path / 'm.model')]) == 1
    line = one_error_line(capsys.readouterr().err)
    assert 'the server sent a web page, not the file' in line
    assert os.listdir(tmp_path) == []


# --- item 3: two first runs at once -----------------------------------------

def test_two_first_runs_at_once_download_once_and_both_succeed(
        tmp_path, caffemodels, server, dataset_root):
    body = open(caffemodels['v1'], 'rb').read()
    sha1 = hashlib.sha1(body).hexdigest()
    gate = threading.Event()
    server.routes['/m'] = slowly(body, pieces=20, interval=0.02, gate=gate)
    env = dict(os.environ, GOOGLENET_CAFFEMODEL_URL=server.url('/m'),
               GOOGLENET_CAFFEMODEL_SHA1=sha1, CHAINER_DATASET_ROOT=dataset_root)
    command = [sys.executable, os.path.join(ROOT, 'googlenet_predict.py'),
               '--top', '1', '--json']
    first = subprocess.Popen(command, cwd=str(tmp_path), env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while not server.requests and time.monotonic() < deadline:
        time.sleep(0.05)  # the first is downloading, held at the gate
    second = subprocess.Popen(command, cwd=str(tmp_path), env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    waiting = second.stderr.readline()
    gate.set()
    outputs = [p.communicate(timeout=120) for p in (first, second)]
    for process, (out, err) in zip((first, second), outputs):
        assert process.returncode == 0, err.decode()
    assert len(server.requests) == 1  # the second used the first's download
    assert waiting.startswith(b'waiting for another process that is '
                              b'writing ')
    assert b'which another process made' in outputs[1][1]
    assert json.loads(outputs[0][0]) == json.loads(outputs[1][0])
    folder = os.path.join(dataset_root, 'pfnet', 'chainer', 'models')
    assert sha1_of(os.path.join(folder, 'bvlc_googlenet.caffemodel')) == sha1
    assert sorted(os.listdir(folder)) == ['bvlc_googlenet.caffemodel',
                                          'googlenet.model']


def test_the_lock_is_released_and_removed_after_an_error(tmp_path):
    target = str(tmp_path / 'x')
    with pytest.raises(UserError):
        with googlenet_io.file_lock(target):
            raise UserError('boom')
    with googlenet_io.file_lock(target, log=pytest.fail):
        pass  # taken at once, without waiting
    assert os.listdir(tmp_path) == []


# --- issue 9, item 10: image URLs --------------------------------------------

def predict_errors(capsys, model, *urls, timeout=30):
    argv = ['--model', model, '--timeout', str(timeout)]
    for url in urls:
        argv += ['-u', url]
    code = googlenet_predict.main(argv)
    out, err = capsys.readouterr()
    assert 'Traceback' not in err
    return code, out, err


def test_timeout_bounds_the_whole_image_download(capsys, server, model_1000):
    server.routes['/x.png'] = drip(b'\x89PNG' + b'\0' * 400, 0.1)
    start = time.monotonic()
    code, out, err = predict_errors(capsys, model_1000, server.url('/x.png'),
                                    timeout=1)
    assert time.monotonic() - start < 20  # the drip would take 40 s
    assert code == 1 and out == ''
    assert err == 'error: {}: timed out: the download took longer than the ' \
        'time-out\n'.format(server.url('/x.png'))


def test_a_url_without_scheme_says_to_add_one(capsys, model_1000):
    code, out, err = predict_errors(capsys, model_1000, '127.0.0.1/x.jpg')
    assert code == 1 and out == ''
    assert err == ('error: 127.0.0.1/x.jpg: the URL has no scheme: add '
                   'http:// or https:// in front\n')


def test_a_tls_certificate_failure_says_so(capsys, tmp_path, model_1000):
    with TLSServer(str(tmp_path)) as tls:
        tls.routes['/x.png'] = b'never sent'
        code, out, err = predict_errors(capsys, model_1000,
                                        tls.url('/x.png'))
    assert code == 1 and out == ''
    assert err.startswith('error: {}: TLS failure with 127.0.0.1:'.format(
        tls.url('/x.png')))
    assert "the server's certificate could not be verified" in err
    assert err.count('\n') == 1


def test_an_html_page_for_an_image_says_the_server_sent_html(
        capsys, server, model_1000):
    server.routes['/x.png'] = (200, {'Content-Type': 'application/'
                                     'octet-stream'},
                               b'  <html><body>Log in first</body></html>')
    code, out, err = predict_errors(capsys, model_1000, server.url('/x.png'))
    assert code == 1
    assert err == 'error: {}: the server sent an HTML page, not an ' \
        'image\n'.format(server.url('/x.png'))


@pytest.mark.parametrize('url, reason', [
    ('http://[::1/x.jpg', 'not a valid URL: Invalid IPv6 URL'),
    ('http://127.0.0.1:port/x.jpg', 'not a valid URL: Port could not be '
     'cast to integer value'),
    ('http://{}.org/x.jpg'.format('a' * 70), 'label empty or too long')])
def test_a_malformed_url_is_that_inputs_one_line(capsys, model_1000, url,
                                                 reason):
    code, out, err = predict_errors(capsys, model_1000, url)
    assert code == 1 and out == ''
    assert err.startswith('error: {}: '.format(url)) and reason in err
    assert err.count('\n') == 1
