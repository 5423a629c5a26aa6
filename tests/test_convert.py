import hashlib
import os

import numpy
import pytest

from chainer_compat import chainer

import caffe_fixtures
import convert_caffe_model
import googlenet_caffe
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
    googlenet_caffe.convert(caffemodels['v2'], out, **QUIET)
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
    googlenet_caffe.convert(caffemodels['v1'], out, n_classes=5, **QUIET)
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
    for caffe_name, link in googlenet_caffe.LAYER_MAP.items():
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
    err = _bad(tmp_path, capsys, tmp_path / 'nope.caffemodel')
    assert 'not found' in err and 'add --download' in err


@pytest.mark.parametrize('classes, words', [
    ('0', 'a classifier needs at least 2 classes, got 0'),
    ('1', 'a classifier needs at least 2 classes, got 1'),
    ('-2', 'a classifier needs at least 2 classes, got -2'),
    ('100000000', '100000000 classes is more than this project supports')])
def test_class_counts_out_of_range_are_refused(tmp_path, capsys,
                                               caffemodels, classes, words):
    err = _bad(tmp_path, capsys, caffemodels['v1'], '--classes', classes)
    assert words in err


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
    assert (code, err) == (1, 'error: cannot write output in {}: no such '
                              'folder\n'.format(out.parent))


def test_failed_save_leaves_old_model_in_place(tmp_path, caffemodels,
                                               monkeypatch):
    out = tmp_path / 'keep.model'
    googlenet_caffe.convert(caffemodels['v2'], str(out), **QUIET)
    old = out.read_bytes()

    def broken_savez(f, **arrays):
        f.write(b'partial')
        raise OSError('disk full')
    monkeypatch.setattr(numpy, 'savez', broken_savez)
    with pytest.raises(OSError):
        googlenet_caffe.convert(caffemodels['v1'], str(out), **QUIET)
    assert out.read_bytes() == old
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
    # Not a terminal: a line per tenth, no carriage returns in a log.
    err = capsys.readouterr().err
    assert '100.0%' in err and '\r' not in err
    assert 5 <= err.count('downloading bvlc_googlenet.caffemodel') <= 11
    assert (tmp_path / 'm.model').exists()


def test_download_resumes_a_partial_file(tmp_path, caffemodels, server,
                                         monkeypatch):
    body = open(caffemodels['v1'], 'rb').read()
    server.routes['/m.caffemodel'] = body
    dest = tmp_path / 'bvlc_googlenet.caffemodel'
    (tmp_path / 'bvlc_googlenet.caffemodel.part').write_bytes(body[:1000000])
    monkeypatch.setenv('GOOGLENET_CAFFEMODEL_URL', server.url('/m.caffemodel'))
    monkeypatch.setenv('GOOGLENET_CAFFEMODEL_SHA1', _sha1(caffemodels['v1']))
    googlenet_caffe.ensure_caffemodel(str(dest))
    assert server.requests[-1][1]['Range'] == 'bytes=1000000-'
    assert dest.read_bytes() == body
    assert not (tmp_path / 'bvlc_googlenet.caffemodel.part').exists()


def test_checksum_mismatch_says_what_to_check(tmp_path, capsys, caffemodels,
                                             server):
    server.routes['/m.caffemodel'] = open(caffemodels['v1'], 'rb').read()
    dest = tmp_path / 'bvlc_googlenet.caffemodel'
    err = _bad(tmp_path, capsys, dest, '--download',
               '--url', server.url('/m.caffemodel'), '--sha1', '0' * 40)
    assert 'checksum mismatch: expected sha1 {}, got {}'.format(
        '0' * 40, _sha1(caffemodels['v1'])) in err
    assert 'the server sends the right file' in err
    assert '--sha1 or GOOGLENET_CAFFEMODEL_SHA1' in err
    assert 'run again' not in err  # it would only repeat the mismatch
    assert os.listdir(tmp_path) == []


def test_unreachable_host_says_where_to_put_the_file(tmp_path, capsys):
    dest = tmp_path / 'bvlc_googlenet.caffemodel'
    url = 'http://127.0.0.1:{}/m.caffemodel'.format(closed_port())
    err = _bad(tmp_path, capsys, dest, '--download', '--url', url)
    assert 'cannot reach 127.0.0.1' in err
    assert 'at {}; or pass --caffemodel PATH'.format(dest) in err
    assert 'GOOGLENET_CAFFEMODEL_URL' in err


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


# --- issue 11: nothing silently wrong ---------------------------------------

def test_summary_line_counts_trunk_layers_and_heads(caffemodels, tmp_path,
                                                    capsys):
    out = tmp_path / 'five.model'
    assert convert_caffe_model.main(['--caffemodel', caffemodels['v1'],
                                     '--output', str(out),
                                     '--classes', '5']) == 0
    last = capsys.readouterr().out.splitlines()[-1]
    # 3 stem convolutions and 9 Inception modules of 6 each; 7 head links.
    assert last == ('saved {} (5 classes): 57 trunk layers copied, 4 heads '
                    'copied, 3 heads left fresh (loss1_fc2, loss2_fc2, '
                    'loss3_fc)'.format(out))


def _with(weights, **changes):
    changed = dict(weights)
    changed.update(changes)
    return changed


@pytest.mark.parametrize('value', [numpy.nan, numpy.inf])
def test_non_finite_weights_are_refused_naming_the_layer(tmp_path, capsys,
                                                         value):
    path = _net_file(tmp_path / 'nan.caffemodel',
                     layers=[('conv1/7x7_s2', (1, 1, 1, 2)),
                             ('loss2/fc', (1, 1, 2, 3))], poison=value)
    err = _bad(tmp_path, capsys, path)
    assert err.endswith('blob 0 of layer loss2/fc holds NaN or infinite '
                        'values')


def test_a_model_file_with_non_finite_weights_is_refused_at_load(
        tmp_path, capsys, model_1000):
    model, _ = tuned_googlenet.load_model(model_1000)
    model.inc4c.conv3.b.array[5] = numpy.nan
    path = str(tmp_path / 'nan.model')
    tuned_googlenet.save_model(path, model)
    with pytest.raises(googlenet_caffe.UserError,
                       match='holds NaN or infinite values in '
                       '/inc4c/conv3/b'):
        tuned_googlenet.load_model(path)
    import googlenet_predict
    assert googlenet_predict.main(['--model', path, '--json']) == 1
    out, err = capsys.readouterr()
    assert out == '' and err.startswith('error: model file {}'.format(path))


def _edited(source, path, edit):
    """source's caffemodel (BlobShape format) with edit(net) applied."""
    import caffe_pb2
    net = caffe_pb2.NetParameter()
    with open(source, 'rb') as f:
        net.ParseFromString(f.read())
    edit(net)
    path.write_bytes(net.SerializeToString())
    return path


def _drop_classifier(net):
    kept = [layer for layer in net.layer if layer.name != 'loss3/classifier']
    del net.layer[:]
    net.layer.extend(kept)


def _ten_classes(net):
    layer, = [l for l in net.layer if l.name == 'loss3/classifier']
    w, b = layer.blobs
    del w.data[10 * 1024:]
    w.shape.dim[0] = 10
    del b.data[10:]
    b.shape.dim[0] = 10


@pytest.mark.parametrize('edit, expected', [
    (_drop_classifier, 'loss3/classifier is missing from the caffemodel'),
    (_ten_classes, 'loss3/classifier has shape (10, 1024)')])
def test_the_first_run_refuses_a_caffemodel_without_imagenets_classifier(
        tmp_path, capsys, caffemodels, dataset_root, edit, expected):
    import googlenet_predict
    path = _edited(caffemodels['v2'], tmp_path / 'headless.caffemodel', edit)
    assert googlenet_predict.main(['--caffemodel', str(path)]) == 1
    out, err = capsys.readouterr()
    assert out == ''
    last = err.splitlines()[-1]
    assert last.startswith('error: head layer ' + expected)
    assert 'a 1000-class model for prediction needs it' in last
    folder = os.path.join(dataset_root, 'pfnet', 'chainer', 'models')
    assert os.listdir(folder) == []  # no random classifier cached


def test_output_that_is_the_input_is_refused(tmp_path, capsys, caffemodels):
    path = tmp_path / 'in.caffemodel'
    path.write_bytes(open(caffemodels['v1'], 'rb').read())
    before = _sha1(path)
    link = tmp_path / 'link.model'
    link.symlink_to(path)
    for output in (path, link):
        assert convert_caffe_model.main(['--caffemodel', str(path),
                                         '--output', str(output)]) == 1
        err = capsys.readouterr().err
        assert err == ('error: output {} is the input {}; choose another '
                       'file\n'.format(output, path))
    assert _sha1(path) == before


def test_output_over_a_file_that_is_not_a_model_is_refused(tmp_path,
                                                           capsys,
                                                           caffemodels):
    photo = tmp_path / 'cat.model'
    photo.write_bytes(b'\x89PNG a photo kept under a model-like name')
    before = _sha1(photo)
    assert convert_caffe_model.main(['--caffemodel', caffemodels['v1'],
                                     '--output', str(photo)]) == 1
    assert capsys.readouterr().err == (
        'error: output {} exists and is not a model this project wrote: it '
        'is kept; choose another file\n'.format(photo))
    assert _sha1(photo) == before
    # One it cannot read is not called a photo (root reads anything: the
    # check is made to fail).
    real_access = os.access
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(os, 'access', lambda path, mode: (
            str(path) != str(photo) and real_access(path, mode)))
        assert convert_caffe_model.main(['--caffemodel', caffemodels['v1'],
                                         '--output', str(photo)]) == 1
    assert capsys.readouterr().err == (
        'error: output {} exists and cannot be read to check that it is a '
        'model this project wrote: it is kept; choose another file\n'
        .format(photo))
    # A model is replaced.
    model = tmp_path / 'googlenet.model'
    for _ in range(2):
        assert convert_caffe_model.main(['--caffemodel', caffemodels['v1'],
                                         '--output', str(model)]) == 0
    capsys.readouterr()


def test_output_that_is_a_folder_or_a_device_is_refused(tmp_path, capsys,
                                                        caffemodels):
    import stat
    mode = os.stat('/dev/null').st_mode
    for output, reason in ((tmp_path, 'is a folder'),
                           ('/dev/null', 'is not a regular file')):
        assert convert_caffe_model.main(['--caffemodel', caffemodels['v1'],
                                         '--output', str(output)]) == 1
        err = capsys.readouterr().err
        assert err.startswith('error: output {} {}'.format(output, reason))
        assert err.count('\n') == 1
    assert os.stat('/dev/null').st_mode == mode and stat.S_ISCHR(mode)
    assert os.listdir(tmp_path) == []


def test_a_fifo_as_caffemodel_is_refused_without_waiting(tmp_path, capsys):
    fifo = tmp_path / 'pipe'
    os.mkfifo(fifo)
    err = _bad(tmp_path, capsys, fifo)
    assert err == ('error: {} is not a regular file (a FIFO, device or '
                   'socket), not a caffemodel'.format(fifo))


def _net_file(path, layer=(), layers=(), poison=None):
    """A small caffemodel; poison, if given, is the last value of the
    last V1 layer's blob."""
    import caffe_pb2
    net = caffe_pb2.NetParameter()
    for name, dims in layer:
        blob = net.layer.add(name=name).blobs.add()
        blob.shape.dim.extend(dims)
    for name, dims in layers:
        blob = net.layers.add(name=name).blobs.add()
        blob.num, blob.channels, blob.height, blob.width = dims
        blob.data.extend([0.5] * int(numpy.prod(dims)))
    if poison is not None:
        blob.data[-1] = poison
    path.write_bytes(net.SerializeToString())
    return path


def test_a_blob_shape_that_overflows_is_one_line(tmp_path, capsys):
    # 2**32 * 2**32 wraps to 0 in int64: it must not pass for an empty blob.
    path = _net_file(tmp_path / 'huge.caffemodel',
                     layer=[('conv1/7x7_s2', [2 ** 32, 2 ** 32])])
    err = _bad(tmp_path, capsys, path)
    assert err.endswith('blob 0 of layer conv1/7x7_s2 holds 0 values for '
                        'shape ({0}, {0})'.format(2 ** 32))


def test_a_file_with_both_layer_and_layers_is_refused(tmp_path, capsys):
    path = _net_file(tmp_path / 'both.caffemodel',
                     layer=[('conv1/7x7_s2', [0])],
                     layers=[('conv2/3x3', (1, 1, 1, 2))])
    err = _bad(tmp_path, capsys, path)
    assert err == ('error: {} holds both layer and layers (the current and '
                   'the V1 format), as Caffe refuses too'.format(path))


def test_a_folder_as_caffemodel_is_one_line(tmp_path, capsys):
    folder = tmp_path / 'models'
    folder.mkdir()
    assert 'is a folder, not a caffemodel' in _bad(tmp_path, capsys, folder)


def test_a_converted_model_with_a_fresh_classifier_never_classifies(
        tmp_path, capsys, caffemodels, model_3, dataset):
    import evaluate_googlenet
    import export_googlenet
    import googlenet_predict
    path = _edited(caffemodels['v2'], tmp_path / 'headless.caffemodel',
                   _drop_classifier)
    fresh = str(tmp_path / 'fresh.model')
    assert convert_caffe_model.main(['--caffemodel', str(path), '--output',
                                     fresh]) == 0
    capsys.readouterr()
    image = os.path.join(dataset, 'red', os.listdir(
        os.path.join(dataset, 'red'))[0])
    refused = ('its loss3/classifier of {} classes was never trained')
    for main, argv, classes in (
            (googlenet_predict.main, ['--model', fresh, image], 1000),
            (evaluate_googlenet.main, ['--model', model_3, '--data',
                                       dataset], 3),
            (export_googlenet.main, ['--model', model_3, '--onnx',
                                     str(tmp_path / 'x.onnx')], 3)):
        assert main(argv) == 1
        out, err = capsys.readouterr()
        assert refused.format(classes) in err and err.count('\n') == 1, err
    assert not (tmp_path / 'x.onnx').exists()


def test_two_layers_of_one_name_are_refused(tmp_path, capsys, caffemodels):
    def repeat_conv1(net):
        layer, = [l for l in net.layer if l.name == 'conv1/7x7_s2']
        copy = net.layer.add()
        copy.CopyFrom(layer)
        for blob in copy.blobs:
            blob.data[:] = [0.0] * len(blob.data)
    path = _edited(caffemodels['v2'], tmp_path / 'twice.caffemodel',
                   repeat_conv1)
    err = _bad(tmp_path, capsys, path)
    assert 'holds two layers named conv1/7x7_s2 with weights' in err
