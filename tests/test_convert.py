import hashlib
import os

import numpy
import pytest

from chainer_compat import chainer

import caffe_fixtures
import convert_caffe_model
import tuned_googlenet
from http_fixtures import closed_port, cut_off_after
from numeric import assert_probabilities_close, rtol_for

QUIET = dict(log=lambda line: None)


def params(model):
    return {name: p.array for name, p in model.namedparams()}


def test_every_array_lands_bit_exactly(model_1000, weights):
    model, names = tuned_googlenet.load_model(model_1000)
    assert names is None
    ours = params(model)
    expected = params(caffe_fixtures.chainer_port(weights))
    assert sorted(ours) == sorted(expected)
    assert len(ours) == 2 * 64
    assert sum(a.size for a in ours.values()) == 13378280
    for name, array in expected.items():
        assert ours[name].dtype == numpy.float32
        assert numpy.array_equal(ours[name], array), name


def test_v1_and_v2_give_identical_models(tmp_path, caffemodels, model_1000):
    out = str(tmp_path / 'v2.model')
    convert_caffe_model.convert(caffemodels['v2'], out, **QUIET)
    a = params(tuned_googlenet.load_model(model_1000)[0])
    b = params(tuned_googlenet.load_model(out)[0])
    assert a.keys() == b.keys()
    for name in a:
        assert numpy.array_equal(a[name], b[name]), name


def test_probabilities_match_chainers_port(model_1000, weights, rng):
    model, _ = tuned_googlenet.load_model(model_1000)
    x = rng.uniform(-120, 130, (2, 3, 224, 224)).astype(numpy.float32)
    ours = model.predict(x)
    net = caffe_fixtures.chainer_port(weights)
    with chainer.no_backprop_mode(), chainer.using_config('train', False):
        theirs = net.forward(x, layers=['prob'])['prob'].array
    assert ours.shape == (2, 1000)
    numpy.testing.assert_allclose(ours.sum(axis=1), 1, rtol=rtol_for(1000))
    assert ours.max() > 0.01  # not a flat distribution
    assert_probabilities_close(ours, theirs)


def test_frozen_trunk_stays_while_every_head_trains(caffemodels, tmp_path,
                                                     rng):
    out = str(tmp_path / 'five.model')
    convert_caffe_model.convert(caffemodels['v1'], out, n_classes=5, **QUIET)
    model, _ = tuned_googlenet.load_model(out)
    optimizer = tuned_googlenet.make_optimizer(model)
    before = {k: v.copy() for k, v in params(model).items()}
    x = rng.uniform(-100, 100, (2, 3, 224, 224)).astype(numpy.float32)
    t = numpy.array([1, 3], dtype=numpy.int32)
    for _ in range(3):
        model.cleargrads()
        loss = model(x, t)
        loss.backward()
        for name, p in model.namedparams():
            if name.split('/')[1] in tuned_googlenet.TRUNK:
                assert p.grad is None, name  # the graph was cut
        optimizer.update()
    after = params(model)
    for name in before:
        changed = not numpy.array_equal(before[name], after[name])
        assert changed == (name.split('/')[1] in tuned_googlenet.HEADS), name


def test_the_cut_moves_with_freeze_until(model_1000, rng):
    model, _ = tuned_googlenet.load_model(model_1000, freeze_until='inc4e')
    x = rng.uniform(-100, 100, (1, 3, 224, 224)).astype(numpy.float32)
    model.cleargrads()
    model(x, numpy.array([7], dtype=numpy.int32)).backward()
    assert model.inc5a.conv1.W.grad is not None
    assert model.inc4e.conv1.W.grad is None


def test_training_loss_reports_every_part(model_1000, rng):
    model, _ = tuned_googlenet.load_model(model_1000)
    x = rng.uniform(-100, 100, (2, 3, 224, 224)).astype(numpy.float32)
    reporter = chainer.Reporter()
    reporter.add_observer('main', model)
    observation = {}
    with reporter.scope(observation):
        with chainer.using_config('train', False):
            loss = model(x, numpy.array([1, 2], dtype=numpy.int32))
    parts = {k.split('/')[-1]: float(v.array) for k, v in observation.items()}
    assert set(parts) == {'loss', 'loss1', 'loss2', 'loss3', 'accuracy'}
    assert parts['loss'] == pytest.approx(
        (parts['loss1'] + parts['loss2']) * 0.3 + parts['loss3'],
        rel=rtol_for(3))
    assert float(loss.array) == pytest.approx(parts['loss'])


def test_heads_copied_where_they_fit_fresh_where_not(caffemodels, weights,
                                                      tmp_path, capsys):
    out = str(tmp_path / 'five.model')
    assert convert_caffe_model.main(['--caffemodel', caffemodels['v1'],
                                     '--output', out, '--classes', '5']) == 0
    log = capsys.readouterr().out
    assert 'loss3/classifier' in log and 'left fresh' in log
    model, _ = tuned_googlenet.load_model(out)
    assert model.loss3_fc.W.shape == (5, 1024)
    assert numpy.array_equal(model.loss1_fc1.W.array, weights['loss1/fc'][0])
    assert numpy.array_equal(model.inc5b.conv5.W.array,
                             weights['inception_5b/5x5'][0])


def test_fresh_heads_reinitialises_matching_heads(caffemodels, weights,
                                                  tmp_path, capsys):
    out = str(tmp_path / 'fresh.model')
    assert convert_caffe_model.main(['--caffemodel', caffemodels['v1'],
                                     '--output', out, '--fresh-heads']) == 0
    assert capsys.readouterr().out.count('(--fresh-heads)') == 7
    model, _ = tuned_googlenet.load_model(out)
    for caffe_name, link in convert_caffe_model.LAYER_MAP.items():
        w = functools_get(model, link).W.array
        same = numpy.array_equal(w, weights[caffe_name][0].reshape(w.shape))
        assert same == (link not in tuned_googlenet.HEADS), link


def functools_get(model, path):
    for part in path.split('/'):
        model = getattr(model, part)
    return model


def test_n_classes_defaults_to_the_constant_at_the_top():
    assert tuned_googlenet.GoogLeNet().n_classes == tuned_googlenet.N_CLASSES


# --- bad input: one line on stderr, exit 1, no output file ---------------

def _bad(tmp_path, capsys, caffemodel, *extra):
    out = tmp_path / 'out.model'
    code = convert_caffe_model.main(['--caffemodel', str(caffemodel),
                                     '--output', str(out)] + list(extra))
    err = capsys.readouterr().err
    assert code == 1
    # Progress lines may come first; the error is one line, the last.
    assert err.endswith('\n') and err.count('error: ') == 1, err
    err = err.splitlines()[-1]
    assert err.startswith('error: ') and 'Traceback' not in err
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir()
            if p.name.endswith('.tmp')] == []
    return err


def test_missing_file(tmp_path, capsys):
    assert 'not found' in _bad(tmp_path, capsys, tmp_path / 'nope.caffemodel')


def test_jpeg_is_not_a_caffemodel(tmp_path, capsys):
    from PIL import Image
    path = tmp_path / 'photo.jpg'
    Image.new('RGB', (32, 32), (200, 10, 10)).save(path)
    assert 'not a caffemodel' in _bad(tmp_path, capsys, path)


@pytest.mark.parametrize('seed', [0, 1, 2])
def test_random_bytes_are_not_a_caffemodel(tmp_path, capsys, seed):
    path = tmp_path / 'noise.caffemodel'
    path.write_bytes(numpy.random.RandomState(seed).bytes(4096))
    assert 'not a caffemodel' in _bad(tmp_path, capsys, path)


def test_empty_file(tmp_path, capsys):
    path = tmp_path / 'empty.caffemodel'
    path.write_bytes(b'')
    assert 'empty' in _bad(tmp_path, capsys, path)


@pytest.mark.parametrize('fraction', [0.5, 0.999])
def test_truncated_caffemodel(tmp_path, capsys, caffemodels, fraction):
    data = open(caffemodels['v1'], 'rb').read()
    path = tmp_path / 'cut.caffemodel'
    path.write_bytes(data[:int(len(data) * fraction)])
    err = _bad(tmp_path, capsys, path)
    assert 'truncated' in err or 'missing' in err


def test_missing_trunk_layer(tmp_path, capsys, weights):
    path = tmp_path / 'holed.caffemodel'
    caffe_fixtures.write_caffemodel(str(path), weights,
                                    skip=('inception_4c/3x3',))
    err = _bad(tmp_path, capsys, path)
    assert 'inception_4c/3x3 is missing' in err


def test_trunk_layer_of_the_wrong_shape(tmp_path, capsys, weights):
    bad = dict(weights)
    w, b = weights['conv2/3x3']
    bad['conv2/3x3'] = (w[:, :32], b)
    path = tmp_path / 'shape.caffemodel'
    caffe_fixtures.write_caffemodel(str(path), bad)
    err = _bad(tmp_path, capsys, path)
    assert 'conv2/3x3 has shape (192, 32, 3, 3)' in err


def test_unwritable_output_path(tmp_path, capsys, caffemodels):
    out = tmp_path / 'no' / 'such' / 'dir' / 'x.model'
    code = convert_caffe_model.main(['--caffemodel', caffemodels['v1'],
                                     '--output', str(out)])
    err = capsys.readouterr().err
    assert code == 1 and err.startswith('error: cannot write')
    assert err.count('\n') == 1


def test_failed_save_leaves_old_model_in_place(tmp_path, caffemodels,
                                               monkeypatch):
    out = tmp_path / 'keep.model'
    out.write_bytes(b'old')

    def broken_savez(f, **arrays):
        f.write(b'partial')
        raise OSError('disk full')
    monkeypatch.setattr(numpy, 'savez', broken_savez)
    with pytest.raises(OSError):
        convert_caffe_model.convert(caffemodels['v1'], str(out), **QUIET)
    assert out.read_bytes() == b'old'
    assert sorted(p.name for p in tmp_path.iterdir()) == ['keep.model']


# --- download -------------------------------------------------------------

def _sha1(path):
    return hashlib.sha1(open(path, 'rb').read()).hexdigest()


def test_download_verifies_and_converts(tmp_path, caffemodels, server,
                                        capsys):
    body = open(caffemodels['v1'], 'rb').read()
    server.routes['/m.caffemodel'] = body
    dest = tmp_path / 'bvlc_googlenet.caffemodel'
    code = convert_caffe_model.main([
        '--download', '--caffemodel', str(dest), '--output',
        str(tmp_path / 'm.model'), '--url', server.url('/m.caffemodel'),
        '--sha1', _sha1(caffemodels['v1'])])
    assert code == 0, capsys.readouterr().err
    assert dest.read_bytes() == body
    assert '100.0%' in capsys.readouterr().err
    assert (tmp_path / 'm.model').exists()


def test_download_resumes_a_partial_file(tmp_path, caffemodels, server,
                                         monkeypatch):
    body = open(caffemodels['v1'], 'rb').read()
    server.routes['/m.caffemodel'] = body
    dest = tmp_path / 'bvlc_googlenet.caffemodel'
    (tmp_path / 'bvlc_googlenet.caffemodel.part').write_bytes(body[:1000000])
    monkeypatch.setenv('GOOGLENET_CAFFEMODEL_URL', server.url('/m.caffemodel'))
    monkeypatch.setenv('GOOGLENET_CAFFEMODEL_SHA1', _sha1(caffemodels['v1']))
    convert_caffe_model.ensure_caffemodel(str(dest))
    assert server.requests[-1][1]['Range'] == 'bytes=1000000-'
    assert dest.read_bytes() == body
    assert not (tmp_path / 'bvlc_googlenet.caffemodel.part').exists()


def test_checksum_mismatch(tmp_path, capsys, caffemodels, server):
    server.routes['/m.caffemodel'] = open(caffemodels['v1'], 'rb').read()
    dest = tmp_path / 'bvlc_googlenet.caffemodel'
    err = _bad(tmp_path, capsys, dest, '--download',
               '--url', server.url('/m.caffemodel'), '--sha1', '0' * 40)
    assert 'checksum mismatch' in err
    assert os.listdir(tmp_path) == []


def test_unreachable_host_says_where_to_put_the_file(tmp_path, capsys):
    dest = tmp_path / 'bvlc_googlenet.caffemodel'
    url = 'http://127.0.0.1:{}/m.caffemodel'.format(closed_port())
    err = _bad(tmp_path, capsys, dest, '--download', '--url', url)
    assert 'cannot reach 127.0.0.1' in err
    assert 'put it at {}'.format(dest) in err


def test_http_error_is_reported(tmp_path, capsys, server):
    dest = tmp_path / 'bvlc_googlenet.caffemodel'
    err = _bad(tmp_path, capsys, dest, '--download',
               '--url', server.url('/missing'))
    assert 'HTTP 404' in err


def test_download_cut_off_then_resumed(tmp_path, capsys, caffemodels, server):
    body = open(caffemodels['v1'], 'rb').read()
    answers = [cut_off_after(body, 3000000), lambda h: h._send_range(body)]
    server.routes['/m'] = lambda handler: answers.pop(0)(handler)
    dest = tmp_path / 'bvlc_googlenet.caffemodel'
    argv = ['--download', '--url', server.url('/m'), '--sha1', _sha1(
        caffemodels['v1'])]
    err = _bad(tmp_path, capsys, dest, *argv)
    assert 'broke off' in err
    kept = (tmp_path / 'bvlc_googlenet.caffemodel.part').stat().st_size
    assert 0 < kept <= 3000000
    assert convert_caffe_model.main(['--caffemodel', str(dest), '--output',
                                     str(tmp_path / 'm.model')] + argv) == 0
    assert server.requests[-1][1]['Range'] == 'bytes={}-'.format(kept)
    assert dest.read_bytes() == body
