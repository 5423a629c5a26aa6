"""evaluate_googlenet.py through main()."""
import csv
import json
import os
import shutil

import numpy
import pytest

import evaluate_googlenet
import train_googlenet
from googlenet_chainer import images, model_file, model_store, report_files

from helpers import FIVE, Page, one_error_line, without_cupy
from image_fixtures import QUIET, make_images
from numeric import assert_probabilities_close


def run(capsys, *argv):
    code = evaluate_googlenet.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_scores_agree_with_an_independent_count(five_class_model, tmp_path,
                                                capsys, rng):
    data = str(tmp_path / 'test')
    made = make_images(data, {'cat': (200, 60, 40), 'ant': (40, 60, 200),
                              'eel': (60, 200, 40)}, 2, rng)
    out = str(tmp_path / 'eval')
    code, printed, err = run(capsys, '--model', five_class_model, '--data',
                             data, '--json', '-b', '4', '--out', out)
    assert code == 0 and err == ''  # no progress bar off a terminal
    report = json.loads(printed)

    # The same predictions, counted here: one batch, sorted by path.
    model, _ = model_file.load_model(five_class_model)
    made.sort()
    x = numpy.stack([images.preprocess(images.open_image(p))
                     for p, _ in made])
    probs = model.predict(x)
    truth = numpy.array([FIVE.index(name) for _, name in made])
    order = numpy.argsort(-probs, axis=1)
    assert report['images'] == 6
    assert report['top1'] == pytest.approx(numpy.mean(order[:, 0] == truth))
    # Five classes: a top-5 would always be 1; top-4 is what can fall.
    assert 'top5' not in report and report['top_k'] == 4
    assert report['top4'] == pytest.approx(numpy.mean(
        [t in row[:4] for t, row in zip(truth, order)]))
    confusion = numpy.zeros((5, 5), int)
    for t, p in zip(truth, order[:, 0]):
        confusion[t, p] += 1
    assert report['confusion'] == confusion.tolist()
    rows = {row['class']: row for row in report['classes']}
    assert list(rows) == FIVE
    assert [rows[name]['support'] for name in FIVE] == [2, 0, 2, 0, 2]
    for i, name in enumerate(FIVE):
        hits = confusion[i, i]
        precision = hits / confusion[:, i].sum() if confusion[:, i].sum() \
            else 0.0
        recall = hits / confusion[i].sum() if confusion[i].sum() else 0.0
        assert rows[name]['precision'] == pytest.approx(precision)
        assert rows[name]['recall'] == pytest.approx(recall)
        f1 = 2 * precision * recall / (precision + recall) if hits else 0.0
        assert rows[name]['f1'] == pytest.approx(f1)
    wrong = [(p, FIVE[t], probs[i]) for i, ((p, _), t) in
             enumerate(zip(made, truth)) if order[i, 0] != t]
    assert [m['input'] for m in report['misclassified']] == \
        [p for p, _, _ in wrong]
    for item, (_, true, row) in zip(report['misclassified'], wrong):
        assert item['true'] == true
        assert [p['class'] for p in item['predictions']] == [
            FIVE[j] for j in numpy.argsort(-row)[:5]]
        assert_probabilities_close(
            [p['probability'] for p in item['predictions']],
            numpy.sort(row)[::-1][:5])
    assert 0 < len(wrong) < 6  # the scores above were not trivial

    with open(os.path.join(out, 'report.json')) as f:
        assert json.load(f) == report
    with open(os.path.join(out, 'report.txt')) as f:
        assert f.read().startswith('top-1 accuracy')
    for name in ('confusion.png', 'confusion_normalized.png'):
        with open(os.path.join(out, name), 'rb') as f:
            assert f.read(8) == b'\x89PNG\r\n\x1a\n'
    assert sorted(os.listdir(out)) == sorted(report_files.FILES)
    # predictions.csv: the same scores, image by image.
    with open(os.path.join(out, 'predictions.csv'), newline='') as f:
        rows = list(csv.DictReader(f))
    assert [row['input'] for row in rows] == [p for p, _ in made]
    for row, t, p in zip(rows, truth, probs):
        assert (int(row['true_index']), row['true_name']) == (t, FIVE[t])
        assert int(row['predicted_index']) == numpy.argmax(p)
        assert row['correct'] == str(numpy.argmax(p) == t)
        assert_probabilities_close([float(row['probability_{}'.format(k)])
                                    for k in range(1, 6)],
                                   numpy.sort(p)[::-1])
    # The page: every image inline, the mistakes all shown (fewer than
    # it shows), by their wrong class's probability within their pair.
    page = Page(os.path.join(out, 'report.html'))
    assert len(page.inline_images()) == len(wrong)
    shown = sorted(wrong, key=lambda item: -item[2].max())
    pairs = list(dict.fromkeys((true, row.argmax())
                               for _, true, row in shown))
    assert page.mistakes == [os.path.relpath(path, data) for pair in pairs
                             for path, true, row in shown
                             if (true, row.argmax()) == pair]


def test_imagenet_wnid_folders_and_list_files(model_1000, tmp_path, capsys,
                                              rng):
    data = str(tmp_path / 'val')
    made = make_images(data, {'n02123045': (120, 110, 90),
                              'n01440764': (40, 90, 60)}, 1, rng)
    code, printed, err = run(capsys, '--model', model_1000, '--data', data,
                             '--json')
    assert code == 0, err
    report = json.loads(printed)
    rows = {row['class'].split()[0]: row for row in report['classes']}
    assert rows['n01440764']['support'] == 1
    assert rows['n02123045']['support'] == 1
    assert report['images'] == 2
    model, _ = model_file.load_model(model_1000)
    probs = model.predict(numpy.stack([images.preprocess(
        images.open_image(path)) for path, _ in sorted(made)]))
    truth = [0, 281]  # n01440764 and n02123045 in synset_words.txt
    top1 = numpy.mean([numpy.argmax(p) == t for p, t in zip(probs, truth)])
    top5 = numpy.mean([t in numpy.argsort(-p)[:5]
                       for p, t in zip(probs, truth)])
    assert (report['top1'], report['top5']) == (pytest.approx(top1),
                                                pytest.approx(top5))

    # Caffe's val.txt: relative paths and class indices.
    listing = tmp_path / 'val.txt'
    listing.write_text('n01440764/0.png 0\nn02123045/0.png 281\n')
    code, printed, err = run(capsys, '--model', model_1000, '--data',
                             str(listing), '--root', data, '--json')
    assert code == 0, err
    again = json.loads(printed)
    assert (again['top1'], again['top5'], again['confusion']) == (
        report['top1'], report['top5'], report['confusion'])


def test_bad_inputs_are_one_line_errors(five_class_model, tmp_path, capsys,
                                        rng):
    code, _, err = run(capsys, '--model', five_class_model, '--data',
                       str(tmp_path / 'missing'))
    assert (code, err) == (1, 'error: no such dataset: {}\n'.format(
        tmp_path / 'missing'))

    data = str(tmp_path / 'test')
    make_images(data, {'cat': (200, 60, 40), 'zebra': (9, 9, 9)}, 1, rng)
    code, _, err = run(capsys, '--model', five_class_model, '--data', data)
    assert code == 1 and err.startswith('error: ') and "'zebra'" in err
    assert err.count('\n') == 1
    code, _, err = run(capsys, '--model', five_class_model, '--data', data,
                       '--root', str(tmp_path / 'typo'))
    assert (code, err) == (1, "error: --root is the folder a list file's "
                           "paths are relative to, and {} is a folder of "
                           "class folders: leave --root out\n".format(data))

    listing = tmp_path / 'list.txt'
    listing.write_text('{} 7\n'.format(os.path.join(data, 'cat', '0.png')))
    code, _, err = run(capsys, '--model', five_class_model, '--data',
                       str(listing))
    assert code == 1 and 'label 7 is out of range' in err
    assert err.count('\n') == 1

    # --out naming a file is refused before any scoring.
    code, _, err = run(capsys, '--model', five_class_model, '--data', data,
                       '--out', str(listing))
    assert (code, err) == (1, 'error: --out {} is a file, not a folder\n'
                           .format(listing))

    # A folder of images without class folders.
    code, _, err = run(capsys, '--model', five_class_model, '--data',
                       os.path.join(data, 'cat'))
    assert (code, err) == (1, 'error: {} holds 1 image but no class '
                           'sub-folders: put each class\'s images in a folder '
                           'named after the class\n'.format(
                               os.path.join(data, 'cat')))

    # An unreadable image is reported; the others are still scored.
    os.rename(os.path.join(data, 'zebra'), os.path.join(data, 'dog'))
    broken = os.path.join(data, 'dog', 'broken.png')
    with open(broken, 'wb') as f:
        f.write(b'\x89PNG\r\n\x1a\n not really')
    code, printed, err = run(capsys, '--model', five_class_model, '--data',
                             data, '--json')
    assert code == 1
    assert err.startswith('error: {}: '.format(broken))
    assert err.count('\n') == 1
    report = json.loads(printed)
    assert report['images'] == 2
    assert report['unreadable'] == [err[len('error: '):].strip()]
    # The table says so too, under the accuracy of the images scored.
    code, printed, _ = run(capsys, '--model', five_class_model, '--data',
                           data)
    lines = printed.splitlines()
    assert lines[0].startswith('top-1 accuracy') and lines[0].endswith(
        'of 2 images)')
    assert lines[2:4] == ['left out, could not be used (1 file):',
                          '  ' + report['unreadable'][0]]

    model, _ = model_file.load_model(five_class_model)
    # Finite weights (a NaN one is refused at load) whose logits overflow.
    model.loss3_fc.W.array[:] = numpy.finfo(numpy.float32).max
    nan_model = str(tmp_path / 'overflow.model')
    model_file.save_model(nan_model, model, FIVE)
    code, printed, err = run(capsys, '--model', nan_model, '--data', data)
    assert (code, printed) == (1, '')
    assert err.endswith('\nerror: {} gave non-finite probabilities (NaN or '
                        'infinity): its weights are broken\n'.format(
                            nan_model))

    code, _, err = run(capsys, '--model', str(tmp_path / 'none.model'),
                       '--data', data)
    assert code == 1 and err.startswith('error: model file not found')


def test_out_in_the_data_missing_or_unwritable_is_refused_first(
        five_class_model, tmp_path, capsys, rng, monkeypatch, locked_folder):
    data = str(tmp_path / 'test')
    make_images(data, {'cat': (200, 60, 40)}, 1, rng)
    listing = tmp_path / 'list.txt'
    listing.write_text('cat/0.png 2\n')
    inside = os.path.join(data, 'cat', 'eval')
    nowhere = str(tmp_path / 'nonexistent' / 'x' / 'y')
    for argv, message in [
            (['--data', data, '--out', inside],
             '--out {} lies inside the input folder {}; choose a place '
             'outside it'.format(inside, data)),
            (['--data', data, '--out', data],
             '--out {0} is the input folder {0}'.format(data)),
            (['--data', str(listing), '--root', data, '--out', inside],
             'lies inside the input folder {}'.format(data)),
            # Only the last level is made, never its missing parents.
            (['--data', data, '--out', nowhere],
             '--out in {}: no such folder'.format(os.path.dirname(nowhere)))]:
        code, printed, err = run(capsys, '--model', five_class_model, *argv)
        assert (code, printed) == (1, '') and err.count('\n') == 1, err
        assert err.startswith('error: cannot write ' if 'such' in message
                              else 'error: ') and message in err, err
    assert sorted(os.listdir(data)) == ['cat'] and not os.path.exists(inside)
    assert not os.path.exists(str(tmp_path / 'nonexistent'))

    locked = locked_folder()
    for out in (locked, os.path.join(locked, 'new')):  # there, or to make
        code, printed, err = run(capsys, '--model', five_class_model,
                                 '--data', data, '--out', out)
        assert (code, printed, err) == (1, '', 'error: cannot write --out in '
                                        '{}: Permission denied\n'.format(
                                            locked))
    monkeypatch.undo()
    made = str(tmp_path / 'eval')
    code, _, _ = run(capsys, '--model', five_class_model, '--data', data,
                     '--out', made)
    assert code == 0 and 'report.json' in os.listdir(made)
    # An evaluation replaces an evaluation's report, not a training run's;
    # nor does a training run replace an evaluation's.
    assert run(capsys, '--model', five_class_model, '--data', data,
               '--out', made)[0] == 0
    shutil.copytree(made, str(tmp_path / 'run'))
    (tmp_path / 'run' / 'run.json').write_text('{}')
    before = (tmp_path / 'run' / 'report.json').read_bytes()
    code, printed, err = run(capsys, '--model', five_class_model, '--data',
                             data, '--out', str(tmp_path / 'run'))
    assert (code, printed, err) == (
        1, '', "error: --out {} is a training run's folder (run.json): the "
        "evaluation would replace the run's report files; give another "
        "folder\n".format(tmp_path / 'run'))
    assert (tmp_path / 'run' / 'report.json').read_bytes() == before
    kept = {name: open(os.path.join(made, name), 'rb').read()
            for name in os.listdir(made)}
    assert train_googlenet.main(['--train', data, '--model', five_class_model,
                                 '--out', made] + QUIET) == 1
    assert one_error_line(capsys) == (
        "error: --out {} holds report.json, and no training run: the run's "
        "report would replace it; pass another --out\n".format(made))
    assert kept == {name: open(os.path.join(made, name), 'rb').read()
                    for name in os.listdir(made)}
    # Nor does an evaluation replace files of the user's own there.
    mine = tmp_path / 'mine'
    mine.mkdir()
    (mine / 'report.html').write_text('<html>mine</html>')
    code, printed, err = run(capsys, '--model', five_class_model, '--data',
                             data, '--out', str(mine))
    assert (code, printed, err) == (
        1, '', "error: --out {} holds report.html, and no report of this "
        "project's beside it: it is kept; give another folder\n".format(mine))
    assert (mine / 'report.html').read_text() == '<html>mine</html>'


def test_duplicate_labels_and_colliding_folders_are_refused(
        five_class_model, tmp_path, capsys, rng):
    labels = tmp_path / 'labels.txt'
    labels.write_text('ant\nbee\ncat\ndog\nbee\n')
    data = str(tmp_path / 'test')
    make_images(data, {'ant': (40, 60, 200)}, 1, rng)
    code, out, err = run(capsys, '--model', five_class_model, '--data', data,
                         '--labels', str(labels))
    assert code == 1 and out == ''
    assert err == ('error: label file {}: bee is on lines 2 and 5; class '
                   'names must differ\n'.format(labels))
    # A folder whose undecodable byte reads as another's literal name.
    make_images(data, {'caf\\xe9': (90, 90, 30)}, 1, rng)
    os.rename(os.path.join(os.fsencode(data), b'ant'),
              os.path.join(os.fsencode(data), b'caf\xe9'))
    code, out, err = run(capsys, '--model', five_class_model, '--data', data)
    assert code == 1 and out == ''
    assert err == ('error: class folders {0}/caf\\\\xe9 and {0}/caf\\xe9 '
                   'both make class caf\\xe9 (undecodable bytes are written '
                   '\\xNN, accents composed): rename one\n'.format(data))


def test_without_model_it_uses_predicts_default(five_class_model, tmp_path,
                                                capsys, dataset_root):
    data = str(tmp_path / 'test')
    make_images(data, {'cat': (200, 60, 40), 'ant': (40, 60, 200)}, 1,
                numpy.random.RandomState(0))
    code, out, err = run(capsys, '--data', data)
    default = model_store.default_model()
    assert (code, out) == (1, '')
    assert err == ('error: no model at {}, the default: googlenet_predict.py '
                   'makes it on its first run; or pass --model\n'.format(
                       default))
    shutil.copy(five_class_model, default)
    code, out, err = run(capsys, '--data', data)
    assert code == 0, err
    assert 'top-1 accuracy' in out


@without_cupy
def test_device_is_predictions_option(five_class_model, tmp_path, capsys,
                                      rng):
    data = str(tmp_path / 'test')
    make_images(data, {'cat': (200, 60, 40), 'ant': (40, 60, 200)}, 1, rng)
    for device in (['-d', '@cupy:0'], ['-g', '0']):
        code, printed, err = run(capsys, '--model', five_class_model,
                                 '--data', data, *device)
        assert (code, printed) == (1, '')
        assert err == ('error: device @cupy:0 needs CuPy, which is not '
                       'installed; use @numpy (the CPU)\n')


def test_pixel_limit_is_predictions_option(five_class_model, tmp_path,
                                           capsys, rng):
    data = str(tmp_path / 'test')
    make_images(data, {'cat': (200, 60, 40), 'ant': (40, 60, 200)}, 1, rng)
    # 50 x 40 images: over a limit of 1999 pixels, each is left out.
    code, printed, err = run(capsys, '--model', five_class_model, '--data',
                             data, '--max-pixels', '1999')
    assert (code, printed) == (1, '')
    assert err.count('larger than the pixel limit (2000 pixels > 1999') == 2
    assert err.endswith('error: no readable images in {}\n'.format(data))
