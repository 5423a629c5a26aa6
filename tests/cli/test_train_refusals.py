"""train_googlenet.py's refusals: one line, exit 1, before any work."""
import os
import re
import shutil

import pytest
from PIL import Image

import train_googlenet
from googlenet_chainer import cli, datasets, errors, model_file
from googlenet_chainer.training import run_folder

from helpers import one_error_line, refused, run_training
from image_fixtures import PHOTO, QUIET, make_classes, make_dataset


def args_for(*argv):
    return train_googlenet.parse_arguments(list(argv))


def _refused(capsys, tmp_path, *argv):
    out = tmp_path / 'r'
    code = train_googlenet.main(list(argv) + ['--out', str(out)] + QUIET)
    captured = capsys.readouterr()
    assert code == 1
    assert captured.err.startswith('error: ') and captured.err.count(
        '\n') == 1, captured.err
    assert not (out / 'log').exists()
    return captured.err


def _snapshot(folder):
    """{path: bytes} of every file under folder."""
    return {os.path.join(d, name): open(os.path.join(d, name), 'rb').read()
            for d, _, names in os.walk(folder) for name in names}


def test_empty_class_folder(capsys, tmp_path, model_3):
    data = make_dataset(tmp_path / 'd', 2)
    os.makedirs(tmp_path / 'd' / 'zebra')
    err = _refused(capsys, tmp_path, '--train', data, '--model', model_3)
    assert 'class folder' in err and 'zebra has no images' in err


def test_single_class_named_in_its_shown_form(capsys, tmp_path, model_3):
    # A newline in the folder's name would split the one-line error.
    data = make_dataset(tmp_path / 'd\nx', 3, {'red': (200, 0, 0)})
    err = _refused(capsys, tmp_path, '--train', data, '--model', model_3)
    assert err == ('error: {}/d\\nx has a single class; fine-tuning a '
                   'classifier needs at least two\n'.format(tmp_path))


def test_one_image_per_class_says_why_nothing_is_held_out(capsys, tmp_path,
                                                          model_3):
    data = make_dataset(tmp_path / 'd', 1)
    err = _refused(capsys, tmp_path, '--train', data, '--model', model_3)
    assert 'no class of {} has two readable images, so none can be held ' \
        'out for validation: add images, or give --val'.format(data) in err


def test_list_label_out_of_range(capsys, tmp_path, dataset, model_3):
    listing = tmp_path / 'l.txt'
    listing.write_text('red/0.png 0\nred/1.png 1\nblue/0.png 7\n')
    err = _refused(capsys, tmp_path, '--train', str(listing), '--root',
                   dataset, '--model', model_3)
    assert 'label 7 is out of range for a model of 3 classes' in err


def test_root_without_a_list_file_is_refused(capsys, tmp_path, dataset,
                                             model_3):
    err = _refused(capsys, tmp_path, '--train', dataset, '--root',
                   str(tmp_path / 'nonexistent'), '--model', model_3)
    assert err == ("error: --root is the folder a list file's paths are "
                   "relative to, and {} is a folder of class folders: "
                   "leave --root out\n".format(dataset))
    listing = tmp_path / 'l.txt'
    listing.write_text('red/0.png 0\n')
    err = _refused(capsys, tmp_path, '--train', dataset, '--val',
                   str(listing), '--root', str(tmp_path / 'none'),
                   '--model', model_3)
    assert '--root is' not in err  # the list file uses it


def test_missing_dataset_path(capsys, tmp_path, model_3):
    err = _refused(capsys, tmp_path, '--train', str(tmp_path / 'nope'),
                   '--model', model_3)
    assert 'no such dataset' in err


def test_missing_path_in_list_file(capsys, tmp_path, dataset, model_3):
    listing = tmp_path / 'l.txt'
    listing.write_text('red/0.png 0\nred/gone.png 1\n')
    err = _refused(capsys, tmp_path, '--train', str(listing), '--root',
                   dataset, '--model', model_3)
    assert 'line 2: no such file' in err


def test_class_count_differs_from_the_model(capsys, tmp_path, model_3):
    data = make_dataset(tmp_path / 'd', 2, {'a': (0, 0, 0), 'b': (255,) * 3})
    err = _refused(capsys, tmp_path, '--train', data, '--model', model_3)
    assert 'has 2 classes but the model has 3' in err
    assert 'convert_caffe_model.py --classes 2' in err


def test_unreadable_model_file(capsys, tmp_path, dataset):
    bad = tmp_path / 'bad.model'
    bad.write_bytes(b'not a model')
    err = _refused(capsys, tmp_path, '--train', dataset, '--model', str(bad))
    assert 'cannot read model file' in err


@pytest.mark.parametrize('argv, message', [
    (['--cache-features', '--freeze-until', 'conv2'], '--cache-features '
     'keeps the frozen part\'s output at a cut from inc3a to inc5b '
     '(--freeze-until; conv2 now)'),
    (['--cache-features', '--freeze-until', 'None'], '(--freeze-until; none '
     'now): below, nearly the whole network trains'),
    (['--optimizer', 'adam', '--momentum', '0.95'], '--momentum applies only '
     'with --optimizer momentum; this run\'s is adam'),
    (['--lr-policy', 'cosine', '--gamma', '0.5'], '--gamma applies only '
     'with --lr-policy step; this run\'s is cosine'),
    (['--power', '2'], '--power applies only with --lr-policy poly; this '
     'run\'s is fixed'),
    (['--cache-views', '10'], '--cache-views applies only with '
     '--cache-features')])
def test_options_that_would_do_nothing_are_refused(
        capsys, tmp_path, dataset, model_3, argv, message):
    err = _refused(capsys, tmp_path, '--train', dataset, '--model', model_3,
                   *argv)
    assert message in err, err
    assert not (tmp_path / 'r').exists()


def test_unknown_freeze_layer(capsys, tmp_path, dataset, model_3):
    err = _refused(capsys, tmp_path, '--train', dataset, '--model', model_3,
                   '--freeze-until', 'inc9z')
    assert "unknown layer 'inc9z'" in err


@pytest.mark.parametrize('lr', ['-1', '0', 'nan'])
def test_lr_must_be_positive(lr, capsys):
    with pytest.raises(SystemExit) as exit:
        train_googlenet.build_parser().parse_args(['--train', 'x', '--lr',
                                                   lr])
    assert exit.value.code == 2
    assert 'expected a positive number' in capsys.readouterr().err


def test_paths_are_checked_before_any_work(
        cached_run, dataset, model_3, tmp_path, capsys, monkeypatch):
    (tmp_path / 'file').write_text('')
    assert run_training('--train', dataset, '--model', model_3, '--out',
                        str(tmp_path / 'file')) == 1
    assert 'is a file, not a folder' in one_error_line(capsys)
    assert run_training('--train', dataset, '--model', model_3, '--out',
                        str(tmp_path / 'r'), '--output',
                        str(tmp_path / 'file' / 'best.model')) == 1
    assert 'cannot write --output' in one_error_line(capsys)
    monkeypatch.setattr(run_folder.shutil, 'disk_usage',
                        lambda path: shutil._ntuple_diskusage(
                            10 ** 9, 10 ** 9 - 10 ** 6, 10 ** 6))
    assert cached_run(tmp_path / 'r', '--epoch',
                      '1') == 1
    err = one_error_line(capsys)
    assert 'not enough disk space' in err and '1 MB are free' in err
    assert not (tmp_path / 'r' / 'run.json').exists()


def test_every_option_says_its_default():
    for action in train_googlenet.build_parser()._actions:
        if action.dest != 'help':
            assert 'default' in action.help, action.dest
    parse = cli.snapshot_interval
    assert parse('2 epoch') == (2, 'epoch')
    assert parse('5') == (5, 'iteration')
    assert parse('3 iterations') == (3, 'iteration')
    with pytest.raises(Exception):
        parse('0 epoch')


def test_train_without_a_converted_model(dataset, tmp_path, capsys):
    assert run_training('--train', dataset, '--model',
                        str(tmp_path / 'none.model'),
                        '--out', str(tmp_path / 'r')) == 1
    assert 'run convert_caffe_model.py --classes N first' in \
        one_error_line(capsys)


def test_output_in_another_runs_folder_is_refused(capsys, tmp_path,
                                                  dataset, model_3):
    other = tmp_path / 'other'
    other.mkdir()
    (other / 'run.json').write_text('{}')
    (other / 'tuned_googlenet.model').write_bytes(b'its best model')
    err = _refused(capsys, tmp_path, '--train', dataset, '--model', model_3,
                   '--output', str(other / 'tuned_googlenet.model'))
    assert err == (
        "error: --output {} lies in another training run's folder ({} "
        "holds its run.json): its best model would be replaced; give a path "
        "outside it\n".format(other / 'tuned_googlenet.model', other))
    assert (other / 'tuned_googlenet.model').read_bytes() == \
        b'its best model'


def test_output_that_is_the_starting_model_is_refused(capsys, tmp_path,
                                                      dataset, model_3):
    before = open(model_3, 'rb').read()
    err = _refused(capsys, tmp_path, '--train', dataset, '--model', model_3,
                   '--output', model_3)
    assert '--output {} is the input'.format(model_3) in err
    assert open(model_3, 'rb').read() == before


@pytest.mark.parametrize('option, value', [
    ('--momentum', 'nan'), ('--momentum', '1'), ('--momentum', '-0.1'),
    ('--weight-decay', '-1'), ('--weight-decay', 'inf'), ('--seed', '-1'),
    ('--seed', '1.5'), ('--loaderjob', '-1')])
def test_optimizer_and_run_settings_are_checked(capsys, option, value):
    with pytest.raises(SystemExit) as exit:
        train_googlenet.build_parser().parse_args(['--train', 'x', option,
                                                   value])
    assert exit.value.code == 2
    err = capsys.readouterr().err
    assert re.search(r'argument {}(/-\w)?: expected'.format(option), err)
    assert err.count('\n') == 1 and err.endswith(
        ' --help lists the options)\n'), err


@pytest.mark.parametrize('words, interval', [
    (['2', 'epoch'], (2, 'epoch')), (['2 epochs'], (2, 'epoch')),
    (['3', 'iteration'], (3, 'iteration')), (['5'], (5, 'iteration'))])
def test_snapshot_interval_as_one_word_or_two(words, interval):
    args = args_for('--train', 'x', '--snapshot-interval', *words)
    assert args.snapshot_interval == interval
    assert 'snapshot_interval' in args.given


@pytest.mark.parametrize('words', [['2', 'hours'], ['0', 'epoch'],
                                   ['2', 'epoch', 'x']])
def test_a_bad_snapshot_interval_is_one_line(words, capsys):
    with pytest.raises(SystemExit) as exit:
        args_for('--train', 'x', '--snapshot-interval', *words)
    assert exit.value.code == 2
    err = capsys.readouterr().err
    assert ': error: argument --snapshot-interval: expected "N epoch"' in err
    assert err.count('\n') == 1


def test_output_in_the_data_or_over_a_non_model_is_refused(
        capsys, tmp_path, model_3):
    data = make_dataset(tmp_path / 'data', 2)
    val = make_dataset(tmp_path / 'val', 1)
    listing = tmp_path / 'list.txt'
    photo = os.path.join(data, 'red', '0.png')
    listing.write_text('{} 2\n{} 0\n'.format(
        photo, os.path.join(data, 'blue', '0.png')))
    jpeg = tmp_path / 'photo.jpg'
    jpeg.write_bytes(b'\xff\xd8\xff\xe0 not a model')
    before = _snapshot(str(tmp_path))
    for argv, message in [
            (['--train', data, '--output', photo],
             '--output {} lies inside the input folder {}; choose a place '
             'outside it'.format(photo, data)),
            (['--train', data, '--val', val, '--output',
              os.path.join(val, 'new.model')], 'inside the input folder '
             '{}'.format(val)),
            (['--train', str(listing), '--root', data, '--output',
              os.path.join(data, 'new.model')], 'inside the input folder '
             '{}'.format(data)),
            # A list file's image outside any folder: there, not a model.
            (['--train', str(listing), '--output', photo],
             '--output {} exists and is not a model this project wrote: it '
             'is kept'.format(photo)),
            (['--train', data, '--output', str(jpeg)],
             '--output {} exists and is not a model'.format(jpeg))]:
        err = _refused(capsys, tmp_path, '--model', model_3, *argv)
        assert message in err, err
    assert _snapshot(str(tmp_path)) == before  # nothing written, no --out
    assert not (tmp_path / 'r').exists()  # not even an empty one
    # A model this project wrote may be replaced (a run's own best model).
    model = tmp_path / 'best.model'
    shutil.copy(model_3, model)
    assert run_folder.prepare_out_folder(args_for(
        '--train', data, '--model', model_3, '--out', str(tmp_path / 'r'),
        '--output', str(model)))[0] == str(model)


def test_out_that_is_or_lies_in_a_data_folder_is_refused(
        capsys, tmp_path, model_3):
    data = make_dataset(tmp_path / 'data', 2)
    before = _snapshot(data)
    assert run_training('--train', data, '--model',
                        model_3, '--out', data) == 1
    assert one_error_line(capsys) == 'error: --out {0} is the input folder ' \
        '{0}; choose another place\n'.format(data)
    inside = os.path.join(data, 'red', 'run')
    assert run_training('--train', data, '--model', model_3, '--out',
                        inside) == 1
    assert one_error_line(capsys) == 'error: --out {} lies inside the ' \
        'input folder {}; choose a place outside it\n'.format(inside, data)
    assert _snapshot(data) == before and not os.path.exists(inside)
    # A data folder inside --out is fine.
    out = tmp_path / 'r'
    assert run_folder.prepare_out_folder(args_for(
        '--train', make_dataset(out / 'data', 2), '--model', model_3,
        '--out', str(out)))[0] == str(out / 'tuned_googlenet.model')


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
        _, names = model_file.load_model(os.path.join(
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
                   '\\xNN, accents composed): rename one\n'.format(data))
    assert not os.path.exists(str(tmp_path / 'r' / 'tuned_googlenet.model'))
    with pytest.raises(errors.UserError, match='both make class'):
        datasets.read_folder(data, ['caf\\xe9', 'plain'])


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


def test_a_long_output_name_is_refused_before_any_training(
        capsys, tmp_path, dataset, model_3):
    output = tmp_path / ('m' * 247 + '.model')  # 253 bytes
    err = _refused(capsys, tmp_path, '--train', dataset, '--model', model_3,
                   '--output', str(output), '--cache-features')
    assert err.startswith('error: --output ') and \
        'its name is too long (253 bytes' in err
    assert not (tmp_path / 'r').exists()


def test_given_options_are_told_from_defaults(capsys, tmp_path):
    args = args_for('--train', 'x', '--lr', '0.01', '-B', '8', '--resume',
                    'latest')
    assert args.given == {'train', 'lr', 'batchsize', 'resume'}
    assert args.lr == 0.01 and args.epoch == 10  # 0.01 is the default too
    with pytest.raises(SystemExit) as exit:
        args_for('--epoch', '3')
    assert exit.value.code == 2
    assert 'required: --train (or --resume latest' in capsys.readouterr().err
    # Nothing recorded to resume from, and no data given.
    err = refused(capsys, train_googlenet.main, '--resume', 'latest',
                  '--out', str(tmp_path / 'none'), *QUIET)
    assert err == ('error: cannot take the run\'s options from {}: there '
                   'is none; give them as the run was started (--train ...)'
                   '\n'.format(tmp_path / 'none' / 'run.json'))
    assert not (tmp_path / 'none').exists()
