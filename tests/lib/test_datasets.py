"""datasets: class folders, list files, the split, the data report."""
import io
import os
import shutil
import sys
import threading

import pytest
from PIL import Image

from googlenet_chainer import (data_report, datasets, errors, images,
                               labels, model_file)
from googlenet_chainer.devices import get_device
from googlenet_chainer.inference import Predictor
from googlenet_chainer.training import feature_cache

from helpers import sha1_of
from image_fixtures import PHOTO, make_classes


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_folders_named_with_control_characters_are_refused(tmp_path):
    data = make_classes(tmp_path / 'd', {'a\nb': 1, 'c\x1b[2J': 1,
                                         'plain': 1})
    with pytest.raises(errors.UserError) as e:
        datasets.read_folder(data)
    assert str(e.value) == ('class folder {}/a\\nb has a control character '
                            'in its name (\\n): rename it'.format(data))
    os.rename(os.path.join(data, 'a\nb'), os.path.join(data, 'ab'))
    with pytest.raises(errors.UserError) as e:
        datasets.read_folder(data, ['ab', 'plain'])
    assert str(e.value) == ('class folder {}/c\\x1b[2J has a control '
                            'character in its name (\\x1b): rename it'
                            .format(data))


def test_a_folder_that_is_no_class_is_named_in_its_shown_form(tmp_path):
    data = make_classes(tmp_path / 'd', {b'caf\xe9': 1})
    with pytest.raises(errors.UserError) as e:
        datasets.read_folder(data, ['ant', 'bee'])
    assert str(e.value) == ("{}: folder 'caf\\xe9' is not one of the 2 "
                            "training classes (ant, bee)".format(data))


def test_accents_composed_on_one_system_and_decomposed_on_another_match(
        tmp_path):
    # macOS stores a folder named café as 'cafe' + U+0301; the validation
    # folder made elsewhere, the label file and a list file say U+00E9.
    composed, decomposed = 'caf\u00e9', 'cafe\u0301'
    train = make_classes(tmp_path / 't', {decomposed: 1, 'tea': 1})
    val = make_classes(tmp_path / 'v', {composed: 1, 'tea': 1})
    assert datasets.read_folder(train).class_names == [composed, 'tea']
    got = datasets.read_folder(val, [decomposed, 'tea'])
    assert [label for _, label in got.pairs] == [0, 1]
    names = tmp_path / 'names.txt'
    names.write_text(decomposed + '\ntea\n', encoding='utf-8')
    assert labels.read_labels(str(names)) == [composed, 'tea']
    listing = tmp_path / 'l.txt'
    listing.write_text(composed + '/0.png 0\n', encoding='utf-8')
    assert datasets.read_dataset(str(listing), train).pairs == [
        (os.path.join(train, decomposed, '0.png'), 0)]
    make_classes(tmp_path / 't', {composed: 1})
    with pytest.raises(errors.UserError) as e:
        datasets.read_folder(train)
    assert 'both make class ' + composed in str(e.value)


def test_list_file_with_bom_crlf_and_spaces(capsys, tmp_path):
    data = make_classes(tmp_path / 'd', {'a': 2, 'b': 2})
    os.rename(tmp_path / 'd' / 'a' / '0.png', tmp_path / 'd' / 'a' /
              'my photo 0.png')
    listing = tmp_path / 'l.txt'
    listing.write_bytes('\ufeffa/my photo 0.png 0\r\na/1.png 0\r\n'
                        'b/0.png 1\r\nb/1.png  1\r\n\r\n'.encode('utf-8'))
    names = tmp_path / 'names.txt'
    names.write_bytes(b'\xef\xbb\xbfant\r\nbig cat\r\n')
    assert labels.read_labels(str(names)) == ['ant', 'big cat']
    names.write_bytes('ant\r\ncaf\xe9\r\n'.encode('latin-1'))
    with pytest.raises(errors.UserError) as e:
        labels.read_labels(str(names))
    assert str(e.value) == ('label file {} is not UTF-8 text (byte 0xe9 at '
                            'offset 8): save it as UTF-8'.format(names))
    got = datasets.read_dataset(str(listing), data).pairs
    assert got == [(os.path.join(data, 'a/my photo 0.png'), 0),
                   (os.path.join(data, 'a/1.png'), 0),
                   (os.path.join(data, 'b/0.png'), 1),
                   (os.path.join(data, 'b/1.png'), 1)]


def test_a_list_file_read_from_a_pipe_keeps_its_first_bytes(tmp_path):
    # train_googlenet.py --train <(grep ...) hands over a pipe: asking
    # whether it is an image must not read its first line away.
    data = make_classes(tmp_path / 'd', {'a': 1, 'b': 1})
    fifo = str(tmp_path / 'list')
    os.mkfifo(fifo)

    def write():
        with open(fifo, 'w') as f:
            f.write('a/0.png 0\nb/0.png 1\n')
    got = []
    threading.Thread(target=write, daemon=True).start()
    reader = threading.Thread(target=lambda: got.append(
        datasets.read_dataset(fifo, data).pairs), daemon=True)
    reader.start()
    reader.join(10)
    assert got == [[(os.path.join(data, 'a/0.png'), 0),
                    (os.path.join(data, 'b/0.png'), 1)]]


def test_an_image_in_two_classes_or_in_both_sets_is_warned_of(tmp_path):
    for name in ('a.png', 'b.png', 'c.png'):
        Image.new('RGB', (8, 8)).save(str(tmp_path / name))
    (tmp_path / 'link.png').symlink_to(tmp_path / 'a.png')
    a, b, c, link = (str(tmp_path / n) for n in
                     ('a.png', 'b.png', 'c.png', 'link.png'))
    lines = data_report.data_warnings(
        [(a, 0), (link, 1), (b, 1), (c, 0)], [(b, 1)], ['x', 'y'], 2)
    assert lines == [
        '1 image is in more than one class (by file, links followed), e.g. '
        '{}: each counts in every class it is in; check the folders or the '
        'list'.format(a),
        '1 validation image is also in the training set, e.g. {}: the '
        'validation accuracy overstates what the model does on new '
        'images'.format(b)]
    assert data_report.data_warnings([(a, 0), (b, 1)], [(c, 0), (c, 1)],
                                     ['x', 'y'], 2) == []


def test_a_one_colour_image_is_left_out_of_training_with_its_reason(
        tmp_path):
    blank, photo = str(tmp_path / 'blank.png'), str(tmp_path / 'photo.png')
    Image.new('RGB', (30, 20), (12, 34, 56)).save(blank)
    Image.fromarray(PHOTO).save(photo)
    good, bad = datasets.drop_unreadable([(blank, 0), (photo, 1)],
                                         show=False)
    assert good == [(photo, 1)]
    assert bad == ['{}: one colour throughout (RGB 12, 34, 56): nothing to '
                   'classify'.format(blank)]


def test_progress_bars_only_on_a_terminal_and_never_with_no_progress(
        capsys, tmp_path, monkeypatch, model_3):
    data = make_classes(tmp_path / 'd', {'a': 3, 'b': 3})
    pairs = datasets.read_folder(data).pairs
    for stream, show, expect in ((Terminal(), True, True),
                                 (Terminal(), False, False),
                                 (io.StringIO(), True, False)):
        monkeypatch.setattr(sys, 'stderr', stream)
        datasets.drop_unreadable(pairs, show=show)
        text = stream.getvalue()
        assert ('checking images: 100%' in text and '6/6' in text
                and 'image/s]' in text) == expect, text
        if not expect:
            assert text == ''
    model, _ = model_file.load_model(model_3)
    monkeypatch.setattr(sys, 'stderr', Terminal())
    feature_cache.cached_features(
        Predictor(model, get_device('@numpy')),
        [(path, sha1_of(path)) for path, _ in pairs[:2]],
        str(tmp_path / 'f.npy'), 2, 0, 60)
    text = sys.stderr.getvalue()
    assert 'trunk features: 100%' in text and '2/2 [' in text
    assert '<' in text  # elapsed<left


def test_stratified_split_is_seeded_and_per_class():
    pairs = [('{}{}'.format(c, i), c) for c in range(3) for i in range(20)]
    train, val = datasets.stratified_split(pairs, 0.1, seed=3)
    again = datasets.stratified_split(pairs, 0.1, seed=3)
    assert (train, val) == again
    assert sorted(label for _, label in val) == [0, 0, 1, 1, 2, 2]
    assert len(train) == 54 and not set(train) & set(val)


def test_a_copy_in_another_class_or_set_is_found_by_its_content(tmp_path):
    a, copy, b, b_copy = (str(tmp_path / name) for name in (
        'a.png', 'copy.png', 'b.png', 'b_copy.png'))
    Image.fromarray(PHOTO).save(a)
    Image.fromarray(PHOTO[::-1]).save(b)
    shutil.copy(a, copy)
    shutil.copy(b, b_copy)
    digests = {path: sha1_of(path) for path in (a, copy, b, b_copy)}
    lines = data_report.data_warnings(
        [(a, 0), (copy, 1), (b, 1)], [(b_copy, 1)], ['x', 'y'], 2, digests,
        reweighted=False)
    assert lines[0].startswith('class x has a single image')
    assert lines[1:] == [
        '1 image is in more than one class (the same content), e.g. {}: '
        'each counts in every class it is in; check the folders or the '
        'list'.format(a),
        '1 validation image is also in the training set (the same '
        'content), e.g. {}: the validation accuracy overstates what the '
        'model does on new images'.format(b_copy)]


def test_a_rare_class_warning_says_what_the_run_does_about_it():
    train = [('a{}'.format(i), 0) for i in range(9)] + [('b', 1)]
    val = [('c', 0), ('d', 1)]
    for reweighted, does in ((False, 'the run does not re-weight classes'),
                             (True, 'its loss is weighted up '
                              '(--class-weight balanced)')):
        assert data_report.data_warnings(
            train, val, ['x', 'y'], 4, reweighted=reweighted) == [
            'class y has 1 training image, 9x fewer than the commonest (9): '
            '{}; watch its recall in the per-class report'.format(does)]


def test_a_folder_link_to_a_folder_above_is_passed_over(tmp_path):
    """Followed, it would list a class folder's siblings as its own; a
    link to a folder elsewhere is followed."""
    for name in ('cat', 'dog', 'elsewhere'):
        (tmp_path / name).mkdir()
        Image.new('RGB', (8, 8)).save(str(tmp_path / name / 'a.png'))
    (tmp_path / 'cat' / 'up').symlink_to('..')
    (tmp_path / 'cat' / 'self').symlink_to('.')
    (tmp_path / 'cat' / 'more').symlink_to(tmp_path / 'elsewhere')
    found, skipped = images.list_images(str(tmp_path / 'cat'), recursive=True)
    assert found == [str(tmp_path / 'cat' / 'a.png'),
                     str(tmp_path / 'cat' / 'more' / 'a.png')]
    assert skipped == {'link to a folder above it': 2}
    # Training reads each class folder so: cat's images are its own.
    data = datasets.read_folder(str(tmp_path))
    assert sorted(data.pairs) == [
        (str(tmp_path / 'cat' / 'a.png'), 0),
        (str(tmp_path / 'cat' / 'more' / 'a.png'), 0),
        (str(tmp_path / 'dog' / 'a.png'), 1),
        (str(tmp_path / 'elsewhere' / 'a.png'), 2)]
