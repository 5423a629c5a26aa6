import io
import json
import os
import re
import subprocess
import sys
import warnings

import numpy
import pytest
from PIL import Image

import googlenet_caffe
import googlenet_data
import googlenet_io
import googlenet_predict
import tuned_googlenet
from http_fixtures import closed_port, cut_off_after, stall
from image_fixtures import two_tone
from numeric import assert_probabilities_close

LINE = re.compile(r'^ {0,2}\d{1,3} +\d{1,3}\.\d\d% n\d{8} \S')


def png_bytes(color=(200, 30, 30), size=(40, 30), mode='RGB', fmt='PNG'):
    buf = io.BytesIO()
    two_tone(color, size, mode).save(buf, fmt)
    return buf.getvalue()


def run(capsys, *argv):
    code = googlenet_predict.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def five_class_model(tmp_path, caffemodels):
    """A 5-class model carrying the class names a training run stores."""
    path = str(tmp_path / 'tuned.model')
    model = googlenet_caffe.convert(caffemodels['v1'], path, n_classes=5,
                                        log=lambda line: None)
    tuned_googlenet.save_model(path, model,
                               ['ant', 'bee', 'cat', 'dog', 'eel'])
    return path


def test_default_classifies_the_sample_photo_as_a_table(capsys, model_1000):
    code, out, err = run(capsys, '--model', model_1000)
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].endswith('sample_images/cat.png')
    assert len(lines) == 11
    assert all(LINE.match(line) for line in lines[1:]), lines
    percents = [float(line.split()[1][:-1]) for line in lines[1:]]
    assert percents == sorted(percents, reverse=True)
    labels = googlenet_io.read_labels(googlenet_data.SYNSET_WORDS)
    assert lines[1].split('% ', 1)[1] in labels


def test_synset_words_is_caffes_list():
    labels = googlenet_io.read_labels(googlenet_data.SYNSET_WORDS)
    assert len(labels) == 1000
    assert labels[0] == 'n01440764 tench, Tinca tinca'
    assert labels[281] == 'n02123045 tabby, tabby cat'
    wnids = [line.split()[0] for line in labels]
    assert wnids == sorted(wnids) and len(set(wnids)) == 1000


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
    code, out, err = run(capsys, '--model', model_1000, str(single), '-u',
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
        assert first['label'].startswith('n') and 0 <= first['index'] < 1000


def test_batching_does_not_change_results(capsys, tmp_path, model_1000):
    paths = []
    for i, color in enumerate([(250, 0, 0), (0, 250, 0), (0, 0, 250)]):
        paths.append(str(tmp_path / '{}.png'.format(i)))
        two_tone(color, (50, 60)).save(paths[-1])
    _, one, _ = run(capsys, '--model', model_1000, '--json', '-b', '1',
                    *paths)
    _, three, _ = run(capsys, '--model', model_1000, '--json', '-b', '3',
                      *paths)
    for a, b in zip(one.splitlines(), three.splitlines()):
        a, b = json.loads(a), json.loads(b)
        assert [p['index'] for p in a['predictions']] == [
            p['index'] for p in b['predictions']]
        assert_probabilities_close(
            [p['probability'] for p in a['predictions']],
            [p['probability'] for p in b['predictions']])


def test_oversample_averages_caffes_ten_crops(capsys, model_1000):
    code, out, err = run(capsys, '--model', model_1000, '--json',
                         '--oversample', '--top', '1000')
    assert code == 0, err
    got = {p['index']: p['probability']
           for p in json.loads(out)['predictions']}
    model, _ = tuned_googlenet.load_model(model_1000)
    image = googlenet_io.open_image(googlenet_predict.SAMPLE_IMAGE)
    crops = googlenet_io.ten_crops(image)
    assert crops.shape == (10, 3, 224, 224)
    expected = model.predict(crops).mean(axis=0)
    assert_probabilities_close([got[i] for i in range(1000)], expected)


# --- preprocessing: Caffe's reference, exactly ----------------------------

def test_solid_colour_becomes_bgr_minus_mean():
    x = googlenet_io.preprocess(Image.new('RGB', (300, 200), (10, 20, 30)))
    assert x.shape == (3, 224, 224) and x.dtype == numpy.float32
    assert numpy.array_equal(x[:, 5, 7], [30 - 104, 20 - 117, 10 - 123])
    assert numpy.all(x == x[:, :1, :1])


def test_grey_is_replicated_and_alpha_dropped(tmp_path):
    two_tone(90, (64, 64), 'L').save(tmp_path / 'grey.png')
    grey = googlenet_io.preprocess(
        googlenet_io.open_image(str(tmp_path / 'grey.png')))
    assert numpy.array_equal(grey[:, 0, 0], [90 - 104, 90 - 117, 90 - 123])
    path = tmp_path / 'rgba.png'
    two_tone((10, 20, 30, 0), (64, 64), 'RGBA').save(path)
    rgba = googlenet_io.preprocess(googlenet_io.open_image(str(path)))
    assert numpy.array_equal(rgba[:, 0, 0], [30 - 104, 20 - 117, 10 - 123])


def _position_image():
    """256x256, so the resize keeps every pixel: R = column, G = row."""
    cols, rows = numpy.meshgrid(numpy.arange(256), numpy.arange(256))
    array = numpy.stack([cols, rows, numpy.zeros_like(cols)], -1)
    return Image.fromarray(array.astype(numpy.uint8))


def test_centre_crop_starts_at_16():
    x = googlenet_io.preprocess(_position_image())
    assert x[2, 0, 0] == 16 - 123 and x[1, 0, 0] == 16 - 117  # R, G
    assert x[2, 0, 223] == 239 - 123 and x[1, 223, 0] == 239 - 117


def test_ten_crops_are_corners_centre_and_mirrors():
    crops = googlenet_io.ten_crops(_position_image())
    starts = [(c[1, 0, 0] + 117, c[2, 0, 0] + 123) for c in crops]
    assert starts[:5] == [(0, 0), (0, 32), (32, 0), (32, 32), (16, 16)]
    # Mirrored crops read the same window from its right edge.
    assert starts[5:] == [(0, 223), (0, 255), (32, 223), (32, 255),
                          (16, 239)]
    assert numpy.array_equal(crops[5], crops[0][:, :, ::-1])


def test_resize_is_pillow_bilinear_to_256():
    image = Image.fromarray(numpy.random.RandomState(0).randint(
        0, 256, (300, 400, 3)).astype(numpy.uint8))
    expected = numpy.asarray(image.resize((256, 256), Image.BILINEAR),
                             dtype=numpy.float32)
    x = googlenet_io.preprocess(image)
    assert numpy.array_equal(x[0], expected[16:240, 16:240, 2] - 104)


def test_exif_orientation_is_applied(tmp_path):
    # Stored 40x20 with the left half red; orientation 6 means the viewer
    # rotates it 90 degrees clockwise, so red ends up on top.
    array = numpy.zeros((20, 40, 3), numpy.uint8)
    array[:, :20] = (255, 0, 0)
    array[:, 20:] = (0, 0, 255)
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / 'rotated.jpg'
    Image.fromarray(array).save(path, exif=exif, quality=95)
    image = googlenet_io.open_image(str(path))
    assert image.size == (20, 40)
    top, bottom = image.getpixel((10, 5)), image.getpixel((10, 35))
    assert top[0] > 200 and top[2] < 50 and bottom[2] > 200


def test_corrupt_exif_is_passed_over_quietly(capsys, tmp_path,
                                             five_class_model):
    # An orientation tag whose value runs past the end of the EXIF block:
    # Pillow warns (two lines of its source) and reads the pixels.
    exif = (b'Exif\x00\x00II*\x00\x08\x00\x00\x00\x05\x00\x12\x01\x03'
            b'\x00\x01\x00\x00\x00\x06\x00\x00\x00\xff\xff\x04\x00\x01')
    path = tmp_path / 'exif.jpg'
    Image.fromarray(numpy.random.RandomState(0).randint(
        0, 256, (32, 32, 3)).astype(numpy.uint8)).save(path, exif=exif)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter('always')
        code, out, err = run(capsys, '--model', five_class_model, str(path))
    assert (code, err) == (0, '')
    assert out.startswith(str(path))
    assert [str(w.message) for w in seen] == []


# --- class names ------------------------------------------------------------

def test_fine_tuned_model_prints_its_stored_names(capsys, five_class_model):
    code, out, err = run(capsys, '--model', five_class_model, '--top', '5')
    assert code == 0, err
    names = sorted(line.split('% ')[1] for line in out.splitlines()[1:])
    assert names == ['ant', 'bee', 'cat', 'dog', 'eel']


def test_label_file_overrides(capsys, tmp_path, five_class_model):
    labels = tmp_path / 'labels.txt'
    labels.write_text('one\ntwo\nthree\nfour\nfive\n')
    code, out, _ = run(capsys, '--model', five_class_model, '--json',
                       '--labels', str(labels))
    assert code == 0
    got = {p['label'] for p in json.loads(out)['predictions']}
    assert got == {'one', 'two', 'three', 'four', 'five'}


@pytest.mark.parametrize('text, message', [
    ('one\ntwo\n', '{} has 2 labels but the model has 5 classes'),
    ('one\ntwo\nthree\nfour\n two\n',
     'label file {}: two is on lines 2 and 5; class names must differ')])
def test_label_file_of_the_wrong_length_or_a_duplicate_is_refused(
        capsys, tmp_path, five_class_model, text, message):
    labels = tmp_path / 'labels.txt'
    labels.write_text(text)
    code, out, err = run(capsys, '--model', five_class_model, '--labels',
                         str(labels))
    assert code == 1 and out == ''
    assert err == 'error: ' + message.format(labels) + '\n'


# --- the first run ----------------------------------------------------------

def models_folder(root):
    return os.path.join(root, 'pfnet', 'chainer', 'models')


def test_first_run_converts_the_caffemodel_it_finds(capsys, tmp_path,
                                                    monkeypatch, caffemodels,
                                                    dataset_root):
    folder = models_folder(dataset_root)
    os.makedirs(folder)
    os.symlink(caffemodels['v2'],
               os.path.join(folder, 'bvlc_googlenet.caffemodel'))
    monkeypatch.chdir(tmp_path)  # any folder: the files are Chainer's
    code, out, err = run(capsys, '--top', '1')
    assert code == 0, err
    assert os.path.exists(os.path.join(folder, 'googlenet.model'))
    assert 'converting' in err and LINE.match(out.splitlines()[1])
    assert list(tmp_path.iterdir()) == []


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
    code, out, err = run(capsys, '--top', '1')
    assert code == 0, err
    folder = models_folder(dataset_root)
    with open(os.path.join(folder, 'bvlc_googlenet.caffemodel'), 'rb') as f:
        assert f.read() == body
    assert sorted(os.listdir(folder)) == [
        'bvlc_googlenet.caffemodel', 'googlenet.model']
    assert list(tmp_path.iterdir()) == []


def test_explicit_paths_win_over_chainers_folder(capsys, tmp_path,
                                                 caffemodels, dataset_root):
    model = tmp_path / 'mine.model'
    code, _, err = run(capsys, '--model', str(model))
    assert code == 1 and 'model file not found: {}'.format(model) in err
    caffemodel = tmp_path / 'copy.caffemodel'
    os.symlink(caffemodels['v1'], caffemodel)
    code, _, err = run(capsys, '--caffemodel', str(caffemodel), '--top', '1')
    assert code == 0, err
    assert 'converting {}'.format(caffemodel) in err
    assert os.listdir(models_folder(dataset_root)) == ['googlenet.model']


def test_first_run_with_the_host_down_says_what_to_do(capsys, tmp_path,
                                                      monkeypatch,
                                                      dataset_root):
    monkeypatch.setenv('GOOGLENET_CAFFEMODEL_URL',
                       'http://127.0.0.1:{}/x'.format(closed_port()))
    monkeypatch.delenv('GOOGLENET_CAFFEMODEL_SHA1', raising=False)
    monkeypatch.chdir(tmp_path)
    code, out, err = run(capsys)
    assert code == 1 and out == ''
    last = err.splitlines()[-1]
    assert last.startswith('error: cannot reach 127.0.0.1')
    path = os.path.join(models_folder(dataset_root),
                        'bvlc_googlenet.caffemodel')
    # Issue 15: all three ways out, in the one line.
    assert 'put a copy of bvlc_googlenet.caffemodel' in last
    assert 'at {}'.format(path) in last
    assert '--caffemodel PATH' in last
    assert 'GOOGLENET_CAFFEMODEL_URL' in last
    assert 'GOOGLENET_CAFFEMODEL_SHA1' in last
    assert os.listdir(models_folder(dataset_root)) == []
    assert list(tmp_path.iterdir()) == []


def test_gpu_without_cupy_says_so(capsys, model_1000):
    code, out, err = run(capsys, '--model', model_1000, '-g', '0')
    assert code == 1 and out == ''
    assert err.startswith('error: device @cupy:0 needs CuPy') and err.count(
        '\n') == 1
    code, out, err = run(capsys, '--model', model_1000, '-d', '@cupy:1')
    assert code == 1 and err.startswith('error: device @cupy:1 needs CuPy')


def test_missing_model_file(capsys, tmp_path):
    code, _, err = run(capsys, '--model', str(tmp_path / 'x.model'))
    assert code == 1 and err.startswith('error: model file not found')


def test_unreadable_model_file(capsys, tmp_path):
    path = tmp_path / 'x.model'
    path.write_bytes(b'garbage')
    code, _, err = run(capsys, '--model', str(path))
    assert code == 1 and err.startswith('error: cannot read model file')
    assert err.count('\n') == 1


# --- bad inputs: reported one line each, the rest still classified --------

def _jpeg(array, **options):
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, 'JPEG', quality=90, **options)
    return buf.getvalue()


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
        'ok.jpg': _jpeg(noise),
        'flat.png': _png_of(numpy.full((20, 30), 77, numpy.uint8))}
    for subsampling in (0, 2):  # 8 and 16 rows per MCU row
        whole = _jpeg(noise, subsampling=subsampling)
        inputs['cut{}.jpg'.format(subsampling)] = (
            whole[:len(whole) * 6 // 10] + b'\xff\xd9')
    for name, data in inputs.items():
        (tmp_path / name).write_bytes(data)
    code, out, err = run(capsys, '--model', model_1000, '--json',
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


def test_a_camera_jpeg_with_several_images_cut_short_is_refused():
    # A JPEG with an MPF segment of two images (many cameras write one):
    # Pillow names it MPO.
    noise = numpy.random.RandomState(3).randint(0, 256, (100, 80, 3))
    frames = [Image.fromarray(noise.astype(numpy.uint8)),
              Image.fromarray(noise[::-1].astype(numpy.uint8))]
    buf = io.BytesIO()
    frames[0].save(buf, 'MPO', save_all=True, append_images=frames[1:])
    whole = buf.getvalue()
    assert Image.open(io.BytesIO(whole)).format == 'MPO'
    with pytest.raises(googlenet_io.UserError,
                       match=r'^truncated image, or one that really ends'):
        googlenet_io.open_image(whole[:len(whole) * 3 // 20] + b'\xff\xd9')


@pytest.mark.parametrize('mode, options, height', [
    ('RGB', {'subsampling': 0}, 100), ('RGB', {'subsampling': 2}, 100),
    ('RGB', {'subsampling': 2}, 96), ('L', {}, 100), ('CMYK', {}, 100),
    ('RGB', {'progressive': True}, 100)])
def test_a_jpeg_cut_short_and_closed_is_refused(mode, options, height):
    # Heights that are and are not a whole number of MCU rows (8 or 16); a
    # progressive file cut in its first scan.
    noise = numpy.random.RandomState(1).randint(0, 256, (height, 80, 3))
    image = Image.fromarray(noise.astype(numpy.uint8)).convert(mode)
    buf = io.BytesIO()
    image.save(buf, 'JPEG', quality=90, **options)
    whole = buf.getvalue()
    assert googlenet_io.open_image(whole).size == (80, height)
    first_scan = whole.index(b'\xff\xda')
    cuts = [first_scan + 100] if options.get('progressive') else [
        len(whole) * 3 // 10, len(whole) * 6 // 10]
    for cut in cuts:
        # Pillow itself finds some cuts: 'truncated image' alone.
        with pytest.raises(googlenet_io.UserError,
                           match=r'^truncated image(, or one that really '
                                 r'ends in flat grey: its rows from \d+ on|$)'):
            googlenet_io.open_image(whole[:cut] + b'\xff\xd9')


def test_grey_bands_that_are_content_are_classified(tmp_path):
    """Bands of exactly the decoder's grey that a cut does not make: one
    matched at the top (letterboxing), an image grey throughout (one
    colour, said so), grey that is not the decoder's in every channel. A
    band at the bottom alone is refused, saying it may be content."""
    photo = numpy.random.RandomState(2).randint(0, 256, (100, 80, 3))
    photo = photo.astype(numpy.uint8)
    grey = numpy.full((36, 80, 3), 128, numpy.uint8)
    boxed = numpy.concatenate([grey[:28], photo, grey[:28]])
    for subsampling in (0, 2):
        image = googlenet_io.open_image(_jpeg(boxed, subsampling=subsampling))
        assert image.size == (80, len(boxed))
    with pytest.raises(googlenet_io.UserError,
                       match='or one that really ends in flat grey'):
        googlenet_io.open_image(_jpeg(numpy.concatenate([photo, grey])))
    # 127 is the decoder's grey in Pillow's inverted CMYK only.
    below = numpy.concatenate([photo, grey - 1])
    assert googlenet_io.open_image(_jpeg(below)).size == (80, len(below))
    # Grey that is not the decoder's in every channel is a photo's.
    band = photo[:96].copy()
    band[-8:] = (128, 128, 127)
    assert googlenet_io.open_image(_jpeg(band, subsampling=0)).size == (80,
                                                                        96)
    with pytest.raises(googlenet_io.UserError, match='^one colour'):
        googlenet_io.open_image(_jpeg(numpy.full((64, 64, 3), 128,
                                                 numpy.uint8)))


def test_deep_samples_flat_at_8_bits_and_floats_over_1_say_so(tmp_path):
    deep = numpy.full((20, 30), 30000, numpy.uint16)
    deep[0, 0] = 30001  # one level of 65535: the same 8-bit input
    over = numpy.full((20, 30), 0.5, numpy.float32)
    over[3, 4] = numpy.nextafter(numpy.float32(1), numpy.float32(2))
    for array, name, message in [
            (deep, 'deep.png', 'one colour throughout once read at 8 bits '
             '(RGB 117, 117, 117): nothing to classify'),
            (over, 'over.tif', 'float samples outside 0..1 '
             '(0.5..1.00000012); float images are read as 0..1')]:
        path = str(tmp_path / name)
        Image.fromarray(array).save(path)
        with pytest.raises(googlenet_io.UserError) as e:
            googlenet_io.open_image(path)
        assert str(e.value) == message


def _png_of(array):
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, 'PNG')
    return buf.getvalue()


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
            '--max-bytes', '4000', '--max-pixels', '3000', str(good), str(tmp_path / 'nope.jpg'),
            str(empty), str(bomb)]
    for path in ['/ok.png', '/missing.png', '/error.png', '/text.png',
                 '/truncated.jpg', '/big.png', '/slow.png', '/cut.png']:
        argv += ['-u', server.url(path)]
    argv += ['-u', 'ftp://127.0.0.1/x.png', '-u',
             'http://127.0.0.1:{}/x.png'.format(closed_port())]
    code, out, err = run(capsys, *argv)
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


# --- outputs never replace what they must not; no input blocks -------------

def test_outputs_replace_only_what_they_wrote(capsys, tmp_path, model_1000):
    """`--csv photo1.jpg photo2.jpg` (--csv taken for a switch) and
    `--features train.npy` beside Caffe's train.txt must not cost a file;
    the outputs of an earlier run are replaced."""
    photo = tmp_path / 'photo2.png'
    photo.write_bytes(png_bytes())
    kept = {'photo1.jpg': png_bytes(fmt='JPEG'),
            'notes.npz': b'PK\x03\x04 not ours',
            'train.txt': b'a.jpg 0\nb.jpg 1\n'}
    for name, data in kept.items():
        (tmp_path / name).write_bytes(data)
    for argv, what in [
            (['--csv', 'photo1.jpg'], 'a CSV of results this project wrote'),
            (['--features', 'notes.npz'],
             'a features file this project wrote'),
            (['--features', 'photo1.jpg.npy'], None),
            (['--features', 'train.npy'],
             'the names of the features file {}'.format(
                 tmp_path / 'train.npy'))]:
        if what is None:  # an image renamed .npy
            (tmp_path / 'photo1.jpg.npy').write_bytes(kept['photo1.jpg'])
            what = 'a features file this project wrote'
        option, name = argv
        argv = [option, str(tmp_path / name)]
        code, out, err = run(capsys, '--model', model_1000, *argv,
                             str(photo))
        target = str(tmp_path / name) if not name.endswith('train.npy') \
            else str(tmp_path / 'train.txt')
        assert (code, out) == (1, '')
        assert err == ('error: {} {} exists and is not {}: it is kept; '
                       'choose another file\n'.format(option, target, what))
    for name, data in kept.items():
        assert (tmp_path / name).read_bytes() == data
    # Each output twice: the second run replaces the first one's files
    # (an upper-case .NPY's .txt included).
    for argv in (['--csv', str(tmp_path / 'out.csv')],
                 ['--features', str(tmp_path / 'f.npz')],
                 ['--features', str(tmp_path / 'f.npy')],
                 ['--features', str(tmp_path / 'G.NPY')]):
        for _ in range(2):
            code, out, err = run(capsys, '--model', model_1000, *argv,
                                 str(photo))
            assert code == 0, err
    assert googlenet_predict.features_rows(str(tmp_path / 'f.npy')) == 1
    assert (tmp_path / 'f.txt').read_text() == str(photo) + '\n'
    assert (tmp_path / 'G.txt').read_text() == str(photo) + '\n'
    # Through a link to the .npy: the names go beside its target, so the
    # pair stays together and the next run replaces both.
    (tmp_path / 'latest.npy').symlink_to(tmp_path / 'f.npy')
    for target in ('latest.npy', 'f.npy'):
        code, _, err = run(capsys, '--model', model_1000, '--features',
                           str(tmp_path / target), str(photo), str(photo))
        assert code == 0, err
    assert os.path.islink(tmp_path / 'latest.npy')
    assert not (tmp_path / 'latest.txt').exists()
    assert googlenet_predict.features_rows(str(tmp_path / 'f.npy')) == 2
    assert (tmp_path / 'f.txt').read_text() == 2 * (str(photo) + '\n')


def test_outputs_that_are_inputs_or_devices_are_refused_first(
        capsys, tmp_path, model_1000):
    photo = tmp_path / 'in.png'
    photo.write_bytes(png_bytes())
    before = photo.read_bytes()
    for argv, message in [
            (['--csv', '/dev/null'], "--csv /dev/null is not a regular "
             "file"),
            (['--csv', str(photo)], '--csv {} is the input'.format(photo)),
            (['--features', str(tmp_path / 'f.npz'), '--csv',
              str(tmp_path / 'f.npz')], '--features {} is the input'.format(
                  tmp_path / 'f.npz')),
            (['--features', model_1000.replace('.model', '.npz'), '--model',
              model_1000.replace('.model', '.npz')], 'is the input')]:
        argv = ['--model', model_1000] + argv if '--model' not in argv \
            else argv
        code, out, err = run(capsys, *argv, str(photo))
        assert (code, out) == (1, '') and err.count('\n') == 1, err
        assert err.startswith('error: ') and message in err, err
    assert photo.read_bytes() == before
    assert os.path.exists('/dev/null') and not os.path.isfile('/dev/null')


def test_outputs_in_input_folders_or_unwritable_are_refused_first(
        capsys, tmp_path, model_1000, locked_folder):
    folder = tmp_path / 'photos'
    (folder / 'sub').mkdir(parents=True)
    (folder / 'ok.png').write_bytes(png_bytes())
    other = tmp_path / 'other'
    other.mkdir()
    (other / 'x.png').write_bytes(png_bytes((9, 9, 9)))
    # A link inside the folder: other/x.png is one of its inputs.
    os.symlink(str(other), str(folder / 'link'))
    named = tmp_path / 'named.txt'
    named.write_text('keep')
    before = {p: p.read_bytes() for p in (folder / 'ok.png', other / 'x.png',
                                          named)}
    for argv, message in [
            (['--csv', str(folder / 'ok.png'), str(folder)],
             '--csv {} lies inside the input folder {}'.format(
                 folder / 'ok.png', folder)),
            (['--csv', str(folder / 'new.csv'), str(folder)],
             'lies inside the input folder'),
            (['--features', str(folder / 'sub' / 'f.npz'), str(folder)],
             'lies inside the input folder'),
            (['--csv', str(other / 'x.png'), str(folder)],
             '--csv {} is the input {}'.format(other / 'x.png',
                                               folder / 'link' / 'x.png')),
            (['--features', str(tmp_path / 'named.npy'), str(named)],
             '--features {} is the input {}'.format(named, named)),
            (['--features', str(tmp_path / 'f.npy'), '--csv',
              str(tmp_path / 'f.txt'), str(other)],
             '--features {} is the input {}'.format(tmp_path / 'f.txt',
                                                    tmp_path / 'f.txt'))]:
        code, out, err = run(capsys, '--model', model_1000, *argv)
        assert (code, out) == (1, '') and err.count('\n') == 1, err
        assert err.startswith('error: ') and message in err, err
    assert {p: p.read_bytes() for p in before} == before
    assert sorted(os.listdir(str(folder))) == ['link', 'ok.png', 'sub']

    locked = locked_folder()
    for option, name in (('--csv', 'out.csv'), ('--features', 'f.npz')):
        code, out, err = run(capsys, '--model', model_1000, option,
                             os.path.join(locked, name), str(other))
        assert (code, out) == (1, '')
        assert err == 'error: cannot write {} in {}: Permission ' \
            'denied\n'.format(option, locked)


def test_a_fifo_is_refused_or_passed_over_never_waited_for(
        capsys, tmp_path, model_1000):
    folder = tmp_path / 'odd'
    folder.mkdir()
    os.mkfifo(str(folder / 'fifo.jpg'))
    (folder / 'a.png').write_bytes(png_bytes())
    code, out, err = run(capsys, '--model', model_1000, '--json',
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


def test_a_reader_that_goes_away_stops_it_quietly(tmp_path, five_class_model):
    for i in range(30):  # the reader leaves long before the last
        (tmp_path / 'p{:02}.png'.format(i)).write_bytes(png_bytes())
    process = subprocess.Popen(
        [sys.executable, googlenet_predict.__file__, '--model',
         five_class_model, '--json', '-b', '2', str(tmp_path)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    first = process.stdout.readline()  # as `| head -1`
    process.stdout.close()
    err = process.stderr.read()
    assert process.wait(timeout=120) == 141
    assert json.loads(first)['input'].endswith('p00.png')
    assert err == b''


def test_feature_names_with_a_line_break_are_not_written(tmp_path, capsys,
                                                        model_1000):
    # Refused before the model loads or any image is decoded.
    images = tmp_path / 'in'
    images.mkdir()
    for name in ('a.png', 'b\n.png'):
        (images / name).write_bytes(png_bytes())
    loaded = []
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(tuned_googlenet, 'load_model',
                      lambda *a, **k: loaded.append(a))
        code, out, err = run(capsys, '--model', model_1000, '--features',
                             str(tmp_path / 'f.npy'), str(images))
    assert (code, out, loaded) == (1, '', [])
    assert err == ('error: input {} has a line break: {} holds one name '
                   'per line\n'.format(images / 'b\\n.png',
                                       tmp_path / 'f.txt'))
    path = str(tmp_path / 'f.npy')
    with pytest.raises(googlenet_io.UserError) as e:
        googlenet_predict.save_features(
            path, ['a.png', 'b\n.png'], [numpy.zeros((2, 1024))])
    assert str(e.value) == ('input b\\n.png has a line break: {} holds one '
                            'name per line'.format(tmp_path / 'f.txt'))
    assert sorted(os.listdir(str(tmp_path))) == ['in']


def test_a_model_that_is_a_folder_or_device_is_named_so(capsys, tmp_path):
    for model in (str(tmp_path), '/dev/null'):
        code, out, err = run(capsys, '--model', model)
        assert (code, out) == (1, '')
        assert err == 'error: model file {} is a folder or a device, not a ' \
            'file\n'.format(model)
