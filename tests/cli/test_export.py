"""export_googlenet.py through main(): ONNX and Caffe exports and refusals."""
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap

import numpy
import pytest
from PIL import Image

import caffe_pb2
import convert_caffe_model
import export_googlenet
import googlenet_predict
import tuned_googlenet
from googlenet_chainer import caffemodel, model_file

from helpers import ROOT
from image_fixtures import PHOTO
from numeric import assert_probabilities_close

onnx = pytest.importorskip('onnx')


ort = pytest.importorskip('onnxruntime')


FIVE = ['ant', 'bee', 'cat', 'dog', 'eel']


@pytest.fixture(scope='module')
def tuned_model(tmp_path_factory, caffemodels):
    """A 5-class model whose heads differ from any caffemodel's, as after
    fine-tuning, saved with its class names."""
    path = str(tmp_path_factory.mktemp('five') / 'tuned_googlenet.model')
    model = caffemodel.convert(caffemodels['v1'], path, n_classes=5,
                               log=lambda line: None)
    # Seeded here: a module-scoped fixture runs before the per-test seeding.
    rng = numpy.random.RandomState(5)
    for name in tuned_googlenet.HEADS:
        link = getattr(model, name)
        link.W.array[...] = rng.standard_normal(link.W.shape) * 0.05
        link.b.array[...] = rng.standard_normal(link.b.shape) * 0.5
    model_file.save_model(path, model, FIVE)
    return path


@pytest.mark.parametrize('which', ['1000', '5'])
def test_onnx_runs_in_onnxruntime_like_predict(which, model_1000,
                                               tuned_model, tmp_path,
                                               capsys):
    path = model_1000 if which == '1000' else tuned_model
    out = str(tmp_path / 'googlenet.onnx')
    # The second export replaces the first: it is this project's own.
    for _ in range(2):
        assert export_googlenet.main(['--model', path, '--onnx', out]) == 0
        assert 'wrote ' + out in capsys.readouterr().out
    proto = onnx.load(out)
    onnx.checker.check_model(proto, full_check=True)
    assert proto.opset_import[0].version >= 13
    ops = {node.op_type for node in proto.graph.node}
    assert {'LRN', 'MaxPool', 'Concat', 'Softmax'} <= ops
    assert 'Dropout' not in ops
    meta = {p.key: p.value for p in proto.metadata_props}
    model, stored = model_file.load_model(path)
    names = json.loads(meta['class_names'])
    assert len(names) == model.n_classes
    if which == '5':
        assert names == FIVE
    else:
        assert names[0].startswith('n01440764 ')
    # The whole preprocessing, for a toolkit that knows nothing of Caffe.
    assert json.loads(meta['mean_bgr']) == [104.0, 117.0, 123.0]
    assert {key: meta[key] for key in (
        'channel_order', 'resize', 'resize_interpolation', 'crop',
        'crop_box', 'pixel_range', 'layout', 'input_size')} == {
            'channel_order': 'BGR', 'resize': '256x256',
            'resize_interpolation': 'bilinear', 'crop': 'centre 224x224',
            'crop_box': '[16, 16, 240, 240]', 'pixel_range': '0-255',
            'layout': 'NCHW', 'input_size': '224x224'}
    assert 'aspect ratio not kept' in meta['preprocessing']
    session = ort.InferenceSession(out, providers=['CPUExecutionProvider'])
    [data], [prob] = session.get_inputs(), session.get_outputs()
    assert (data.name, prob.name) == ('data', 'prob')
    assert data.shape[1:] == [3, 224, 224] and isinstance(data.shape[0], str)
    rng = numpy.random.RandomState(0)
    for batch in (1, 5):
        x = rng.uniform(-123, 152, (batch, 3, 224, 224)).astype(numpy.float32)
        actual = session.run(['prob'], {'data': x})[0]
        expected = model.predict(x)
        assert actual.shape == (batch, model.n_classes)
        assert_probabilities_close(actual, expected)
        # Not a flat output: the inputs are told apart.
        assert expected.max() > 2.0 / model.n_classes
    if which == '5':
        readme_example_agrees_with_predict(out, path, tmp_path, capsys)


def readme_example_agrees_with_predict(onnx_file, model, tmp_path, capsys):
    """The README's onnxruntime example, run as written in a folder of its
    own without this project on the path (python -I), classifies a photo
    as googlenet_predict.py does."""
    with open(os.path.join(ROOT, 'README.md'), encoding='utf-8') as f:
        blocks = re.findall(r'\n\n((?:    .*\n)+)', f.read())
    [example] = [block for block in blocks if 'InferenceSession' in block]
    elsewhere = tmp_path / 'elsewhere'
    elsewhere.mkdir()
    shutil.copy(onnx_file, str(elsewhere / 'googlenet.onnx'))
    Image.fromarray(PHOTO).save(str(elsewhere / 'new.jpg'), quality=90)
    printed = subprocess.run(
        [sys.executable, '-I', '-c', textwrap.dedent(example)],
        cwd=str(elsewhere), capture_output=True, text=True, check=True,
        env={'PATH': os.environ['PATH']}).stdout
    name, probability = printed.rsplit(None, 1)
    assert googlenet_predict.main(['--model', model, '--json', '--top', '1',
                                   str(elsewhere / 'new.jpg')]) == 0
    [best] = json.loads(capsys.readouterr().out)['predictions']
    assert name == best['name']
    assert_probabilities_close([float(probability)], [best['probability']])


def test_caffemodel_converts_back_bit_identically(tuned_model, tmp_path,
                                                  capsys):
    folder = str(tmp_path / 'caffe')
    assert export_googlenet.main(['--model', tuned_model,
                                  '--caffe', folder]) == 0
    printed = capsys.readouterr().out
    caffemodel = os.path.join(folder, 'tuned_googlenet.caffemodel')
    assert 'wrote ' + caffemodel in printed
    with open(os.path.join(folder, 'labels.txt')) as f:
        assert f.read().split() == FIVE
    net = caffe_pb2.NetParameter()
    with open(caffemodel, 'rb') as f:
        net.ParseFromString(f.read())
    assert len(net.layer) and not len(net.layers)  # the current format
    back = str(tmp_path / 'back.model')
    assert convert_caffe_model.main(['--caffemodel', caffemodel,
                                     '--output', back, '--classes', '5']) == 0
    assert '7 heads copied, 0 heads left fresh' in capsys.readouterr().out
    original, _ = model_file.load_model(tuned_model)
    converted, _ = model_file.load_model(back)
    params = dict(converted.namedparams())
    assert set(params) == {name for name, _ in original.namedparams()}
    for name, param in original.namedparams():
        assert params[name].array.dtype == numpy.float32
        assert numpy.array_equal(params[name].array, param.array), name


def test_errors_are_one_line(tmp_path, capsys, model_1000):
    assert export_googlenet.main(['--model', str(tmp_path / 'none.model'),
                                  '--onnx', str(tmp_path / 'x.onnx')]) == 1
    err = capsys.readouterr().err
    assert err.startswith('error: model file not found') and \
        err.count('\n') == 1
    assert export_googlenet.main(['--model', model_1000]) == 1
    assert 'nothing to do' in capsys.readouterr().err
    blocker = tmp_path / 'file'
    blocker.write_text('')
    assert export_googlenet.main(['--model', model_1000, '--caffe',
                                  str(blocker / 'sub')]) == 1
    err = capsys.readouterr().err
    assert err == 'error: cannot write --caffe in {}: no such folder\n'.format(
        blocker)
    assert export_googlenet.main(['--model', model_1000, '--onnx',
                                  str(tmp_path / 'no' / 'x.onnx')]) == 1
    err = capsys.readouterr().err
    assert err.startswith('error: cannot write') and err.count('\n') == 1

    model, _ = model_file.load_model(model_1000)
    model.loss3_fc.W.array[3, 7] = numpy.nan
    broken = str(tmp_path / 'nan.model')
    model_file.save_model(broken, model)
    assert export_googlenet.main(['--model', broken, '--onnx',
                                  str(tmp_path / 'x.onnx')]) == 1
    assert capsys.readouterr().err == (
        'error: model file {} holds NaN or infinite values in /loss3_fc/W; '
        'convert or train it again\n'.format(broken))
    assert not os.path.exists(str(tmp_path / 'x.onnx'))


def test_outputs_that_would_replace_the_model_or_a_device_are_refused(
        model_1000, tmp_path, capsys):
    before = open(model_1000, 'rb').read()
    photo = str(tmp_path / 'holiday.onnx')
    with open(photo, 'wb') as f:
        f.write(b'\xff\xd8\xff\xe0 a JPEG by another name')
    for argv, message in [
            (['--onnx', model_1000], 'is the input'),
            (['--onnx', '/dev/null'], 'is not a regular file'),
            (['--onnx', photo], 'exists and is not an ONNX model this '
             'project exported: it is kept'),
            (['--caffe', model_1000], 'is a file, not a folder')]:
        assert export_googlenet.main(['--model', model_1000] + argv) == 1
        err = capsys.readouterr().err
        assert err.startswith('error: ') and message in err, err
        assert err.count('\n') == 1
    assert open(model_1000, 'rb').read() == before
    assert open(photo, 'rb').read().startswith(b'\xff\xd8')
    assert not os.path.isfile('/dev/null')


def test_a_class_name_with_a_line_break_is_not_written(tmp_path, capsys,
                                                       tuned_model):
    """A model whose stored names hold a newline (trained before folder
    names were checked): labels.txt would get a line too many, shifting
    every later label, so nothing is written."""
    model, _ = model_file.load_model(tuned_model)
    path = str(tmp_path / 'newline.model')
    model_file.save_model(path, model, ['ant', 'a\nb', 'cat', 'dog',
                                        'eel'])
    folder, onnx_file = tmp_path / 'caffe', tmp_path / 'x.onnx'
    assert export_googlenet.main(['--model', path, '--onnx', str(onnx_file),
                                  '--caffe', str(folder)]) == 1
    assert capsys.readouterr().err == (
        'error: class a\\nb has a line break: {} holds one name per line\n'
        .format(folder / 'labels.txt'))
    assert not folder.exists() and not onnx_file.exists()
    with pytest.raises(export_googlenet.UserError, match='line break'):
        export_googlenet.export_caffe(model, str(folder), FIVE[:4] + ['e\r'])
    assert not folder.exists()


def test_duplicate_labels_are_refused(tmp_path, capsys, tuned_model):
    labels = tmp_path / 'labels.txt'
    labels.write_text('ant\nbee\ncat\n ant\neel\n')
    assert export_googlenet.main(['--model', tuned_model, '--labels',
                                  str(labels), '--caffe',
                                  str(tmp_path / 'c')]) == 1
    assert capsys.readouterr().err == (
        'error: label file {}: ant is on lines 1 and 4; class names must '
        'differ\n'.format(labels))
    assert not (tmp_path / 'c').exists()


def test_caffe_folder_replaces_only_an_earlier_export(model_1000, tmp_path,
                                                      capsys):
    """BVLC's own model folder (its deploy.prototxt and caffemodel) and a
    folder of the user's with a labels.txt are kept; an earlier export is
    replaced."""
    stem = os.path.splitext(os.path.basename(model_1000))[0]
    bvlc, mine, export = (tmp_path / name for name in ('bvlc', 'mine',
                                                       'export'))
    for folder, files in ((bvlc, {'deploy.prototxt': b'name: "GoogleNet"\n',
                                  stem + '.caffemodel': b'BVLC weights'}),
                          (mine, {'labels.txt': b'my labels\n'})):
        folder.mkdir()
        for name, data in files.items():
            (folder / name).write_bytes(data)
        assert export_googlenet.main(['--model', model_1000, '--caffe',
                                      str(folder)]) == 1
        err = capsys.readouterr().err
        assert err.startswith('error: --caffe {}: {} exists and is not an '
                              'earlier export of this project'.format(
                                  folder, folder / sorted(files)[0]))
        assert err.count('\n') == 1
        for name, data in files.items():
            assert (folder / name).read_bytes() == data
        assert sorted(os.listdir(folder)) == sorted(files)
    # A missing parent is said, not made.
    assert export_googlenet.main(['--model', model_1000, '--caffe',
                                  str(tmp_path / 'a' / 'b')]) == 1
    assert capsys.readouterr().err == (
        'error: cannot write --caffe in {}: no such folder\n'.format(
            tmp_path / 'a'))
    for _ in range(2):
        assert export_googlenet.main(['--model', model_1000, '--caffe',
                                      str(export)]) == 0
    assert sorted(os.listdir(export)) == sorted(
        ['deploy.prototxt', stem + '.caffemodel', 'labels.txt'])
