"""googlenet_predict.py's outputs through main(): --json, --csv and
--features, and the files they may replace."""
import csv
import io
import json
import os
import signal
import subprocess
import sys
import threading
import time

import numpy
import pytest
from PIL import Image

import googlenet_predict
from googlenet_chainer import errors, images, labels, model_file, results
from googlenet_chainer.compat import chainer

from helpers import ROOT, predict, refused
from image_fixtures import PHOTO, png_bytes, two_tone
from numeric import PATH_TERMS, assert_close


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
        code, out, err = predict(capsys, '--model', model_1000, *argv,
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
            code, out, err = predict(capsys, '--model', model_1000, *argv,
                                     str(photo))
            assert code == 0, err
    assert results.features_rows(str(tmp_path / 'f.npy')) == 1
    assert (tmp_path / 'f.txt').read_text() == str(photo) + '\n'
    assert (tmp_path / 'G.txt').read_text() == str(photo) + '\n'
    # Through a link to the .npy: the names go beside its target, so the
    # pair stays together and the next run replaces both.
    (tmp_path / 'latest.npy').symlink_to(tmp_path / 'f.npy')
    for target in ('latest.npy', 'f.npy'):
        code, _, err = predict(capsys, '--model', model_1000, '--features',
                               str(tmp_path / target), str(photo), str(photo))
        assert code == 0, err
    assert os.path.islink(tmp_path / 'latest.npy')
    assert not (tmp_path / 'latest.txt').exists()
    assert results.features_rows(str(tmp_path / 'f.npy')) == 2
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
            # --features with --csv is refused before their paths are.
            (['--features', str(tmp_path / 'f.npz'), '--csv',
              str(tmp_path / 'f.npz')], 'so --csv would have no classes'),
            (['--features', model_1000.replace('.model', '.npz'), '--model',
              model_1000.replace('.model', '.npz')], 'is the input')]:
        argv = ['--model', model_1000] + argv if '--model' not in argv \
            else argv
        code, out, err = predict(capsys, *argv, str(photo))
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
            # The names file beside a .npy is an output too.
            (['--features', str(tmp_path / 'f.npy'),
              str(tmp_path / 'f.txt')],
             '--features {} is the input {}'.format(tmp_path / 'f.txt',
                                                    tmp_path / 'f.txt'))]:
        code, out, err = predict(capsys, '--model', model_1000, *argv)
        assert (code, out) == (1, '') and err.count('\n') == 1, err
        assert err.startswith('error: ') and message in err, err
    assert {p: p.read_bytes() for p in before} == before
    assert sorted(os.listdir(str(folder))) == ['link', 'ok.png', 'sub']

    locked = locked_folder()
    for option, name in (('--csv', 'out.csv'), ('--features', 'f.npz')):
        code, out, err = predict(capsys, '--model', model_1000, option,
                                 os.path.join(locked, name), str(other))
        assert (code, out) == (1, '')
        assert err == 'error: cannot write {} in {}: Permission ' \
            'denied\n'.format(option, locked)


def test_feature_names_with_a_line_break_are_not_written(tmp_path, capsys,
                                                         model_1000):
    # Refused before the model loads or any image is decoded.
    images = tmp_path / 'in'
    images.mkdir()
    for name in ('a.png', 'b\n.png'):
        (images / name).write_bytes(png_bytes())
    # A model file that loading would refuse: the line break is named first.
    broken = tmp_path / 'broken.model'
    broken.write_bytes(b'not a model')
    code, out, err = predict(capsys, '--model', str(broken), '--features',
                             str(tmp_path / 'f.npy'), str(images))
    assert (code, out) == (1, '')
    assert err == ('error: input {} has a line break: {} holds one name '
                   'per line\n'.format(images / 'b\\n.png',
                                       tmp_path / 'f.txt'))
    broken.unlink()
    path = str(tmp_path / 'f.npy')
    with pytest.raises(errors.UserError) as e:
        results.save_features(
            path, ['a.png', 'b\n.png'], [numpy.zeros((2, 1024))])
    assert str(e.value) == ('input b\\n.png has a line break: {} holds one '
                            'name per line'.format(tmp_path / 'f.txt'))
    assert sorted(os.listdir(str(tmp_path))) == ['in']


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
    assert rows[0] == ['input', 'error'] + [
        '{}_{}'.format(field, rank) for rank in (1, 2, 3)
        for field in ('index', 'class_id', 'name', 'probability')]
    assert rows[1][:2] == [str(good), ''] and len(rows[1]) == 14
    probabilities = [float(p) for p in rows[1][5::4]]
    assert probabilities == sorted(probabilities, reverse=True)
    # ImageNet's classes: the wnid and the words apart.
    words = dict(line.split(' ', 1) for line in open(labels.SYNSET_WORDS)
                 .read().splitlines())
    for index, wnid, name in zip(rows[1][2::4], rows[1][3::4],
                                 rows[1][4::4]):
        assert 0 <= int(index) < 1000 and name == words[wnid]
    assert rows[2] == [missing, 'no such file'] + [''] * 12
    code = googlenet_predict.main(['--model', model_1000, '--top', '1',
                                   '--csv', '-', str(good)])
    out, _ = capsys.readouterr()
    rows = list(csv.reader(io.StringIO(out)))
    assert code == 0 and len(rows) == 2 and rows[0][:3] == [
        'input', 'error', 'index_1']
    assert rows[1][:2] == [str(good), ''] and rows[1][3].startswith('n')
    nowhere = str(tmp_path / 'no' / 'out.csv')
    err = refused(capsys, googlenet_predict.main, '--model', model_1000,
                  '--csv', nowhere, str(good))
    assert err == 'error: cannot write --csv in {}: no such folder\n' \
        .format(os.path.dirname(nowhere))
    err = refused(capsys, googlenet_predict.main, '--model', model_1000,
                  '--csv', '-', '--json', str(good))
    assert err == ('error: --json and --csv - both print to stdout: give '
                   '--csv a file name\n')


def test_probabilities_file_holds_what_json_and_csv_print(capsys, tmp_path,
                                                        model_1000):
    """--probabilities: every class's probability of each input that was
    classified, in input order, its names beside it; the JSON and CSV
    give the same numbers and the class id and name apart."""
    photos = []
    for i, color in enumerate([(200, 30, 30), (30, 200, 30), (30, 30, 200)]):
        photos.append(str(tmp_path / '{}.png'.format(i)))
        two_tone(color, (40, 50)).save(photos[-1])
    missing = str(tmp_path / 'missing.png')
    npy, table = str(tmp_path / 'p.npy'), str(tmp_path / 'p.csv')
    for _ in range(2):  # the second run replaces the first one's files
        code, out, err = predict(
            capsys, '--model', model_1000, '--json', '--top', '3', '-b', '2',
            '--csv', table, '--probabilities', npy, photos[0], missing,
            *photos[1:])
        assert code == 1 and err == 'error: {}: no such file\n'.format(
            missing)
    records = [r for r in map(json.loads, out.splitlines())
               if 'error' not in r]
    probs = numpy.load(npy)
    assert probs.dtype == numpy.float32 and probs.shape == (3, 1000)
    assert (tmp_path / 'p.txt').read_text() == ''.join(p + '\n'
                                                       for p in photos)
    with open(table, newline='') as f:
        rows = [row for row in list(csv.reader(f))[1:] if not row[1]]
    names = labels.read_labels(labels.SYNSET_WORDS)
    for record, row, vector in zip(records, rows, probs):
        order = numpy.argsort(-vector, kind='stable')[:3]
        assert [p['index'] for p in record['predictions']] == list(order)
        assert [p['probability'] for p in record['predictions']] == [
            float(vector[i]) for i in order]
        for p, fields in zip(record['predictions'],
                             zip(*[iter(row[2:])] * 4)):
            assert '{} {}'.format(p['class_id'], p['name']) == \
                names[p['index']]
            assert list(fields) == [str(p['index']), p['class_id'],
                                    p['name'], repr(p['probability'])]
    assert len(records) == len(rows) == 3
    # Refused before any work: another ending, a features file, a list.
    (tmp_path / 'list.txt').write_text('a.jpg 0\n')
    features = str(tmp_path / 'f.npy')
    results.save_features(features, ['x'], [numpy.ones((1, 1024))])
    for path, message in [
            (str(tmp_path / 'p.npz'), 'the file name must end in .npy'),
            (features, '{} exists and is not a probabilities file this '
             'project wrote'.format(features)),
            (str(tmp_path / 'list.npy'), '{} exists and is not the names of '
             'the probabilities file'.format(tmp_path / 'list.txt'))]:
        err = refused(capsys, googlenet_predict.main, '--model', model_1000,
                      '--probabilities', path, photos[0])
        assert message in err, err
    err = refused(capsys, googlenet_predict.main, '--model', model_1000,
                  '--probabilities', npy, '--features', features, photos[0])
    assert 'so --probabilities would have no classes to write' in err


def test_json_never_holds_nan(capsys, tmp_path, model_3):
    # Finite weights (a NaN one is refused at load) whose logits overflow.
    model, _ = model_file.load_model(model_3)
    model.loss3_fc.W.array[:] = numpy.finfo(numpy.float32).max
    broken = str(tmp_path / 'overflow.model')
    model_file.save_model(broken, model, ['a', 'b', 'c'])
    good = tmp_path / 'good.png'
    Image.fromarray(PHOTO).save(good)
    code = googlenet_predict.main(['--model', broken, '--json', str(good)])
    out, err = capsys.readouterr()
    assert code == 1
    reason = ('the model gave non-finite probabilities (NaN or infinity): '
              'its weights are broken')
    assert json.loads(out) == {'input': str(good), 'error': reason}
    assert err == 'error: {}: {}\n'.format(good, reason)


# pool5 sums the products of the whole path but loss3/classifier's 1024.
POOL5_TERMS = PATH_TERMS - 1024


def save_png(path, colour, rng):
    noise = rng.randint(-40, 40, (40, 50, 3))
    array = numpy.clip(numpy.array(colour) + noise, 0, 255)
    Image.fromarray(array.astype(numpy.uint8)).save(path)
    return str(path)


def test_features_are_pool5_in_input_order(model_1000, tmp_path, capsys,
                                           rng):
    paths = [save_png(tmp_path / name, colour, rng) for name, colour in
             (('b.png', (200, 40, 40)), ('a.png', (40, 200, 40)),
              ('c.png', (40, 40, 200)))]
    missing = str(tmp_path / 'missing.png')
    out = str(tmp_path / 'features.npz')
    code = googlenet_predict.main(['--model', model_1000, '--features', out,
                                   '-b', '2', paths[0], missing, paths[1],
                                   paths[2]])
    printed, err = capsys.readouterr()
    assert code == 1  # as prediction: the missing input fails, alone
    assert err == 'error: {}: no such file\n'.format(missing)
    assert printed == 'wrote pool5 features of 3 inputs to {}\n'.format(out)
    with numpy.load(out) as npz:
        assert list(npz['inputs']) == paths
        features = npz['features']
    assert features.shape == (3, 1024) and features.dtype == numpy.float32

    model, _ = model_file.load_model(model_1000)
    x = numpy.stack([images.preprocess(images.open_image(p))
                     for p in paths])
    with chainer.no_backprop_mode(), chainer.using_config('train', False):
        expected = model.features(x)[2].array.reshape(3, 1024)
    assert_close(features, expected, terms=POOL5_TERMS)
    assert not numpy.allclose(features[0], features[1])

    npy = str(tmp_path / 'features.npy')
    assert googlenet_predict.main(['--model', model_1000, '--features', npy,
                                   paths[1]]) == 0
    capsys.readouterr()
    assert_close(numpy.load(npy), expected[1:2], terms=POOL5_TERMS)
    with open(str(tmp_path / 'features.txt'), 'rb') as f:
        assert f.read() == os.fsencode(paths[1]) + b'\n'  # reopens it


def test_features_file_name_is_checked_first(model_1000, tmp_path, capsys):
    code = googlenet_predict.main(['--model', model_1000, '--features',
                                   str(tmp_path / 'f.csv')])
    assert code == 1
    assert capsys.readouterr().err == (
        'error: --features {}: the file name must end in .npz or .npy\n'
        .format(tmp_path / 'f.csv'))
    assert not os.listdir(str(tmp_path))


def test_features_with_a_table_of_classes_is_refused_before_any_work(
        capsys, tmp_path, model_1000):
    image = tmp_path / 'a.png'
    image.write_bytes(png_bytes())
    for option in (['--csv', str(tmp_path / 'r.csv')], ['--json'],
                   ['--csv', '-']):
        code, out, err = predict(capsys, '--model', model_1000, '--features',
                                 str(tmp_path / 'f.npz'), *option, str(image))
        assert (code, out) == (1, '')
        assert err == ('error: --features saves pool5 vectors instead of '
                       'classes, so {} would have no classes to write: '
                       'classify and extract features in two runs\n'.format(
                           option[0]))
    assert sorted(os.listdir(tmp_path)) == ['a.png']


@pytest.mark.parametrize('output', ['--csv', '--features'])
def test_ctrl_c_keeps_the_results_done_and_says_where_to_go_on(
        tmp_path, model_1000, server, output):
    # Eight URLs; the sixth hangs until the test ends, so the run is
    # interrupted with exactly five done, whatever the machine's speed.
    released = threading.Event()

    def stuck(handler):
        released.wait(120)
    for i in range(8):
        server.routes['/{}.png'.format(i)] = png_bytes((30 * i, 90, 60))
    server.routes['/5.png'] = stuck
    urls = [server.url('/{}.png'.format(i)) for i in range(8)]
    path = tmp_path / ('r.csv' if output == '--csv' else 'f.npz')
    process = subprocess.Popen(
        [sys.executable, os.path.join(ROOT, 'googlenet_predict.py'),
         '--model', model_1000, '--timeout', '300', '-b', '1', output,
         str(path)]
        + [argument for url in urls for argument in ('-u', url)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.monotonic() + 120
        while '/5.png' not in [p for p, _ in server.requests]:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        time.sleep(3)  # the five before it through the network
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=120)
    finally:
        process.kill()
        released.set()
    assert process.returncode == 130, err
    assert err == ('interrupted after 5 of 8 inputs: {} holds their '
                   'results; the first not done is {}: give it and those '
                   'after it to a second run with another {} name (the same '
                   'name would be written over)\ninterrupted\n'
                   .format(path, urls[5], output))
    if output == '--csv':
        with open(path, newline='') as f:
            done = [row[0] for row in list(csv.reader(f))[1:]]
    else:
        with numpy.load(path) as npz:
            done = list(npz['inputs'])
            assert npz['features'].shape == (5, 1024)
    assert done == urls[:5]


def test_a_long_output_name_is_refused_before_any_image_is_read(
        capsys, tmp_path, model_1000):
    image = tmp_path / 'a.png'
    image.write_bytes(png_bytes())
    code, out, err = predict(capsys, '--model', model_1000, '--csv',
                             str(tmp_path / ('r' * 246 + '.csv')),
                             str(image))
    assert (code, out) == (1, '')
    assert err.startswith('error: --csv ') and 'its name is too long ' \
        '(250 bytes' in err and err.count('\n') == 1
