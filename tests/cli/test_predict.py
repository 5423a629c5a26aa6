"""googlenet_predict.py through main(): inputs, models, the first run and
what is refused."""
import hashlib
import io
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import warnings

import numpy
import pytest
from PIL import Image

import googlenet_predict
from googlenet_chainer import caffemodel, errors, images, labels, model_file

from helpers import (CROPS, REFERENCE, ROOT, drop_classifier,
                     edited_caffemodel, one_error_line, photo_probabilities,
                     predict, sha1_of, without_cupy)
from http_fixtures import (TLSServer, closed_port, cut_off_after, drip, slowly,
                           stall)
from image_fixtures import (PHOTO, jpeg_bytes, png_bytes, two_tone,
                            write_pixel_formats, write_png)
from numeric import assert_probabilities_close

LINE = re.compile(r'^ {0,2}\d{1,3} +\d{1,3}\.\d\d% n\d{8} \S')


@pytest.fixture
def named_model(tmp_path, caffemodels):
    """A 5-class model carrying the class names a training run stores."""
    path = str(tmp_path / 'tuned.model')
    model = caffemodel.convert(caffemodels['v1'], path, n_classes=5,
                               log=lambda line: None)
    model_file.save_model(path, model,
                          ['ant', 'bee', 'cat', 'dog', 'eel'])
    return path


def models_folder(root):
    return os.path.join(root, 'pfnet', 'chainer', 'models')


def _png_of(array):
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, 'PNG')
    return buf.getvalue()


def test_default_classifies_the_sample_photo_as_a_table(capsys, model_1000):
    code, out, err = predict(capsys, '--model', model_1000)
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].endswith('sample_images/cat.png')
    assert len(lines) == 11
    assert all(LINE.match(line) for line in lines[1:]), lines
    percents = [float(line.split()[1][:-1]) for line in lines[1:]]
    assert percents == sorted(percents, reverse=True)
    names = labels.read_labels(labels.SYNSET_WORDS)
    assert lines[1].split('% ', 1)[1] in names


def test_url_file_and_folder_in_json(capsys, tmp_path, server, model_1000):
    server.routes['/red.png'] = png_bytes((220, 20, 20))
    folder = tmp_path / 'photos'
    folder.mkdir()
    (folder / 'b.png').write_bytes(png_bytes((20, 20, 220)))
    (folder / 'a.jpg').write_bytes(png_bytes((20, 220, 20), fmt='JPEG'))
    (folder / 'notes.txt').write_text('not an image')
    # Class folders (a training set) are looked into; dot-folders are not.
    (folder / 'zebra').mkdir()
    (folder / 'zebra' / 'z.png').write_bytes(png_bytes((9, 9, 9)))
    (folder / '.ipynb_checkpoints').mkdir()
    (folder / '.ipynb_checkpoints' / 'c.png').write_bytes(png_bytes())
    single = tmp_path / 'grey.png'
    single.write_bytes(png_bytes(128, mode='L'))
    # Files on both sides of -u: the URLs print first, then the rest.
    code, out, err = predict(capsys, '--model', model_1000, str(single), '-u',
                             server.url('/red.png'), '--json', str(folder),
                             '--top', '3', '-b', '2')
    assert code == 0, err
    records = [json.loads(line) for line in out.splitlines()]
    assert [r['input'] for r in records] == [
        server.url('/red.png'), str(single), str(folder / 'a.jpg'),
        str(folder / 'b.png'), str(folder / 'zebra' / 'z.png')]
    for record in records:
        probs = [p['probability'] for p in record['predictions']]
        assert len(probs) == 3 and probs == sorted(probs, reverse=True)
        first = record['predictions'][0]
        assert 0 <= first['index'] < 1000
        assert (first['class_id'] + ' ' + first['name']) == labels.read_labels(
            labels.SYNSET_WORDS)[first['index']]


def test_batching_does_not_change_results(capsys, tmp_path, model_1000):
    paths = []
    for i, color in enumerate([(250, 0, 0), (0, 250, 0), (0, 0, 250)]):
        paths.append(str(tmp_path / '{}.png'.format(i)))
        two_tone(color, (50, 60)).save(paths[-1])
    _, one, _ = predict(capsys, '--model', model_1000, '--json', '-b', '1',
                        *paths)
    _, three, _ = predict(capsys, '--model', model_1000, '--json', '-b', '3',
                          *paths)
    for a, b in zip(one.splitlines(), three.splitlines()):
        a, b = json.loads(a), json.loads(b)
        assert [p['index'] for p in a['predictions']] == [
            p['index'] for p in b['predictions']]
        assert_probabilities_close(
            [p['probability'] for p in a['predictions']],
            [p['probability'] for p in b['predictions']])


def test_oversample_averages_caffes_ten_crops(capsys, model_1000):
    code, out, err = predict(capsys, '--model', model_1000, '--json',
                             '--oversample', '--top', '1000')
    assert code == 0, err
    got = {p['index']: p['probability']
           for p in json.loads(out)['predictions']}
    model, _ = model_file.load_model(model_1000)
    image = images.open_image(googlenet_predict.SAMPLE_IMAGE)
    crops = images.ten_crops(image)
    assert crops.shape == (10, 3, 224, 224)
    expected = model.predict(crops).mean(axis=0)
    assert_probabilities_close([got[i] for i in range(1000)], expected)


def test_corrupt_exif_is_passed_over_quietly(capsys, tmp_path,
                                             named_model):
    # An orientation tag whose value runs past the end of the EXIF block:
    # Pillow warns (two lines of its source) and reads the pixels.
    exif = (b'Exif\x00\x00II*\x00\x08\x00\x00\x00\x05\x00\x12\x01\x03'
            b'\x00\x01\x00\x00\x00\x06\x00\x00\x00\xff\xff\x04\x00\x01')
    path = tmp_path / 'exif.jpg'
    Image.fromarray(numpy.random.RandomState(0).randint(
        0, 256, (32, 32, 3)).astype(numpy.uint8)).save(path, exif=exif)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter('always')
        code, out, err = predict(capsys, '--model', named_model, str(path))
    assert (code, err) == (0, '')
    assert out.startswith(str(path))
    assert [str(w.message) for w in seen] == []


def test_fine_tuned_model_prints_its_stored_names(capsys, named_model):
    code, out, err = predict(capsys, '--model', named_model, '--top', '5')
    assert code == 0, err
    names = sorted(line.split('% ')[1] for line in out.splitlines()[1:])
    assert names == ['ant', 'bee', 'cat', 'dog', 'eel']


def test_label_file_overrides(capsys, tmp_path, named_model):
    labels = tmp_path / 'labels.txt'
    labels.write_text('one\ntwo\nthree\nfour\nfive\n')
    code, out, _ = predict(capsys, '--model', named_model, '--json',
                           '--labels', str(labels))
    assert code == 0
    got = {p['name'] for p in json.loads(out)['predictions']}
    assert got == {'one', 'two', 'three', 'four', 'five'}


@pytest.mark.parametrize('text, message', [
    ('one\ntwo\n', '{} has 2 labels but the model has 5 classes'),
    ('one\ntwo\nthree\nfour\n two\n',
     'label file {}: two is on lines 2 and 5; class names must differ')])
def test_label_file_of_the_wrong_length_or_a_duplicate_is_refused(
        capsys, tmp_path, named_model, text, message):
    labels = tmp_path / 'labels.txt'
    labels.write_text(text)
    code, out, err = predict(capsys, '--model', named_model, '--labels',
                             str(labels))
    assert code == 1 and out == ''
    assert err == 'error: ' + message.format(labels) + '\n'


def test_first_run_converts_the_caffemodel_it_finds(capsys, tmp_path,
                                                    monkeypatch, caffemodels,
                                                    dataset_root):
    folder = models_folder(dataset_root)
    os.makedirs(folder)
    os.symlink(caffemodels['v2'],
               os.path.join(folder, 'bvlc_googlenet.caffemodel'))
    monkeypatch.chdir(tmp_path)  # any folder: the files are Chainer's
    code, out, err = predict(capsys, '--top', '1')
    assert code == 0, err
    assert os.path.exists(os.path.join(folder, 'googlenet.model'))
    assert 'converting' in err and LINE.match(out.splitlines()[1])
    assert list(tmp_path.iterdir()) == []
    # The caffemodel removed once converted, its conversion still serves.
    os.unlink(os.path.join(folder, 'bvlc_googlenet.caffemodel'))
    assert predict(capsys, '--top', '1') == (0, out, '')


def test_first_run_downloads_when_there_is_no_caffemodel(
        capsys, tmp_path, monkeypatch, caffemodels, server, dataset_root):
    import hashlib
    body = open(caffemodels['v1'], 'rb').read()
    server.routes['/bvlc_googlenet.caffemodel'] = body
    monkeypatch.setenv('GOOGLENET_CAFFEMODEL_URL',
                       server.url('/bvlc_googlenet.caffemodel'))
    monkeypatch.setenv('GOOGLENET_CAFFEMODEL_SHA1',
                       hashlib.sha1(body).hexdigest())
    monkeypatch.chdir(tmp_path)
    code, out, err = predict(capsys, '--top', '1')
    assert code == 0, err
    folder = models_folder(dataset_root)
    with open(os.path.join(folder, 'bvlc_googlenet.caffemodel'), 'rb') as f:
        assert f.read() == body
    assert sorted(os.listdir(folder)) == [
        'bvlc_googlenet.caffemodel', 'googlenet.model']
    assert list(tmp_path.iterdir()) == []


def test_explicit_paths_win_over_chainers_folder(capsys, tmp_path,
                                                 caffemodels, dataset_root,
                                                 monkeypatch):
    model = tmp_path / 'mine.model'
    code, _, err = predict(capsys, '--model', str(model))
    assert code == 1 and 'model file not found: {}'.format(model) in err
    caffemodel = tmp_path / 'copy.caffemodel'
    os.symlink(caffemodels['v1'], caffemodel)
    code, _, err = predict(capsys, '--caffemodel', str(caffemodel), '--top',
                           '1')
    assert code == 0, err
    assert 'converting {}'.format(caffemodel) in err
    folder = models_folder(dataset_root)
    assert os.listdir(folder) == ['googlenet.model']
    # Without --caffemodel, that conversion is not taken for BVLC's: the
    # default caffemodel is downloaded (here, from nowhere).
    monkeypatch.setenv('GOOGLENET_CAFFEMODEL_URL', 'http://127.0.0.1:{}/x'
                       .format(closed_port()))
    monkeypatch.setenv('GOOGLENET_CAFFEMODEL_MIRRORS', '')
    code, out, err = predict(capsys, '--top', '1')
    default = os.path.join(folder, 'bvlc_googlenet.caffemodel')
    assert (code, out) == (1, '')
    model = os.path.join(folder, 'googlenet.model')
    assert err.startswith('{} was converted from {}, not from {}: converting '
                          '{}\n'.format(model, caffemodel, default, default))
    assert 'Ways out: put a copy of bvlc_googlenet.caffemodel' in err


def test_first_run_with_the_host_down_says_what_to_do(capsys, tmp_path,
                                                      monkeypatch,
                                                      dataset_root):
    url = 'http://127.0.0.1:{}/x'.format(closed_port())
    monkeypatch.setenv('GOOGLENET_CAFFEMODEL_URL', url)
    monkeypatch.delenv('GOOGLENET_CAFFEMODEL_SHA1', raising=False)
    monkeypatch.chdir(tmp_path)
    code, out, err = predict(capsys)
    assert code == 1 and out == ''
    last = err.splitlines()[-1]
    assert last.startswith('error: {}: cannot reach 127.0.0.1'.format(url))
    path = os.path.join(models_folder(dataset_root),
                        'bvlc_googlenet.caffemodel')
    # The ways out, in the one line, naming no option the command used
    # (`make predict`) cannot take.
    assert 'put a copy of bvlc_googlenet.caffemodel' in last
    assert 'at {}'.format(path) in last
    assert '--' not in last
    assert 'GOOGLENET_CAFFEMODEL_URL' in last
    assert 'GOOGLENET_CAFFEMODEL_SHA1' in last
    assert os.listdir(models_folder(dataset_root)) == []
    assert list(tmp_path.iterdir()) == []


@without_cupy
def test_gpu_without_cupy_says_so(capsys, model_1000):
    code, out, err = predict(capsys, '--model', model_1000, '-g', '0')
    assert code == 1 and out == ''
    assert err.startswith('error: device @cupy:0 needs CuPy') and err.count(
        '\n') == 1
    code, out, err = predict(capsys, '--model', model_1000, '-d', '@cupy:1')
    assert code == 1 and err.startswith('error: device @cupy:1 needs CuPy')


def test_probabilities_agree_with_numpy_1_26(model_1000):
    """The sample photo's probabilities on this interpreter's numpy are
    those that numpy 1.26 gave (tools/reference_probabilities.py), to
    float32 rounding: a numpy release that changed the arithmetic, not
    only its rounding, moves them by far more."""
    with open(REFERENCE) as f:
        reference = json.load(f)
    assert reference['numpy'].startswith('1.26.')
    for crops, options in CROPS.items():
        expected = reference[crops]
        assert max(expected) > 0.5  # a clear first class, not a flat one
        assert_probabilities_close(
            photo_probabilities(model_1000, *options), expected)


def test_missing_model_file(capsys, tmp_path):
    code, _, err = predict(capsys, '--model', str(tmp_path / 'x.model'))
    assert code == 1 and err.startswith('error: model file not found')


def test_unreadable_model_file(capsys, tmp_path):
    path = tmp_path / 'x.model'
    path.write_bytes(b'garbage')
    code, _, err = predict(capsys, '--model', str(path))
    assert code == 1 and err.startswith('error: cannot read model file')
    assert err.count('\n') == 1


def test_a_blank_or_cut_short_image_is_refused_not_classified(
        capsys, tmp_path, model_1000):
    """Nothing to classify: the network would still name a class with
    confidence, for a black frame as for the grey that a JPEG cut short
    (and closed with an EOI marker, so that it decodes without error)
    leaves below the cut."""
    noise = numpy.random.RandomState(0).randint(0, 256, (96, 80, 3))
    noise = noise.astype(numpy.uint8)
    inputs = {
        'black.png': _png_of(numpy.zeros((20, 30, 3), numpy.uint8)),
        'ok.jpg': jpeg_bytes(noise),
        'flat.png': _png_of(numpy.full((20, 30), 77, numpy.uint8))}
    for subsampling in (0, 2):  # 8 and 16 rows per MCU row
        whole = jpeg_bytes(noise, subsampling=subsampling)
        inputs['cut{}.jpg'.format(subsampling)] = (
            whole[:len(whole) * 6 // 10] + b'\xff\xd9')
    for name, data in inputs.items():
        (tmp_path / name).write_bytes(data)
    code, out, err = predict(capsys, '--model', model_1000, '--json',
                             *[str(tmp_path / name) for name in inputs])
    assert code == 1
    errors = {json.loads(line)['input']: json.loads(line).get('error')
              for line in out.splitlines()}
    cut = re.compile(r'truncated image, or one that really ends in flat '
                     r'grey: its rows from \d+ on are exactly the grey a JPEG '
                     r'decoder fills in for missing data \(save such a '
                     r'picture as PNG to classify it\)$')
    assert cut.match(errors.pop(str(tmp_path / 'cut0.jpg')))
    assert cut.match(errors.pop(str(tmp_path / 'cut2.jpg')))
    assert errors == {
        str(tmp_path / 'black.png'): 'one colour throughout (RGB 0, 0, 0): '
                                     'nothing to classify',
        str(tmp_path / 'ok.jpg'): None,
        str(tmp_path / 'flat.png'): 'one colour throughout (RGB 77, 77, '
                                    '77): nothing to classify'}
    assert err.count('\n') == 4


def test_each_bad_input_is_reported_and_the_rest_classified(
        capsys, tmp_path, server, model_1000, monkeypatch):
    jpeg = png_bytes(fmt='JPEG', size=(50, 50))
    server.routes.update({
        '/ok.png': png_bytes(),
        '/missing.png': (404, {}, b'no'),
        '/error.png': (500, {}, b'boom'),
        '/text.png': (200, {'Content-Type': 'text/html'}, b'<html></html>'),
        '/truncated.jpg': jpeg[:len(jpeg) // 2],
        '/big.png': png_bytes(size=(600, 600)) + b'\0' * 5000,
        '/slow.png': stall(3, png_bytes()),
        '/cut.png': cut_off_after(png_bytes() + b'\0' * 3000, 100),
    })
    empty = tmp_path / 'empty'
    empty.mkdir()
    bomb = tmp_path / 'bomb.png'
    Image.new('RGB', (120, 120)).save(bomb)
    good = tmp_path / 'good.png'
    good.write_bytes(png_bytes())
    argv = ['--model', model_1000, '--json', '--timeout', '1',
            '--max-bytes', '4000', '--max-pixels', '3000', str(good),
            str(tmp_path / 'nope.jpg'), str(empty), str(bomb)]
    for path in ['/ok.png', '/missing.png', '/error.png', '/text.png',
                 '/truncated.jpg', '/big.png', '/slow.png', '/cut.png']:
        argv += ['-u', server.url(path)]
    argv += ['-u', 'ftp://127.0.0.1/x.png', '-u',
             'http://127.0.0.1:{}/x.png'.format(closed_port())]
    code, out, err = predict(capsys, *argv)
    assert code == 1
    records = [json.loads(line) for line in out.splitlines()]
    done = [r['input'] for r in records if 'predictions' in r]
    assert sorted(done) == sorted([server.url('/ok.png'), str(good)])
    reasons = {}
    for line in err.splitlines():
        assert line.startswith('error: '), line
        name, reason = line[len('error: '):].split(': ', 1)
        reasons[name] = reason
    # --json: every input once, in order, a failed one with its error.
    assert len(records) == 14
    assert {r['input']: r['error'] for r in records if 'error' in r} == (
        reasons)
    u = server.url
    assert reasons[str(tmp_path / 'nope.jpg')] == 'no such file'
    assert reasons[str(empty)] == 'folder without images'
    assert reasons[str(bomb)].startswith('larger than the pixel limit')
    assert reasons[u('/missing.png')] == 'HTTP 404 Not Found'
    assert reasons[u('/error.png')].startswith('HTTP 500')
    assert reasons[u('/text.png')] == ('the server sent an HTML page, not '
                                       'an image')
    assert reasons[u('/truncated.jpg')] == 'truncated image'
    assert reasons[u('/big.png')].startswith('larger than the download limit')
    assert 'timed out' in reasons[u('/slow.png')]
    assert reasons[u('/cut.png')].startswith('the download broke off')
    assert "unsupported URL scheme 'ftp'" in reasons['ftp://127.0.0.1/x.png']
    assert reasons[argv[-1]].startswith('cannot reach 127.0.0.1')
    assert len(reasons) == 12


def test_a_fifo_is_refused_or_passed_over_never_waited_for(
        capsys, tmp_path, model_1000):
    folder = tmp_path / 'odd'
    folder.mkdir()
    os.mkfifo(str(folder / 'fifo.jpg'))
    (folder / 'a.png').write_bytes(png_bytes())
    code, out, err = predict(capsys, '--model', model_1000, '--json',
                             str(folder), str(folder / 'fifo.jpg'))
    assert code == 1
    assert [json.loads(line)['input'] for line in out.splitlines()] == [
        str(folder / 'a.png'), str(folder / 'fifo.jpg')]
    assert err == 'error: {}: not a regular file (a FIFO, device or ' \
        'socket)\n'.format(folder / 'fifo.jpg')


@pytest.mark.parametrize('value', ['-1', '0', 'nan'])
def test_timeout_must_be_positive(capsys, value):
    with pytest.raises(SystemExit) as exit:
        googlenet_predict.main(['--timeout', value, '-u', 'http://x/y.jpg'])
    assert exit.value.code == 2
    assert 'expected a positive number' in capsys.readouterr().err


def test_a_reader_that_goes_away_stops_it_quietly(tmp_path, named_model):
    for i in range(30):  # the reader leaves long before the last
        (tmp_path / 'p{:02}.png'.format(i)).write_bytes(png_bytes())
    process = subprocess.Popen(
        [sys.executable, googlenet_predict.__file__, '--model',
         named_model, '--json', '-b', '2', str(tmp_path)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    first = process.stdout.readline()  # as `| head -1`
    process.stdout.close()
    err = process.stderr.read()
    assert process.wait(timeout=120) == 141
    assert json.loads(first)['input'].endswith('p00.png')
    assert err == b''


def test_a_model_that_is_a_folder_or_device_is_named_so(capsys, tmp_path):
    for model in (str(tmp_path), '/dev/null'):
        code, out, err = predict(capsys, '--model', model)
        assert (code, out) == (1, '')
        assert err == 'error: model file {} is a folder or a device, not a ' \
            'file\n'.format(model)


def test_16_bit_and_float_give_the_8_bit_probabilities(capsys, tmp_path,
                                                       model_1000):
    write_pixel_formats(tmp_path)
    names = ['grey8.png', 'grey16.png', 'float01.tif']
    code = googlenet_predict.main(
        ['--model', model_1000, '--json', '--top', '1000']
        + [str(tmp_path / name) for name in names])
    out, err = capsys.readouterr()
    assert code == 0, err
    probs = [[p['probability'] for p in sorted(
        json.loads(line)['predictions'], key=lambda p: p['index'])]
        for line in out.splitlines()]
    assert len(probs) == 3
    assert_probabilities_close(probs[1], probs[0])
    assert_probabilities_close(probs[2], probs[0])


def test_pixel_limit_is_an_option_and_still_refuses_a_bomb(capsys, tmp_path,
                                                           model_1000):
    bomb = write_png(tmp_path / 'bomb.png', numpy.zeros((1, 20000), 'u1'),
                     8, 0, width=20000, height=20000)  # declares 400 MP
    small = tmp_path / 'small.png'
    Image.fromarray(PHOTO).save(small)  # 2000 pixels
    code = googlenet_predict.main(['--model', model_1000, '--top', '1',
                                   bomb, str(small)])
    out, err = capsys.readouterr()
    assert code == 1 and out.splitlines()[0] == str(small)
    assert err == ('error: {}: larger than the pixel limit (400000000 pixels'
                   ' > 200000000; --max-pixels raises it)\n'.format(bomb))
    code = googlenet_predict.main(['--model', model_1000, '--max-pixels',
                                   '1999', str(small)])
    out, err = capsys.readouterr()
    assert code == 1 and out == ''
    assert '(2000 pixels > 1999; --max-pixels raises it)' in err
    # Pillow's own limit is left as it was.
    assert Image.MAX_IMAGE_PIXELS == 89478485


def test_a_108_megapixel_photo_is_classified_in_under_1_5_gb(tmp_path,
                                                             model_1000):
    photo = str(tmp_path / 'phone_108mp.jpg')
    two_tone((120, 90, 60), (12000, 9000)).save(photo, quality=80)
    child = ('import resource, sys, googlenet_predict;'
             'code = googlenet_predict.main(sys.argv[1:]);'
             'print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,'
             ' file=sys.stderr); sys.exit(code)')
    done = subprocess.run(
        [sys.executable, '-c', child, '--model', model_1000, '--top', '1',
         photo], capture_output=True, text=True, timeout=300,
        cwd=os.path.dirname(googlenet_predict.__file__))
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0] == photo
    peak_kb = int(done.stderr.split()[-1])
    assert peak_kb < 1.5e6, peak_kb


def test_predict_reads_every_image_file_pillow_opens(capsys, tmp_path,
                                                     model_1000):
    for name in ('a.jfif', 'b.mpo', 'c.png', '._c.png', '.hidden.png'):
        Image.fromarray(PHOTO).save(tmp_path / name,
                                    'PNG' if name.endswith('png') else 'JPEG')
    (tmp_path / 'notes.txt').write_text('x')
    code = googlenet_predict.main(['--model', model_1000, '--json', '--top',
                                   '1', str(tmp_path)])
    out, err = capsys.readouterr()
    assert code == 0 and err == ''
    assert [json.loads(line)['input'] for line in out.splitlines()] == [
        str(tmp_path / name) for name in ('a.jfif', 'b.mpo', 'c.png')]


def test_prediction_prints_undecodable_names_on_a_strict_terminal(
        capsys, tmp_path, model_1000):
    folder = os.path.join(os.fsencode(str(tmp_path)), b'caf\xe9')
    os.mkdir(folder)
    Image.fromarray(PHOTO).save(os.path.join(folder, b'r\xe9sum\xe9.png'))
    env = dict(os.environ, PYTHONIOENCODING='utf-8:strict')
    done = subprocess.run(
        [sys.executable, googlenet_predict.__file__, '--model', model_1000,
         '--top', '1', os.fsdecode(folder),
         os.fsdecode(folder) + '/missing.png'],
        capture_output=True, env=env, timeout=120)
    out, err = done.stdout.decode(), done.stderr.decode()
    assert done.returncode == 1 and 'Traceback' not in err, err
    shown = str(tmp_path / 'caf\\xe9')
    assert err == 'error: {}/missing.png: no such file\n'.format(shown)
    assert out.splitlines()[0] == shown + '/r\\xe9sum\\xe9.png'
    code = googlenet_predict.main(['--model', model_1000, '--json',
                                   os.fsdecode(folder)])
    assert code == 0 and json.loads(capsys.readouterr().out)['input'] == (
        shown + '/r\\xe9sum\\xe9.png')


def test_a_name_the_terminal_cannot_print_is_escaped(tmp_path,
                                                    model_1000):
    Image.fromarray(PHOTO).save(tmp_path / '\u732b.png')
    env = dict(os.environ, PYTHONIOENCODING='ascii:strict')
    done = subprocess.run(
        [sys.executable, googlenet_predict.__file__, '--model', model_1000,
         '--top', '1', str(tmp_path)],
        capture_output=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr.decode()
    assert done.stderr == b''
    assert done.stdout.decode('ascii').splitlines()[0] == str(
        tmp_path / '\\u732b.png')


def test_every_argument_after_a_double_dash_is_a_file(capsys, tmp_path,
                                                     monkeypatch,
                                                     model_1000):
    monkeypatch.chdir(tmp_path)
    for name in ('-dash.png', '-x.png', '--top'):
        Image.fromarray(PHOTO).save(tmp_path / name, 'PNG')
    code, out, err = predict(capsys, '--model', model_1000, '--top', '1',
                             '--json', '--', '-dash.png', '-x.png', '--top')
    assert (code, err) == (0, '')
    assert [json.loads(line)['input'] for line in out.splitlines()] == [
        '-dash.png', '-x.png', '--top']


def predict_errors(capsys, model, *urls, timeout=30):
    argv = ['--model', model, '--timeout', str(timeout)]
    for url in urls:
        argv += ['-u', url]
    code = googlenet_predict.main(argv)
    out, err = capsys.readouterr()
    assert 'Traceback' not in err
    return code, out, err


def test_two_first_runs_at_once_download_once_and_both_succeed(
        tmp_path, caffemodels, server, dataset_root):
    body = open(caffemodels['v1'], 'rb').read()
    sha1 = hashlib.sha1(body).hexdigest()
    gate = threading.Event()
    server.routes['/m'] = slowly(body, pieces=20, interval=0.02, gate=gate)
    env = dict(os.environ, GOOGLENET_CAFFEMODEL_URL=server.url('/m'),
               GOOGLENET_CAFFEMODEL_SHA1=sha1,
               CHAINER_DATASET_ROOT=dataset_root)
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


def test_predict_takes_the_device_option(model_1000, dataset, capsys):
    image = os.path.join(dataset, 'red', '0.png')
    assert googlenet_predict.main(['--model', model_1000, '-d', '@bogus',
                                   image]) == 1
    assert 'not a Chainer device' in one_error_line(capsys)
    assert googlenet_predict.main(['--model', model_1000, '-g', '-1',
                                   image]) == 0
    assert googlenet_predict.main(['--model', model_1000, '--device',
                                   '@numpy', image]) == 0


def test_prediction_with_a_model_imports_no_dead_weight(model_1000):
    # What a run that classifies with an existing model never uses, and
    # whose imports would lengthen every start-up: downloads, plots,
    # progress bars, the caffemodel reader.
    code = ('import sys, googlenet_predict\n'
            'code = googlenet_predict.main(sys.argv[1:])\n'
            'print(sorted({"requests", "matplotlib", "tqdm", "asyncio",'
            ' "google.protobuf", "caffe_pb2"} & set(sys.modules)), code)')
    out = subprocess.run(
        [sys.executable, '-c', code, '--model', model_1000, '--top', '1',
         os.path.join(ROOT, 'sample_images', 'cat.png')],
        capture_output=True, text=True, cwd=ROOT, check=True).stdout
    assert out.splitlines()[-1] == '[] 0'


def test_ctrl_c_while_an_image_is_prepared_ahead(model_1000, server):
    """The prefetching thread, stuck in a download, neither hides the
    interrupt nor holds up the exit."""
    reached, released = threading.Event(), threading.Event()

    def stuck(handler):
        reached.set()
        released.wait(600)  # until the test ends
    server.routes['/stuck.png'] = stuck
    process = subprocess.Popen(
        [sys.executable, 'googlenet_predict.py', '--model', model_1000,
         '--timeout', '600', '-u', server.url('/stuck.png')],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        # A job started in the background of a script inherits SIGINT
        # ignored, and Python then keeps ignoring it: a user's Ctrl-C is
        # what is tested, so the child gets the default disposition.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        assert reached.wait(300)
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=60)
    finally:
        process.kill()
        released.set()
    assert process.returncode == 130, err
    assert err.strip().splitlines() == ['interrupted']


def _ten_classes(net):
    layer, = [l for l in net.layer if l.name == 'loss3/classifier']
    w, b = layer.blobs
    del w.data[10 * 1024:]
    w.shape.dim[0] = 10
    del b.data[10:]
    b.shape.dim[0] = 10


def test_a_model_file_with_non_finite_weights_is_refused_at_load(
        tmp_path, capsys, model_1000):
    model, _ = model_file.load_model(model_1000)
    model.inc4c.conv3.b.array[5] = numpy.nan
    path = str(tmp_path / 'nan.model')
    model_file.save_model(path, model)
    with pytest.raises(errors.UserError,
                       match='holds NaN or infinite values in '
                       '/inc4c/conv3/b'):
        model_file.load_model(path)
    import googlenet_predict
    assert googlenet_predict.main(['--model', path, '--json']) == 1
    out, err = capsys.readouterr()
    assert out == '' and err.startswith('error: model file {}'.format(path))


@pytest.mark.parametrize('edit, expected', [
    (drop_classifier, 'loss3/classifier is missing from the caffemodel'),
    (_ten_classes, 'loss3/classifier has shape (10, 1024)')])
def test_the_first_run_refuses_a_caffemodel_without_imagenets_classifier(
        tmp_path, capsys, caffemodels, dataset_root, edit, expected):
    import googlenet_predict
    path = edited_caffemodel(caffemodels['v2'],
                             tmp_path / 'headless.caffemodel', edit)
    assert googlenet_predict.main(['--caffemodel', str(path)]) == 1
    out, err = capsys.readouterr()
    assert out == ''
    last = err.splitlines()[-1]
    assert last.startswith('error: head layer ' + expected)
    assert 'a 1000-class model for prediction needs it' in last
    folder = os.path.join(dataset_root, 'pfnet', 'chainer', 'models')
    assert os.listdir(folder) == []  # no random classifier cached


def test_a_cached_conversion_serves_only_its_own_caffemodel(
        capsys, tmp_path, caffemodels, dataset_root):
    import shutil

    import caffe_fixtures
    default = os.path.join(models_folder(dataset_root),
                           'bvlc_googlenet.caffemodel')
    os.makedirs(os.path.dirname(default))
    shutil.copy(caffemodels['v1'], default)
    code, first, err = predict(capsys, '--top', '3', '--json')
    assert code == 0 and 'no model at' in err
    other = str(tmp_path / 'other.caffemodel')
    caffe_fixtures.write_caffemodel(other, caffe_fixtures.random_weights(1),
                                    'v2')
    # Another caffemodel: converted, its own classes printed.
    code, second, err = predict(capsys, '--caffemodel', other, '--top', '3',
                                '--json')
    assert code == 0 and 'was converted from another caffemodel: ' \
        'converting {}'.format(other) in err
    assert second != first
    # The same bytes elsewhere are the same caffemodel: nothing converted.
    copy = str(tmp_path / 'copy.caffemodel')
    shutil.copy(other, copy)
    assert predict(capsys, '--caffemodel', copy, '--top', '3',
                   '--json') == (0, second, '')
    # A caffemodel named but missing is refused, not passed over.
    assert predict(capsys, '--caffemodel', str(tmp_path / 'gone')) == (
        1, '', 'error: caffemodel not found: {}\n'.format(tmp_path / 'gone'))
    # Back to the default caffemodel: converted again.
    code, again, err = predict(capsys, '--top', '3', '--json')
    assert code == 0 and 'converting {}'.format(default) in err
    assert again == first
    # Edited in place, its size and modification time kept (as exiftool -P
    # keeps them): told apart by its content, converted again.
    info = os.stat(default)
    caffe_fixtures.write_caffemodel(default, caffe_fixtures.random_weights(
        1), 'v1')
    assert os.path.getsize(default) == info.st_size
    os.utime(default, ns=(info.st_atime_ns, info.st_mtime_ns))
    code, edited, err = predict(capsys, '--top', '3', '--json')
    assert code == 0 and 'converting {}'.format(default) in err
    assert edited == second


def test_a_urls_user_and_password_are_neither_printed_nor_kept(
        capsys, tmp_path, server, model_1000):
    server.routes['/a.png'] = png_bytes()
    good, bad = (server.url(path).replace('http://', 'http://me:pa55@')
                 for path in ('/a.png', '/gone.png'))
    table = tmp_path / 'r.csv'
    code, out, err = predict(capsys, '--model', model_1000, '--json',
                             '--csv', str(table), '-u', good, '-u', bad)
    assert code == 1
    assert 'pa55' not in out + err + table.read_text()
    shown = [json.loads(line)['input'] for line in out.splitlines()]
    assert shown == [server.url(path).replace('http://', 'http://***@')
                     for path in ('/a.png', '/gone.png')]
    assert err == 'error: {}: HTTP 404 Not Found\n'.format(shown[1])
