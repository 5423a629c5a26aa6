"""What a user's folders hold: pixel formats, which files are images, data
sets mapped by name, odd names and encodings, data that cannot train well,
progress bars, and prediction's per-input output (issue 9)."""
import csv
import io
import json
import os
import struct
import subprocess
import sys
import zlib

import numpy
import pytest
from PIL import Image

import googlenet_data
import googlenet_io
import googlenet_predict
import train_googlenet
import tuned_googlenet
from numeric import assert_probabilities_close

PHOTO = numpy.random.RandomState(5).randint(0, 256, (40, 50, 3)).astype(
    numpy.uint8)
GREY = PHOTO[:, :, 1]
QUIET = ['--no-progress', '--loaderjob', '0']


def write_png(path, array, bit_depth, colour_type, width=None, height=None):
    """A PNG written by hand, for what Pillow does not write (16-bit RGB) or
    would refuse to (a header declaring more pixels than the body holds)."""
    height = height or array.shape[0]
    width = width or array.shape[1]
    raw = b''.join(b'\0' + row.astype('>u2' if bit_depth == 16 else 'u1')
                   .tobytes() for row in array)

    def chunk(kind, data):
        return (struct.pack('>I', len(data)) + kind + data
                + struct.pack('>I', zlib.crc32(kind + data)))
    ihdr = struct.pack('>IIBBBBB', width, height, bit_depth, colour_type,
                       0, 0, 0)
    with open(path, 'wb') as f:
        f.write(b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', ihdr)
                + chunk(b'IDAT', zlib.compress(raw)) + chunk(b'IEND', b''))
    return str(path)


def make_classes(root, counts, size=(50, 40), ext='.png'):
    """Class folders of solid-ish images: {name: how many}; names may be
    bytes (not UTF-8)."""
    rng = numpy.random.RandomState(0)
    root = os.fsencode(str(root))
    for k, (name, count) in enumerate(sorted(counts.items())):
        name = os.fsencode(name)
        os.makedirs(os.path.join(root, name), exist_ok=True)
        for i in range(count):
            colour = numpy.array([(70 * k) % 256, 120, 255 - 60 * k])
            noise = rng.randint(-20, 20, (size[1], size[0], 3))
            Image.fromarray(numpy.clip(colour + noise, 0, 255).astype(
                numpy.uint8)).save(os.path.join(
                    root, name, '{}{}'.format(i, ext).encode()))
    return os.fsdecode(root)


def args_for(*argv):
    return train_googlenet.build_parser().parse_args(list(argv) + QUIET)


def refused(capsys, main, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    assert code == 1, (out, err)
    assert err.startswith('error: ') and err.count('\n') == 1, err
    return err


def prepare(capsys, n_classes, *argv):
    """prepare_data's sets and its report, without training."""
    args = args_for(*argv)
    sets = train_googlenet.prepare_data(args, n_classes)
    return sets, capsys.readouterr().out, args


# --- 2: samples scaled by the range of their type ---------------------------

def _pixels(tmp_path):
    Image.fromarray(GREY).save(tmp_path / 'grey8.png')
    Image.fromarray(GREY.astype(numpy.uint16) * 257).save(
        tmp_path / 'grey16.png')
    Image.fromarray(GREY.astype(numpy.uint16) * 257).save(
        tmp_path / 'grey16.tif')
    Image.fromarray(GREY.astype(numpy.float32) / 255).save(
        tmp_path / 'float01.tif')
    with open(tmp_path / 'grey16.pgm', 'wb') as f:  # Pillow's mode I
        f.write(b'P5\n50 40\n65535\n'
                + (GREY.astype('>u2') * 257).tobytes())
    Image.fromarray(PHOTO).save(tmp_path / 'rgb8.png')
    write_png(tmp_path / 'rgb16.png', PHOTO.astype(numpy.uint16) * 257,
              16, 2)
    rgba = numpy.concatenate([PHOTO, numpy.full((40, 50, 1), 9, numpy.uint8)],
                             axis=2)
    write_png(tmp_path / 'rgba16.png', rgba.astype(numpy.uint16) * 257, 16, 6)


def test_16_bit_and_float_images_read_as_their_8_bit_selves(tmp_path):
    _pixels(tmp_path)

    def read(name):
        return googlenet_io.preprocess(googlenet_io.open_image(
            str(tmp_path / name)))
    modes = {name: Image.open(tmp_path / name).mode for name in (
        'grey16.png', 'grey16.tif', 'float01.tif', 'grey16.pgm')}
    assert modes == {'grey16.png': 'I;16', 'grey16.tif': 'I;16',
                     'float01.tif': 'F', 'grey16.pgm': 'I'}
    grey = read('grey8.png')
    for name in ('grey16.png', 'grey16.tif', 'float01.tif', 'grey16.pgm'):
        assert numpy.array_equal(read(name), grey), name
    rgb = read('rgb8.png')
    for name in ('rgb16.png', 'rgba16.png'):  # alpha dropped, as Caffe
        assert numpy.array_equal(read(name), rgb), name


def test_16_bit_and_float_give_the_8_bit_probabilities(capsys, tmp_path,
                                                       model_1000):
    _pixels(tmp_path)
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


def test_modes_without_an_rgb_reading_are_refused_by_name(tmp_path):
    Image.new('LAB', (20, 20)).save(tmp_path / 'lab.tif')
    Image.fromarray(numpy.full((20, 20), 7, numpy.int32)).save(
        tmp_path / 'int32.tif')
    Image.fromarray(numpy.full((20, 20), 3.5, numpy.float32)).save(
        tmp_path / 'float255.tif')
    Image.fromarray(numpy.full((20, 20), numpy.nan, numpy.float32)).save(
        tmp_path / 'nan.tif')
    reasons = {}
    for name in ('lab.tif', 'int32.tif', 'float255.tif', 'nan.tif'):
        with pytest.raises(googlenet_io.UserError) as e:
            googlenet_io.open_image(str(tmp_path / name))
        reasons[name] = str(e.value)
    assert reasons['lab.tif'].startswith('pixel mode LAB has no RGB reading')
    assert reasons['int32.tif'].startswith('pixel mode I has no RGB reading')
    assert reasons['float255.tif'] == (
        'float samples outside 0..1 (3.5..3.5); float images are read as 0..1')
    assert reasons['nan.tif'] == 'float samples that are NaN or infinite'


# --- 5: the pixel limit -----------------------------------------------------

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


def test_training_refuses_images_over_its_pixel_limit(capsys, tmp_path):
    data = make_classes(tmp_path / 'd', {'a': 3, 'b': 3})
    Image.new('RGB', (60, 60)).save(tmp_path / 'd' / 'a' / 'big.png')
    (train, val, _), out, _ = prepare(capsys, 2, '--train', data,
                                      '--max-pixels', '3000')
    assert 'skipped unreadable {}: larger than the pixel limit (3600 ' \
        'pixels > 3000'.format(tmp_path / 'd' / 'a' / 'big.png') in out
    assert len(train) + len(val) == 6


def test_a_108_megapixel_photo_is_classified_in_under_1_5_gb(tmp_path,
                                                            model_1000):
    photo = str(tmp_path / 'phone_108mp.jpg')
    Image.new('RGB', (12000, 9000), (120, 90, 60)).save(photo, quality=80)
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


# --- 3, 4: which folders are classes, which files are images ----------------

def test_visible_folders_are_classes_found_recursively(capsys, tmp_path):
    data = make_classes(tmp_path / 'd', {'cat': 3, 'dog': 3,
                                         '.ipynb_checkpoints': 2,
                                         '__MACOSX': 2})
    nested = tmp_path / 'd' / 'cat' / 'more' / 'deeper'
    nested.mkdir(parents=True)
    Image.fromarray(PHOTO).save(nested / 'x.jfif', 'JPEG')
    Image.fromarray(PHOTO).save(tmp_path / 'd' / 'dog' / 'camera.mpo',
                                'JPEG')
    (tmp_path / 'd' / 'dog' / '._0.png').write_bytes(b'\0\5\26\7 mac')
    (tmp_path / 'd' / 'dog' / '.DS_Store').write_bytes(b'\0\0\0\1Bud1')
    (tmp_path / 'd' / 'dog' / 'notes.txt').write_text('my dogs')
    (tmp_path / 'd' / 'README.md').write_text('about the data')
    hidden_dir = tmp_path / 'd' / 'cat' / '.thumbnails'
    hidden_dir.mkdir()
    Image.fromarray(PHOTO).save(hidden_dir / 't.png')
    (train, val, names), out, _ = prepare(capsys, 2, '--train', data,
                                          '--val-ratio', '0.25')
    assert names == ['cat', 'dog']
    paths = sorted(p for p, _ in train + val)
    assert str(nested / 'x.jfif') in paths
    assert str(tmp_path / 'd' / 'dog' / 'camera.mpo') in paths
    assert len(paths) == 8 and not any('/.' in p or 'MACOSX' in p
                                       for p in paths)
    assert ('skipped 7 files: 5 hidden, 1 not an image file (.txt), '
            '1 outside the class folders') in out


def test_an_undecodable_image_is_reported_once_by_path(capsys, tmp_path):
    data = make_classes(tmp_path / 'd', {'a': 4, 'b': 4})
    broken = tmp_path / 'd' / 'b' / 'broken.jpg'
    broken.write_bytes(b'\xff\xd8\xff\xe0 not really a jpeg')
    (train, val, _), out, _ = prepare(capsys, 2, '--train', data,
                                      '--val-ratio', '0.5')
    assert out.count(str(broken)) == 1
    assert 'skipped unreadable {}: '.format(broken) in out
    # The split is drawn from the readable images, half of each held out.
    assert sorted(label for _, label in val) == [0, 0, 1, 1]
    assert len(train) == 4 and str(broken) not in dict(train + val)


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
