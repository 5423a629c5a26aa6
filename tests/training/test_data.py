"""training.data: the run's data read, checked, split and reported; the
image dataset's crops."""
import os

import numpy
import pytest
from PIL import Image

import train_googlenet
from googlenet_chainer import datasets, errors, reports
from googlenet_chainer.training import data as tdata, sampling

from image_fixtures import PHOTO, QUIET, make_classes


def args_for(*argv):
    return train_googlenet.build_parser().parse_args(list(argv) + QUIET)


def prepare(capsys, n_classes, *argv):
    """prepare_data's sets and class names, and its report, without
    training (the files it left out are in the report)."""
    args = args_for(*argv)
    data = tdata.prepare_data(args, n_classes)
    return ((data.pairs, data.val_pairs, data.class_names),
            capsys.readouterr().out, args)


def test_training_refuses_images_over_its_pixel_limit(capsys, tmp_path):
    data = make_classes(tmp_path / 'd', {'a': 3, 'b': 3})
    Image.new('RGB', (60, 60)).save(tmp_path / 'd' / 'a' / 'big.png')
    (train, val, _), out, _ = prepare(capsys, 2, '--train', data,
                                      '--max-pixels', '3000')
    assert 'left out {}: larger than the pixel limit (3600 ' \
        'pixels > 3000'.format(tmp_path / 'd' / 'a' / 'big.png') in out
    assert len(train) + len(val) == 6


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
    os.symlink(tmp_path / 'd' / 'cat', nested / 'loop')  # not followed
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
    assert ('skipped 8 entries: 5 hidden, 1 link to a folder above it, 1 '
            'not an image file (.txt), 1 outside the class folders') in out


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
    report = reports.format_report(reports.class_report(
        numpy.array([[2, 0, 0], [0, 0, 0], [0, 1, 1]]), names))
    # precision, recall, F1, support
    assert report.splitlines()[2].split() == ['0.000', '0.000', '0.000',
                                              '0', 'checks']


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
    with pytest.raises(errors.UserError, match='--labels names the '
                       'classes of a list file; the classes of .* are its '
                       'folder names'):
        prepare(capsys, 3, '--train', data, '--labels', str(names_file))
    names_file.write_text('ant\nbee\n')
    with pytest.raises(errors.UserError,
                       match='names.txt has 2 classes but the model has 3'):
        prepare(capsys, 3, '--train', str(listing), '--root', data,
                '--labels', str(names_file))


def test_data_that_cannot_train_well_is_reported_before_training(
        capsys, tmp_path):
    data = make_classes(tmp_path / 'd', {'many': 9, 'one': 1, 'two': 4})
    (train, val, _), out, args = prepare(capsys, 3, '--train', data,
                                         '--val-ratio', '0.2', '-B', '16')
    assert len(train) == 11  # plan.plan_run lowers the batch
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
    _, val = datasets.stratified_split(pairs, 0.9, seed=0)
    assert [label for _, label in val] == [0]  # b's only image trains


def test_crops_come_from_seed_epoch_and_index(dataset):
    pairs = datasets.read_folder(dataset).pairs
    images = tdata.ImageDataset(pairs, True, seed=3)
    order = sampling.SeededOrder(3)
    first = order(numpy.arange(len(pairs)), 0)
    second = order(first, 0)
    assert sorted(first % len(pairs)) == list(range(len(pairs)))
    assert not numpy.array_equal(first % len(pairs), second % len(pairs))
    assert numpy.array_equal(second, order(first, 0))
    index = int(first[0])
    assert numpy.array_equal(images[index][0], images[index][0])
    crops = {images[index + k * len(pairs)][0].tobytes() for k in range(4)}
    assert len(crops) > 1  # another epoch, another crop
