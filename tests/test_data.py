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
from image_fixtures import two_tone
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
    for k, (name, count) in enumerate(sorted(
            (os.fsencode(name), count) for name, count in counts.items())):
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
    """prepare_data's sets and class names, and its report, without
    training (the files it left out are in the report)."""
    args = args_for(*argv)
    *sets, _ = train_googlenet.prepare_data(args, n_classes)
    return tuple(sets), capsys.readouterr().out, args


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
    assert 'left out {}: larger than the pixel limit (3600 ' \
        'pixels > 3000'.format(tmp_path / 'd' / 'a' / 'big.png') in out
    assert len(train) + len(val) == 6


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
    os.symlink(tmp_path / 'd' / 'cat', nested / 'loop')  # listed once
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
    assert ('skipped 7 entries: 5 hidden, 1 not an image file (.txt), '
            '1 outside the class folders') in out


def test_an_undecodable_image_is_reported_once_by_path(capsys, tmp_path):
    data = make_classes(tmp_path / 'd', {'a': 4, 'b': 4})
    broken = tmp_path / 'd' / 'b' / 'broken.jpg'
    broken.write_bytes(b'\xff\xd8\xff\xe0 not really a jpeg')
    (train, val, _), out, _ = prepare(capsys, 2, '--train', data,
                                      '--val-ratio', '0.5')
    assert out.count(str(broken)) == 1
    assert 'left out {}: '.format(broken) in out
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


# --- 1: validation folders are mapped onto the training classes by name ------

def test_validation_folder_lacking_a_class_is_mapped_by_name(capsys,
                                                            tmp_path):
    train = make_classes(tmp_path / 'train', {'cat': 3, 'checks': 3,
                                              'stripes': 3})
    val = make_classes(tmp_path / 'val', {'cat': 2, 'stripes': 2})
    (_, val_pairs, names), out, _ = prepare(capsys, 3, '--train', train,
                                            '--val', val)
    assert names == ['cat', 'checks', 'stripes']
    labels = {os.path.basename(os.path.dirname(p)): label
              for p, label in val_pairs}
    assert labels == {'cat': 0, 'stripes': 2}
    assert 'checks: 0 validation images' in out
    report = googlenet_data.per_class_report(
        numpy.array([[2, 0, 0], [0, 0, 0], [0, 1, 1]]), names)
    # precision, recall, F1, support
    assert report.splitlines()[2].split() == ['0.000', '0.000', '0.000',
                                              '0', 'checks']


def test_validation_folder_with_a_class_training_lacks_is_refused(
        capsys, tmp_path, model_3):
    train = make_classes(tmp_path / 'train', {'cat': 2, 'checks': 2,
                                              'stripes': 2})
    val = make_classes(tmp_path / 'val', {'cat': 1, 'zigzag': 1})
    err = refused(capsys, train_googlenet.main, '--train', train, '--val',
                  val, '--model', model_3, '--out', str(tmp_path / 'r'),
                  *QUIET)
    assert err == ("error: {}: folder 'zigzag' is not one of the 3 training "
                   "classes (cat, checks, stripes)\n".format(val))


def test_list_files_take_class_names_from_labels(capsys, tmp_path):
    data = make_classes(tmp_path / 'd', {'ant': 2, 'bee': 2, 'cow': 2})
    listing = tmp_path / 'train.txt'
    listing.write_text('ant/0.png 0\nant/1.png 0\nbee/0.png 1\ncow/0.png 2\n'
                       'cow/1.png 2\n')
    names_file = tmp_path / 'names.txt'
    names_file.write_text('ant\nbee\ncow\n')
    val = make_classes(tmp_path / 'val', {'bee': 1, 'cow': 1})
    (train, val_pairs, names), out, _ = prepare(
        capsys, 3, '--train', str(listing), '--root', data, '--labels',
        str(names_file), '--val', val)
    assert names == ['ant', 'bee', 'cow']
    assert sorted(label for _, label in val_pairs) == [1, 2]
    assert 'ant: 0 validation images' in out
    (_, _, names), _, _ = prepare(capsys, 3, '--train', str(listing),
                                  '--root', data)
    assert names == ['0', '1', '2']
    with pytest.raises(googlenet_io.UserError, match='--labels names the '
                       'classes of a list file; the classes of .* are its '
                       'folder names'):
        prepare(capsys, 3, '--train', data, '--labels', str(names_file))
    names_file.write_text('ant\nbee\n')
    with pytest.raises(googlenet_io.UserError,
                       match='names.txt has 2 classes but the model has 3'):
        prepare(capsys, 3, '--train', str(listing), '--root', data,
                '--labels', str(names_file))


# --- 6: names that are not UTF-8, names that look like math -----------------

def test_names_that_are_not_utf8_train_with_and_without_the_cache(
        capsys, tmp_path, model_3):
    data = make_classes(tmp_path / 'd', {b'caf\xe9': 3, 'a$b_c%d\\e': 3,
                                         'plain': 3})
    os.rename(os.path.join(os.fsencode(data), b'plain', b'0.png'),
              os.path.join(os.fsencode(data), b'plain', b'r\xe9sum\xe9.png'))
    for cache in ([], ['--cache-features']):
        out_dir = str(tmp_path / 'r{}'.format(len(cache)))
        code = train_googlenet.main([
            '--train', data, '--model', model_3, '--out', out_dir,
            '--epoch', '1', '-B', '3', '--val-ratio', '0.34'] + cache
            + QUIET)
        printed, err = capsys.readouterr()
        assert code == 0, err
        assert 'caf\\xe9' in printed and 'a$b_c%d\\e' in printed
        assert os.path.exists(os.path.join(out_dir, 'confusion.png'))
        _, names = tuned_googlenet.load_model(os.path.join(
            out_dir, 'tuned_googlenet.model'))
        assert names == ['a$b_c%d\\e', 'caf\\xe9', 'plain']


def test_folders_whose_class_names_collide_are_refused(capsys, tmp_path,
                                                       model_3):
    # caf + byte 0xe9 and a folder literally named caf\xe9: one class name.
    data = make_classes(tmp_path / 'd', {b'caf\xe9': 2, 'caf\\xe9': 2,
                                         'plain': 2})
    err = refused(capsys, train_googlenet.main, '--train', data, '--model',
                  model_3, '--out', str(tmp_path / 'r'), *QUIET)
    assert err == ('error: class folders {0}/caf\\\\xe9 and {0}/caf\\xe9 '
                   'both make class caf\\xe9 (undecodable bytes are written '
                   '\\xNN): rename one\n'.format(data))
    assert not os.path.exists(str(tmp_path / 'r' / 'tuned_googlenet.model'))
    with pytest.raises(googlenet_io.UserError, match='both make class'):
        googlenet_data.read_folder(data, ['caf\\xe9', 'plain'])


def test_folders_named_with_control_characters_are_refused(tmp_path):
    data = make_classes(tmp_path / 'd', {'a\nb': 1, 'c\x1b[2J': 1,
                                         'plain': 1})
    with pytest.raises(googlenet_io.UserError) as e:
        googlenet_data.read_folder(data)
    assert str(e.value) == ('class folder {}/a\\nb has a control character '
                            'in its name (\\n): rename it'.format(data))
    os.rename(os.path.join(data, 'a\nb'), os.path.join(data, 'ab'))
    with pytest.raises(googlenet_io.UserError) as e:
        googlenet_data.read_folder(data, ['ab', 'plain'])
    assert str(e.value) == ('class folder {}/c\\x1b[2J has a control '
                            'character in its name (\\x1b): rename it'
                            .format(data))


def test_a_folder_that_is_no_class_is_named_in_its_shown_form(tmp_path):
    data = make_classes(tmp_path / 'd', {b'caf\xe9': 1})
    with pytest.raises(googlenet_io.UserError) as e:
        googlenet_data.read_folder(data, ['ant', 'bee'])
    assert str(e.value) == ("{}: folder 'caf\\xe9' is not one of the 2 "
                            "training classes (ant, bee)".format(data))


def test_shown_escapes_controls_and_backslashes_one_way():
    shown = googlenet_io.shown
    assert shown('a\nb\rc\td\x1b[31m\x07\x7f') == (
        'a\\nb\\rc\\td\\x1b[31m\\x07\\x7f')
    undecodable = os.fsdecode(b'caf\xe9 \x85')
    assert shown(undecodable) == 'caf\\xe9 \\x85'
    # A literal backslash sequence, a C1 control and U+2028 differ from it.
    assert shown('caf\\xe9') == 'caf\\\\xe9'
    assert shown('\x85\u2028') == '\\u0085\\u2028'
    assert shown('plain caf\xe9') == 'plain caf\xe9'


def test_prediction_prints_control_characters_escaped(capsys, tmp_path):
    output = googlenet_predict.Output(False, str(tmp_path / 'p.csv'), 1)
    name = 'a\nb\x1b[2J\x07\r.png'
    output.result(name, [{'label': 'ant', 'probability': 0.5}])
    output.error(name, 'not an image')
    output.close()
    out, err = capsys.readouterr()
    assert out.splitlines()[0] == 'a\\nb\\x1b[2J\\x07\\r.png'
    assert len(out.splitlines()) == 2
    assert err == 'error: a\\nb\\x1b[2J\\x07\\r.png: not an image\n'
    with open(str(tmp_path / 'p.csv'), newline='') as f:
        rows = list(csv.reader(f))
    assert [row[0] for row in rows[1:]] == ['a\\nb\\x1b[2J\\x07\\r.png'] * 2
    output = googlenet_predict.Output(True, None, 1)
    output.result(name, [{'label': 'ant', 'probability': 0.5}])
    assert json.loads(capsys.readouterr().out)['input'] == (
        'a\\nb\\x1b[2J\\x07\\r.png')


def test_label_files_with_duplicate_empty_or_control_names_are_refused(
        tmp_path):
    names = tmp_path / 'names.txt'

    def error(text):
        names.write_text(text)
        with pytest.raises(googlenet_io.UserError) as e:
            googlenet_io.read_labels(str(names))
        return str(e.value)
    assert error('a\na\nc\n') == ('label file {}: a is on lines 1 and 2; '
                                   'class names must differ'.format(names))
    assert error('a\n b\nc\nb\t\n') == (
        'label file {}: b is on lines 2 and 4; class names must differ'
        .format(names))
    assert error('a\n  \nc\n') == ('label file {} line 2 is empty: each '
                                    'line names the class of its number; '
                                    'name the class'.format(names))
    assert error('a\nb\tc\n') == ('label file {} line 2: b\\tc has a '
                                   'control character (\\t)'.format(names))
    # A form feed is no line end here (str.splitlines would split there).
    assert error('a\nb\x0cc\nd\n') == (
        'label file {} line 2: b\\x0cc has a control character (\\x0c)'
        .format(names))
    names.write_text('a\nb\n\n \n')  # blank lines after the last name
    assert googlenet_io.read_labels(str(names)) == ['a', 'b']


def test_train_refuses_duplicate_labels_for_a_list_file(capsys, tmp_path,
                                                        model_3):
    data = make_classes(tmp_path / 'd', {'a': 2, 'b': 2, 'c': 2})
    listing = tmp_path / 'train.txt'
    listing.write_text('a/0.png 0\na/1.png 0\nb/0.png 1\nb/1.png 1\n'
                       'c/0.png 2\nc/1.png 2\n')
    labels = tmp_path / 'labels.txt'
    labels.write_text('ant\nbee\nant \n')
    err = refused(capsys, train_googlenet.main, '--train', str(listing),
                  '--root', data, '--labels', str(labels), '--model',
                  model_3, '--out', str(tmp_path / 'r'), *QUIET)
    assert err == ('error: label file {}: ant is on lines 1 and 3; class '
                   'names must differ\n'.format(labels))


def test_confusion_plot_draws_names_literally(tmp_path, monkeypatch):
    import matplotlib.text
    drawn = []
    original = matplotlib.text.Text.draw

    def record(self, renderer):
        if self.get_text():
            drawn.append((self.get_text(), self.get_parse_math()))
        return original(self, renderer)
    monkeypatch.setattr(matplotlib.text.Text, 'draw', record)
    names = ['$x^2$', 'a_b', '50%', 'back\\slash']
    googlenet_data.plot_confusion(numpy.eye(4, dtype=int), names,
                                  str(tmp_path / 'c.png'))
    labels = [(text, math) for text, math in drawn if text in names]
    assert sorted({text for text, _ in labels}) == sorted(names)
    assert not any(math for _, math in labels)


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


# --- 7: list files and the wrong kind of input ------------------------------

def test_list_file_with_bom_crlf_and_spaces(capsys, tmp_path):
    data = make_classes(tmp_path / 'd', {'a': 2, 'b': 2})
    os.rename(tmp_path / 'd' / 'a' / '0.png', tmp_path / 'd' / 'a' /
              'my photo 0.png')
    listing = tmp_path / 'l.txt'
    listing.write_bytes('\ufeffa/my photo 0.png 0\r\na/1.png 0\r\n'
                        'b/0.png 1\r\nb/1.png  1\r\n\r\n'.encode('utf-8'))
    names = tmp_path / 'names.txt'
    names.write_bytes(b'\xef\xbb\xbfant\r\nbig cat\r\n')
    assert googlenet_io.read_labels(str(names)) == ['ant', 'big cat']
    names.write_bytes('ant\r\ncaf\xe9\r\n'.encode('latin-1'))
    with pytest.raises(googlenet_io.UserError) as e:
        googlenet_io.read_labels(str(names))
    assert str(e.value) == ('label file {} is not UTF-8 text (byte 0xe9 at '
                            'offset 8): save it as UTF-8'.format(names))
    got = googlenet_data.read_dataset(str(listing), data).pairs
    assert got == [(os.path.join(data, 'a/my photo 0.png'), 0),
                   (os.path.join(data, 'a/1.png'), 0),
                   (os.path.join(data, 'b/0.png'), 1),
                   (os.path.join(data, 'b/1.png'), 1)]


def test_list_files_and_folders_that_cannot_be_read(capsys, tmp_path,
                                                   model_3, monkeypatch):
    data = make_classes(tmp_path / 'd', {'a': 2, 'b': 2})
    common = ['--model', model_3, '--out', str(tmp_path / 'r')] + QUIET
    latin = tmp_path / 'latin.txt'
    latin.write_bytes('caf\xe9/0.png 0\n'.encode('latin-1'))
    err = refused(capsys, train_googlenet.main, '--train', str(latin),
                  *common)
    assert err == ('error: list file {} is not UTF-8 text (byte 0xe9 at '
                   'offset 3): save it as UTF-8\n'.format(latin))
    err = refused(capsys, train_googlenet.main, '--train',
                  str(tmp_path / 'd' / 'a' / '0.png'), *common)
    assert err == ('error: {} is an image, not a data set: give a folder of '
                   'class folders or a list file of "path label" lines\n'
                   .format(tmp_path / 'd' / 'a' / '0.png'))
    # Permissions do not bind root, which these tests may run as.
    real_scandir, real_open = os.scandir, open
    locked = os.path.join(data, 'b')

    def scandir(path='.'):
        if os.fspath(path) == locked:
            raise PermissionError(13, 'Permission denied')
        return real_scandir(path)
    monkeypatch.setattr(os, 'scandir', scandir)
    err = refused(capsys, train_googlenet.main, '--train', data, *common)
    assert err == 'error: cannot read folder {}: Permission denied\n'.format(
        locked)
    listing = tmp_path / 'l.txt'
    listing.write_text('a/0.png 0\n')

    def locked_open(path, *args, **kwargs):
        if os.fspath(path) == str(listing):
            raise PermissionError(13, 'Permission denied')
        return real_open(path, *args, **kwargs)
    monkeypatch.setattr('builtins.open', locked_open)
    err = refused(capsys, train_googlenet.main, '--train', str(listing),
                  '--root', data, *common)
    assert err == 'error: cannot read list file {}: Permission denied\n' \
        .format(listing)


# --- 8: data sets that cannot train well ------------------------------------

def test_val_ratio_must_lie_strictly_between_0_and_1(capsys, tmp_path,
                                                     model_3):
    data = make_classes(tmp_path / 'd', {'a': 2, 'b': 2})
    for ratio in ('0', '1', '-0.5', '1.5'):
        err = refused(capsys, train_googlenet.main, '--train', data,
                      '--val-ratio', ratio, '--model', model_3, '--out',
                      str(tmp_path / 'r'), *QUIET)
        assert err == ('error: --val-ratio must lie strictly between 0 and '
                       '1, got {:g}\n'.format(float(ratio)))


def test_a_flat_folder_is_named_as_such(capsys, tmp_path, model_3):
    flat = tmp_path / 'flat'
    flat.mkdir()
    for i in range(3):
        Image.fromarray(PHOTO).save(flat / 'img_{}.jpg'.format(i))
    data = make_classes(tmp_path / 'd', {'a': 2, 'b': 2, 'c': 2})
    expected = ('error: {} holds 3 images but no class sub-folders: put '
                'each class\'s images in a folder named after the class\n'
                .format(flat))
    for argv in (['--train', str(flat)], ['--train', data, '--val',
                                          str(flat)]):
        err = refused(capsys, train_googlenet.main, *argv, '--model',
                      model_3, '--out', str(tmp_path / 'r'), *QUIET)
        assert err == expected


def test_data_that_cannot_train_well_is_reported_before_training(
        capsys, tmp_path):
    data = make_classes(tmp_path / 'd', {'many': 9, 'one': 1, 'two': 4})
    (train, val, _), out, args = prepare(capsys, 3, '--train', data,
                                         '--val-ratio', '0.2', '-B', '16')
    assert len(train) == 11 and args.batchsize == 11
    warnings = [line for line in out.splitlines()
                if line.startswith('warning: ')]
    assert warnings == [
        'warning: class one has a single image: it trains on it and cannot '
        'be validated; add more',
        'warning: the training set (11 images) is smaller than the batch '
        '(16): batches of 11 are used',
        'warning: class one has 1 training image, 7x fewer than the '
        'commonest (7): the run does not re-weight classes; watch its '
        'recall in the per-class report',
    ]
    assert out.index('warning: ') > out.index('validation set: ')
    pairs = [('a0', 0), ('a1', 0), ('b0', 1)]
    _, val = googlenet_data.stratified_split(pairs, 0.9, seed=0)
    assert [label for _, label in val] == [0]  # b's only image trains


# --- 9: progress bars -------------------------------------------------------

class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_progress_bars_only_on_a_terminal_and_never_with_no_progress(
        capsys, tmp_path, monkeypatch, model_3):
    data = make_classes(tmp_path / 'd', {'a': 3, 'b': 3})
    pairs = googlenet_data.read_folder(data).pairs
    for stream, show, expect in ((Terminal(), True, True),
                                 (Terminal(), False, False),
                                 (io.StringIO(), True, False)):
        monkeypatch.setattr(sys, 'stderr', stream)
        googlenet_data.drop_unreadable(pairs, show=show)
        text = stream.getvalue()
        assert ('checking images: 100%' in text and '6/6' in text
                and 'image/s]' in text) == expect, text
        if not expect:
            assert text == ''
    model, _ = tuned_googlenet.load_model(model_3)
    monkeypatch.setattr(sys, 'stderr', Terminal())
    train_googlenet.cached_features(
        model, pairs[:2], 1, str(tmp_path / 'f.npy'), 2,
        train_googlenet.chainer.get_device('@numpy'), 0, 60)
    text = sys.stderr.getvalue()
    assert 'trunk features: 100%' in text and '2/2 [' in text
    assert '<' in text  # elapsed<left


# --- 11: one line (or row) per input -----------------------------------------

def test_csv_has_a_row_per_input_and_json_an_object(capsys, tmp_path,
                                                    model_1000):
    good = tmp_path / 'good.png'
    Image.fromarray(PHOTO).save(good)
    missing = str(tmp_path / 'missing.png')
    table = tmp_path / 'out.csv'
    code = googlenet_predict.main(['--model', model_1000, '--top', '3',
                                   '--csv', str(table), str(good), missing])
    out, err = capsys.readouterr()
    assert code == 1 and err == 'error: {}: no such file\n'.format(missing)
    assert out.splitlines()[0] == str(good)
    with open(table, newline='') as f:
        rows = list(csv.reader(f))
    assert rows[0] == ['input', 'error', 'label_1', 'probability_1',
                       'label_2', 'probability_2', 'label_3',
                       'probability_3']
    assert rows[1][:2] == [str(good), ''] and len(rows[1]) == 8
    probabilities = [float(p) for p in rows[1][3::2]]
    assert probabilities == sorted(probabilities, reverse=True)
    assert rows[1][2].startswith('n') and rows[2] == [missing,
                                                      'no such file'] + [''] * 6
    code = googlenet_predict.main(['--model', model_1000, '--top', '1',
                                   '--csv', '-', str(good)])
    out, _ = capsys.readouterr()
    rows = list(csv.reader(io.StringIO(out)))
    assert code == 0 and len(rows) == 2 and rows[0][:3] == [
        'input', 'error', 'label_1']
    assert rows[1][:2] == [str(good), ''] and rows[1][2].startswith('n')
    nowhere = str(tmp_path / 'no' / 'out.csv')
    err = refused(capsys, googlenet_predict.main, '--model', model_1000,
                  '--csv', nowhere, str(good))
    assert err == 'error: cannot write --csv in {}: no such folder\n' \
        .format(os.path.dirname(nowhere))
    err = refused(capsys, googlenet_predict.main, '--model', model_1000,
                  '--csv', '-', '--json', str(good))
    assert err == ('error: --json and --csv - both print to stdout: give '
                   '--csv a file name\n')


def test_json_never_holds_nan(capsys, tmp_path, model_3):
    # Finite weights (a NaN one is refused at load) whose logits overflow.
    model, _ = tuned_googlenet.load_model(model_3)
    model.loss3_fc.W.array[:] = numpy.finfo(numpy.float32).max
    broken = str(tmp_path / 'overflow.model')
    tuned_googlenet.save_model(broken, model, ['a', 'b', 'c'])
    good = tmp_path / 'good.png'
    Image.fromarray(PHOTO).save(good)
    code = googlenet_predict.main(['--model', broken, '--json', str(good)])
    out, err = capsys.readouterr()
    assert code == 1
    reason = ('the model gave non-finite probabilities (NaN or infinity): '
              'its weights are broken')
    assert json.loads(out) == {'input': str(good), 'error': reason}
    assert err == 'error: {}: {}\n'.format(good, reason)


def test_an_image_in_two_classes_or_in_both_sets_is_warned_of(tmp_path):
    for name in ('a.png', 'b.png', 'c.png'):
        Image.new('RGB', (8, 8)).save(str(tmp_path / name))
    (tmp_path / 'link.png').symlink_to(tmp_path / 'a.png')
    a, b, c, link = (str(tmp_path / n) for n in
                     ('a.png', 'b.png', 'c.png', 'link.png'))
    lines = googlenet_data.data_warnings(
        [(a, 0), (link, 1), (b, 1), (c, 0)], [(b, 1)], ['x', 'y'], 2)
    assert lines == [
        '1 image is in more than one class (by file, links followed), e.g. '
        '{}: each counts in every class it is in; check the folders or the '
        'list'.format(a),
        '1 validation image is also in the training set, e.g. {}: the '
        'validation accuracy overstates what the model does on new '
        'images'.format(b)]
    assert googlenet_data.data_warnings([(a, 0), (b, 1)], [(c, 0), (c, 1)],
                                        ['x', 'y'], 2) == []


def test_long_class_lists_are_cut_in_messages():
    names = ['n{:02}'.format(i) for i in range(12)]
    assert googlenet_data.few(names) == ', '.join(names[:10]) + \
        ', and 2 more'
    assert googlenet_data.few(names[:3]) == 'n00, n01, n02'


def test_a_link_that_loops_is_passed_over(tmp_path):
    folder = tmp_path / 'cat'
    folder.mkdir()
    Image.new('RGB', (8, 8)).save(str(folder / 'a.png'))
    (folder / 'loop.jpg').symlink_to('loop.jpg')  # ELOOP when followed
    (folder / 'gone.jpg').symlink_to('nowhere.jpg')
    images, skipped = googlenet_io.list_images(str(tmp_path), recursive=True)
    assert images == [str(folder / 'a.png')]
    assert skipped == {'not a regular file': 2}


def test_a_one_colour_image_is_left_out_of_training_with_its_reason(
        tmp_path):
    blank, photo = str(tmp_path / 'blank.png'), str(tmp_path / 'photo.png')
    Image.new('RGB', (30, 20), (12, 34, 56)).save(blank)
    Image.fromarray(PHOTO).save(photo)
    good, bad = googlenet_data.drop_unreadable([(blank, 0), (photo, 1)],
                                               show=False)
    assert good == [(photo, 1)]
    assert bad == ['{}: one colour throughout (RGB 12, 34, 56): nothing to '
                   'classify'.format(blank)]


def test_a_class_whose_images_are_all_left_out_is_refused(capsys, tmp_path,
                                                          model_3):
    """As a class folder without images is: the model could never predict
    a class it saw no image of (it trained, exit 0, without a word)."""
    data = make_classes(tmp_path / 'd', {'a': 3, 'b': 3, 'c': 3})
    for i in range(3):
        Image.new('RGB', (50, 40), (9, 9, 9)).save(
            os.path.join(data, 'c', '{}.png'.format(i)))
    err = refused(capsys, train_googlenet.main, '--train', data, '--model',
                  model_3, '--out', str(tmp_path / 'r'), *QUIET)
    assert err == ('error: class c has images but none of them could be '
                   'used (each is listed above): the model could never '
                   'predict it; replace them, or remove the class\n')
    assert not os.path.exists(str(tmp_path / 'r' / 'tuned_googlenet.model'))
