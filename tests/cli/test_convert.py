"""convert_caffe_model.py through main(): conversion, downloads, refusals."""
import errno
import hashlib
import os

import numpy
import pytest

import convert_caffe_model
import tuned_googlenet
from googlenet_chainer import caffe_layers, download, model_file

import caffe_fixtures
from helpers import drop_classifier, edited_caffemodel, sha1_of
from http_fixtures import closed_port, cut_off_after


def functools_get(model, path):
    for part in path.split('/'):
        model = getattr(model, part)
    return model


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


def test_heads_copied_where_they_fit_fresh_where_not(caffemodels, weights,
                                                     tmp_path, capsys):
    out = str(tmp_path / 'five.model')
    assert convert_caffe_model.main(['--caffemodel', caffemodels['v1'],
                                     '--output', out, '--classes', '5']) == 0
    log = capsys.readouterr().out
    assert 'loss3/classifier' in log and 'left fresh' in log
    model, _ = model_file.load_model(out)
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
    model, _ = model_file.load_model(out)
    for caffe_name, link in caffe_layers.LAYER_MAP.items():
        w = functools_get(model, link).W.array
        same = numpy.array_equal(w, weights[caffe_name][0].reshape(w.shape))
        assert same == (link not in tuned_googlenet.HEADS), link


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


def test_download_verifies_and_converts(tmp_path, caffemodels, server,
                                        capsys):
    body = open(caffemodels['v1'], 'rb').read()
    server.routes['/m.caffemodel'] = body
    dest = tmp_path / 'bvlc_googlenet.caffemodel'
    code = convert_caffe_model.main([
        '--download', '--caffemodel', str(dest), '--output',
        str(tmp_path / 'm.model'), '--url', server.url('/m.caffemodel'),
        '--sha1', sha1_of(caffemodels['v1'])])
    assert code == 0, capsys.readouterr().err
    assert dest.read_bytes() == body
    # Not a terminal: a line per tenth, no carriage returns in a log.
    err = capsys.readouterr().err
    assert '100.0%' in err and '\r' not in err
    assert 5 <= err.count('downloading bvlc_googlenet.caffemodel') <= 11
    assert (tmp_path / 'm.model').exists()


def test_checksum_mismatch_says_what_to_check(tmp_path, capsys, caffemodels,
                                              server):
    server.routes['/m.caffemodel'] = open(caffemodels['v1'], 'rb').read()
    dest = tmp_path / 'bvlc_googlenet.caffemodel'
    err = _bad(tmp_path, capsys, dest, '--download',
               '--url', server.url('/m.caffemodel'), '--sha1', '0' * 40)
    assert 'its file has sha1 {}, not {} (given with --sha1): the server ' \
        'sends another file, or the expected sha1 is not this file\'s'.format(
            sha1_of(caffemodels['v1']), '0' * 40) in err
    assert 'run again' not in err  # it would only repeat the mismatch
    assert os.listdir(tmp_path) == []


def test_unreachable_host_says_where_to_put_the_file(tmp_path, capsys):
    dest = tmp_path / 'bvlc_googlenet.caffemodel'
    url = 'http://127.0.0.1:{}/m.caffemodel'.format(closed_port())
    err = _bad(tmp_path, capsys, dest, '--download', '--url', url)
    assert 'cannot reach 127.0.0.1' in err
    assert 'at {}, where this command looks for it; or try another ' \
        'mirror of it, its URL in GOOGLENET_CAFFEMODEL_URL'.format(
            dest) in err


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
    argv = ['--download', '--url', server.url('/m'), '--sha1', sha1_of(
        caffemodels['v1'])]
    err = _bad(tmp_path, capsys, dest, *argv)
    assert 'broke off' in err
    kept = (tmp_path / 'bvlc_googlenet.caffemodel.part').stat().st_size
    assert 0 < kept <= 3000000
    assert convert_caffe_model.main(['--caffemodel', str(dest), '--output',
                                     str(tmp_path / 'm.model')] + argv) == 0
    assert server.requests[-1][1]['Range'] == 'bytes={}-'.format(kept)
    assert dest.read_bytes() == body


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


@pytest.mark.parametrize('value', [numpy.nan, numpy.inf])
def test_non_finite_weights_are_refused_naming_the_layer(tmp_path, capsys,
                                                         value):
    path = _net_file(tmp_path / 'nan.caffemodel',
                     layers=[('conv1/7x7_s2', (1, 1, 1, 2)),
                             ('loss2/fc', (1, 1, 2, 3))], poison=value)
    err = _bad(tmp_path, capsys, path)
    assert err.endswith('blob 0 of layer loss2/fc holds NaN or infinite '
                        'values')


def test_output_that_is_the_input_is_refused(tmp_path, capsys, caffemodels):
    path = tmp_path / 'in.caffemodel'
    path.write_bytes(open(caffemodels['v1'], 'rb').read())
    before = sha1_of(path)
    link = tmp_path / 'link.model'
    link.symlink_to(path)
    for output in (path, link):
        assert convert_caffe_model.main(['--caffemodel', str(path),
                                         '--output', str(output)]) == 1
        err = capsys.readouterr().err
        assert err == ('error: output {} is the input {}; choose another '
                       'file\n'.format(output, path))
    assert sha1_of(path) == before


def test_output_over_a_file_that_is_not_a_model_is_refused(tmp_path,
                                                           capsys,
                                                           caffemodels):
    photo = tmp_path / 'cat.model'
    photo.write_bytes(b'\x89PNG a photo kept under a model-like name')
    before = sha1_of(photo)
    assert convert_caffe_model.main(['--caffemodel', caffemodels['v1'],
                                     '--output', str(photo)]) == 1
    assert capsys.readouterr().err == (
        'error: output {} exists and is not an earlier conversion (a '
        'fine-tuned model, which stores its class names, is kept): it is '
        'kept; choose another file\n'.format(photo))
    assert sha1_of(photo) == before
    # One it cannot read is not called a photo (root reads anything: the
    # check is made to fail).
    real_access = os.access
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(os, 'access', lambda path, mode: (
            str(path) != str(photo) and real_access(path, mode)))
        assert convert_caffe_model.main(['--caffemodel', caffemodels['v1'],
                                         '--output', str(photo)]) == 1
    assert capsys.readouterr().err == (
        'error: output {} exists and cannot be read to check that it is '
        'an earlier conversion (a fine-tuned model, which stores its class '
        'names, is kept): it is kept; choose another file\n'.format(photo))
    # An earlier conversion is replaced.
    model = tmp_path / 'googlenet.model'
    for _ in range(2):
        assert convert_caffe_model.main(['--caffemodel', caffemodels['v1'],
                                         '--output', str(model)]) == 0
    capsys.readouterr()
    # A fine-tuned model is not: its trained heads would be lost.
    converted, _ = model_file.load_model(str(model))
    model_file.save_model(str(model), converted,
                          ['c{}'.format(i) for i in range(1000)])
    before = sha1_of(model)
    assert convert_caffe_model.main(['--caffemodel', caffemodels['v1'],
                                     '--output', str(model)]) == 1
    assert 'exists and is not an earlier conversion' in \
        capsys.readouterr().err
    assert sha1_of(model) == before


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
    path = edited_caffemodel(caffemodels['v2'], tmp_path / 'headless.caffemodel',
                             drop_classifier)
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
    path = edited_caffemodel(caffemodels['v2'], tmp_path / 'twice.caffemodel',
                             repeat_conv1)
    err = _bad(tmp_path, capsys, path)
    assert 'holds two layers named conv1/7x7_s2 with weights' in err


def test_converter_seed_fixes_the_fresh_heads(caffemodels, tmp_path):
    heads = []
    for name, seed in (('a', 1), ('b', 1), ('c', 2)):
        path = str(tmp_path / name)
        assert convert_caffe_model.main([
            '--caffemodel', caffemodels['v1'], '--output', path,
            '--classes', '3', '--seed', str(seed)]) == 0
        with numpy.load(path) as npz:
            heads.append(npz['loss3_fc/W'])
    assert numpy.array_equal(heads[0], heads[1])
    assert not numpy.array_equal(heads[0], heads[2])


def last_error_line(err):
    """The error line of a failed run (progress lines may come first)."""
    assert 'Traceback' not in err, err
    assert err.count('error: ') == 1, err
    return err.splitlines()[-1]


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


def test_a_full_disk_while_downloading_is_one_line_naming_the_file(
        tmp_path, capsys, caffemodels, server, monkeypatch):
    body = open(caffemodels['v1'], 'rb').read()
    server.routes['/m'] = body
    monkeypatch.setattr(download, 'open', lambda path, mode: FillsUp(
        path, mode, 3000000), raising=False)
    dest = tmp_path / 'm.caffemodel'
    code = convert_caffe_model.main([
        '--download', '--caffemodel', str(dest), '--url', server.url('/m'),
        '--sha1', hashlib.sha1(body).hexdigest(),
        '--output', str(tmp_path / 'm.model')])
    line = last_error_line(capsys.readouterr().err)
    assert code == 1
    assert 'cannot write {}.part: No space left on device'.format(
        dest) in line
    # What arrived is kept for the next try; nothing at the final path.
    assert 0 < (tmp_path / 'm.caffemodel.part').stat().st_size <= 3000000
    assert sorted(os.listdir(tmp_path)) == ['m.caffemodel.part']


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
    line = last_error_line(capsys.readouterr().err)
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
    line = last_error_line(capsys.readouterr().err)
    assert 'the server sent a web page, not the file' in line
    assert os.listdir(tmp_path) == []
