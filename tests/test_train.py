import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import numpy
import pytest

from chainer_compat import chainer

import convert_caffe_model
import googlenet_caffe
import googlenet_data
import googlenet_predict
import train_googlenet
import tuned_googlenet
from image_fixtures import QUIET, make_dataset
from numeric import LOGIT_RTOL, assert_close

def args_for(*argv):
    return train_googlenet.build_parser().parse_args(list(argv))


def read_log(out):
    with open(os.path.join(out, 'log')) as f:
        return json.load(f)


def test_cached_training_learns_and_saves_the_best_model(
        dataset, model_3, tmp_path, weights, capsys):
    out = str(tmp_path / 'result')
    code = train_googlenet.main([
        '--train', dataset, '--model', model_3, '--out', out,
        '--cache-features', '--epoch', '30', '-B', '6', '--lr', '3e-4',
        '--val-ratio', '0.25'] + QUIET)
    printed = capsys.readouterr().out
    assert code == 0
    assert 'training set: 18 images' in printed
    assert '\033' not in printed  # no terminal codes without a progress bar
    assert 'validation set: 6 images' in printed
    assert 'random 224 crop cannot apply' in printed
    log = read_log(out)
    assert len(log) == 30
    assert {'main/loss', 'main/loss1', 'main/loss2', 'main/loss3',
            'main/accuracy', 'validation/main/loss',
            'validation/main/accuracy'} <= set(log[-1])
    best = max(entry['validation/main/accuracy'] for entry in log)
    assert best >= 0.9
    for name in ('loss.png', 'accuracy.png', 'confusion.png',
                 'confusion_normalized.png', 'tuned_googlenet.model',
                 'run.json', 'report.txt'):
        assert os.path.exists(os.path.join(out, name)), name
    # --keep-snapshots 2: the newest two of 30 epochs' snapshots remain.
    assert _snapshot_iterations(out) == [87, 90]
    assert 'precision' in printed and 'confusion matrix' in printed
    with open(os.path.join(out, 'report.json')) as f:
        report = json.load(f)
    scored = [e['validation/main/accuracy'] for e in log]
    assert report['best_epoch'] == scored.index(best) + 1
    assert report['best_validation_accuracy'] == best
    # The best model, evaluated again, scores what the log recorded.
    assert report['accuracy'] == pytest.approx(best, abs=1e-6)
    assert [row['class'] for row in report['classes']] == [
        'blue', 'green', 'red']
    assert sum(row['support'] for row in report['classes']) == 6
    assert numpy.array(report['confusion']).sum() == 6
    with open(os.path.join(out, 'report.txt')) as f:
        text = f.read()
    assert 'best epoch {}'.format(report['best_epoch']) in text
    assert text in printed
    # The saved model's trunk is the caffemodel's, bit for bit.
    model, names = tuned_googlenet.load_model(
        os.path.join(out, 'tuned_googlenet.model'))
    assert names == ['blue', 'green', 'red']
    for caffe_name, link in googlenet_caffe.LAYER_MAP.items():
        if link.split('/')[0] in tuned_googlenet.TRUNK:
            target = model
            for part in link.split('/'):
                target = getattr(target, part)
            assert numpy.array_equal(target.W.array,
                                     weights[caffe_name][0]), caffe_name
    # ... and prediction prints its class names (which one comes first for
    # a single image depends on the heads' draw: accuracy is asserted above).
    assert googlenet_predict.main([
        '--model', os.path.join(out, 'tuned_googlenet.model'), '--top', '3',
        os.path.join(dataset, 'red', '0.png')]) == 0
    assert sorted(line.split('% ')[1] for line in capsys.readouterr().out
                  .splitlines()[1:]) == ['blue', 'green', 'red']


def test_cached_features_are_the_trunk_on_the_centre_crop_and_mirror(
        dataset, model_3, tmp_path):
    session = train_googlenet.Session(args_for(
        '--train', dataset, '--model', model_3, '--out', str(tmp_path),
        '--cache-features', *QUIET))
    assert len(session.train_set) == 21  # 10% of each class held out
    cached = session.train_set.features
    image_pairs = googlenet_data.read_folder(dataset).pairs
    train_pairs, _ = googlenet_data.stratified_split(image_pairs, 0.1, 0)
    x = train_googlenet.ViewDataset(train_pairs[:2], 2)
    batch = numpy.concatenate([x[0], x[1]])
    with chainer.no_backprop_mode(), chainer.using_config('train', False):
        parts = session.model.features(batch)
    flat = numpy.concatenate([p.array.reshape(4, -1) for p in parts], axis=1)
    assert_close(cached[:2].reshape(4, -1), flat)
    assert not numpy.allclose(cached[0, 0], cached[0, 1])  # the mirror


def test_a_step_on_images_equals_a_step_on_cached_features(dataset, model_3):
    pairs = googlenet_data.read_folder(dataset).pairs
    pairs = pairs[::8]  # one image of each class
    x = numpy.stack([train_googlenet.ImageDataset(pairs, False)[i][0]
                     for i in range(3)])
    t = numpy.array([label for _, label in pairs], numpy.int32)
    grads = []
    for cached in (False, True):
        model, _ = tuned_googlenet.load_model(model_3)
        model.cleargrads()
        with chainer.using_config('train', False):  # no dropout noise
            inputs = model.features(x) if cached else (x,)
            loss = model(*inputs, t)
        loss.backward()
        grads.append((float(loss.array), {
            name: p.grad for name, p in model.namedparams()
            if p.grad is not None}))
    assert grads[0][0] == pytest.approx(grads[1][0], rel=LOGIT_RTOL)
    assert grads[0][1].keys() == grads[1][1].keys()
    assert {n.split('/')[1] for n in grads[0][1]} == set(
        tuned_googlenet.HEADS)
    for name in grads[0][1]:
        assert_close(grads[0][1][name], grads[1][1][name])


def test_list_file_with_a_root(dataset, model_3, tmp_path, capsys):
    lines = ['red/{}.png 2'.format(i) for i in range(4)]
    lines += ['blue/{}.png 0'.format(i) for i in range(4)]
    listing = tmp_path / 'train.txt'
    listing.write_text('\n'.join(lines) + '\n')
    val = tmp_path / 'val.txt'
    val.write_text('red/5.png 2\nblue/5.png 0\ngreen/5.png 1\n')
    out = str(tmp_path / 'r')
    code = train_googlenet.main([
        '--train', str(listing), '--val', str(val), '--root', dataset,
        '--model', model_3, '--out', out, '--cache-features', '--epoch',
        '2', '-B', '4'] + QUIET)
    printed = capsys.readouterr().out
    assert code == 0
    assert 'training set: 8 images' in printed
    assert 'validation set: 3 images' in printed
    assert len(read_log(out)) == 2
    _, names = tuned_googlenet.load_model(os.path.join(
        out, 'tuned_googlenet.model'))
    assert names == ['0', '1', '2']


def test_stratified_split_is_seeded_and_per_class():
    pairs = [('{}{}'.format(c, i), c) for c in range(3) for i in range(20)]
    train, val = googlenet_data.stratified_split(pairs, 0.1, seed=3)
    again = googlenet_data.stratified_split(pairs, 0.1, seed=3)
    assert (train, val) == again
    assert sorted(label for _, label in val) == [0, 0, 1, 1, 2, 2]
    assert len(train) == 54 and not set(train) & set(val)


def test_corrupt_images_are_reported_and_skipped(model_3, tmp_path, capsys):
    data = make_dataset(tmp_path / 'd', 4)
    (tmp_path / 'd' / 'red' / 'broken.png').write_bytes(b'\x89PNG\r\n0000')
    out = str(tmp_path / 'r')
    code = train_googlenet.main([
        '--train', data, '--model', model_3, '--out', out,
        '--cache-features', '--epoch', '1', '-B', '4'] + QUIET)
    printed = capsys.readouterr().out
    assert code == 0
    assert 'left out' in printed and 'broken.png' in printed
    # The saved report names it too.
    with open(os.path.join(out, 'report.json')) as f:
        unreadable = json.load(f)['unreadable']
    assert len(unreadable) == 1 and unreadable[0].startswith(
        str(tmp_path / 'd' / 'red' / 'broken.png') + ': ')
    with open(os.path.join(out, 'report.txt')) as f:
        text = f.read()
    assert text.endswith('left out, could not be used (1 file):\n  {}\n'.format(
        unreadable[0]))


def _snapshot_iterations(out):
    return sorted(int(name.split('_')[-1]) for name in os.listdir(out)
                  if train_googlenet.SNAPSHOT_PATTERN.match(name))


def test_killed_mid_epoch_resumes_from_its_last_snapshot(dataset, model_3,
                                                         tmp_path):
    out = str(tmp_path / 'r')
    argv = ['--train', dataset, '--model', model_3, '--out', out,
            '--epoch', '2', '-B', '4', '--snapshot-interval', '1',
            '--loaderjob', '1', '--no-progress', '--val-ratio', '0.25']
    process = subprocess.Popen(
        [sys.executable, train_googlenet.__file__] + argv,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True)
    deadline = time.time() + 240
    while time.time() < deadline and process.poll() is None:
        if os.path.isdir(out) and len(_snapshot_iterations(out)) >= 2:
            break
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    done = _snapshot_iterations(out)
    assert done and done[-1] < 10, done  # killed inside the run
    last = os.path.join(out, 'snapshot_iter_{}'.format(done[-1]))
    session = train_googlenet.Session(args_for(*(argv + ['--resume',
                                                         'latest'])))
    trainer = session.trainer
    assert trainer.updater.iteration == done[-1]
    with numpy.load(last) as snapshot:
        for name, param in session.model.namedparams():
            if name.split('/')[1] not in tuned_googlenet.HEADS:
                continue
            key = 'updater/optimizer:main{}/v'.format(name)
            assert numpy.array_equal(param.update_rule.state['v'],
                                     snapshot[key]), name
            assert numpy.array_equal(
                param.array, snapshot['updater/model:main' + name]), name
    session.run()
    log = read_log(out)
    assert [entry['epoch'] for entry in log][-1] == 2
    assert trainer.updater.iteration == 9  # 2 epochs of 18 images at 4
    tuned_googlenet.load_model(os.path.join(out, 'tuned_googlenet.model'))


# --- bad input: one line, exit 1, before any training ------------------------

def _refused(capsys, tmp_path, *argv):
    out = tmp_path / 'r'
    code = train_googlenet.main(list(argv) + ['--out', str(out)] + QUIET)
    captured = capsys.readouterr()
    assert code == 1
    assert captured.err.startswith('error: ') and captured.err.count(
        '\n') == 1, captured.err
    assert not (out / 'log').exists()
    return captured.err


def test_empty_class_folder(capsys, tmp_path, model_3):
    data = make_dataset(tmp_path / 'd', 2)
    os.makedirs(tmp_path / 'd' / 'zebra')
    err = _refused(capsys, tmp_path, '--train', data, '--model', model_3)
    assert 'class folder' in err and 'zebra has no images' in err


def test_single_class(capsys, tmp_path, model_3):
    data = make_dataset(tmp_path / 'd', 3, {'red': (200, 0, 0)})
    err = _refused(capsys, tmp_path, '--train', data, '--model', model_3)
    assert 'single class' in err


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


def test_cache_needs_the_whole_trunk_frozen(capsys, tmp_path, dataset,
                                           model_3):
    err = _refused(capsys, tmp_path, '--train', dataset, '--model', model_3,
                   '--cache-features', '--freeze-until', 'inc5a')
    assert '--cache-features needs the whole trunk frozen' in err


def test_unknown_freeze_layer(capsys, tmp_path, dataset, model_3):
    err = _refused(capsys, tmp_path, '--train', dataset, '--model', model_3,
                   '--freeze-until', 'inc9z')
    assert "unknown layer 'inc9z'" in err


# --- runs a user can trust (issue 10) ----------------------------------------

def _run(*argv):
    return train_googlenet.main(list(argv) + QUIET)


@pytest.fixture
def cached_run(dataset, model_3, features):
    """Runs train_googlenet.main on the features fixture's cache."""
    def run(out, *extra, data=dataset):
        if data == dataset and not os.path.exists(out / 'features'):
            shutil.copytree(features, out / 'features')
        return _run('--train', data, '--model', model_3, '--out', str(out),
                    '--cache-features', '-B', '4', '--val-ratio', '0.25',
                    '--lr', '1e-3', *extra)
    return run


def _without_times(log):
    return [{k: v for k, v in entry.items() if k != 'elapsed_time'}
            for entry in log]


def _one_error_line(capsys):
    err = capsys.readouterr().err
    assert err.startswith('error: ') and err.count('\n') == 1, err
    return err


def test_one_run_per_out_and_resume_checks_the_run(
        cached_run, model_3, tmp_path, capsys):
    out = tmp_path / 'r'
    assert cached_run(out, '--epoch', '1') == 0
    with open(out / 'run.json') as f:
        config = json.load(f)
    assert config['class_names'] == ['blue', 'green', 'red']
    assert config['model'] == train_googlenet.file_sha1(
        model_3).hexdigest()
    assert len(config['data']) == 40 and config['arguments']['epoch'] == 1
    capsys.readouterr()
    # A second run into the same folder is refused, nothing overwritten.
    best = (out / 'tuned_googlenet.model').read_bytes()
    assert cached_run(out, '--epoch', '2') == 1
    err = _one_error_line(capsys)
    assert 'holds another training run' in err and '--resume latest' in err
    assert (out / 'tuned_googlenet.model').read_bytes() == best
    # Resuming with other data of the same shapes names what differs.
    other = make_dataset(tmp_path / 'other', 8, {
        'cyan': (0, 200, 200), 'grey': (90, 90, 90), 'pink': (250, 90, 200)})
    assert cached_run(out, '--resume', 'latest', data=other) == 1
    err = _one_error_line(capsys)
    assert 'another run' in err and 'data set' in err
    assert ('class names (blue, green, red in the snapshot; cyan, grey, '
            'pink now)') in err
    # ... and so does a snapshot of another folder's run, other seed.
    snapshot = train_googlenet.latest_snapshot(str(out))
    assert cached_run(tmp_path / 'r2', '--seed', '5',
                       '--resume', snapshot) == 1
    assert '--seed (0 in the snapshot, 5 now)' in _one_error_line(capsys)
    # A folder without snapshots says how to start instead.
    assert cached_run(tmp_path / 'r3', '--resume', 'latest') == 1
    assert 'without --resume to start it' in _one_error_line(capsys)
    # The same configuration continues, for more epochs.
    assert cached_run(out, '--resume', 'latest',
                       '--epoch', '2') == 0
    assert len(read_log(str(out))) == 2
    # Stopped before its first snapshot (Ctrl-C in epoch 1's snapshot
    # write), the same run starts again, with or without --resume latest.
    for name, _ in [('r4', None), ('r5', 'latest')]:
        fresh = tmp_path / name
        assert cached_run(fresh, '--epoch', '1') == 0
        for _, path in train_googlenet.snapshot_files(str(fresh)):
            os.unlink(path)
        capsys.readouterr()
        assert cached_run(fresh, '--epoch', '1', *(
            ['--resume', 'latest'] if _ else [])) == 0
        assert 'stopped before its first snapshot: starting it from the ' \
            'beginning' in capsys.readouterr().out
        assert len(read_log(str(fresh))) == 1
    # Another configuration there is still refused.
    assert cached_run(tmp_path / 'r4', '--epoch', '1', '--seed', '3') == 1
    assert 'holds another training run' in _one_error_line(capsys)


def test_resumed_run_equals_an_uninterrupted_one_and_its_plots_the_log(
        cached_run, tmp_path, monkeypatch):
    plotted = {}

    def record(log, keys, path):
        plotted[os.path.basename(path)] = train_googlenet.plot_curves(
            log, keys)
    monkeypatch.setattr(train_googlenet, 'plot_log', record)
    common = ['--epoch', '3', '--snapshot-interval', '2 iteration',
              '--keep-snapshots', '9']
    assert cached_run(tmp_path / 'a', *common) == 0
    whole = read_log(str(tmp_path / 'a'))
    # "Killed" right after the mid-epoch snapshot at iteration 4: the
    # later snapshots never came to be.
    out = tmp_path / 'b'
    assert cached_run(out, *common) == 0
    for iteration, path in train_googlenet.snapshot_files(str(out)):
        if iteration > 4:
            os.unlink(path)
    plotted.clear()
    assert cached_run(out, *common,
                       '--resume', 'latest') == 0
    log = read_log(str(out))
    assert _without_times(log) == _without_times(whole)
    for name, keys in train_googlenet.PlotLog.PLOTS.items():
        for key in keys:
            assert plotted[name][key] == (
                [entry['epoch'] for entry in log],
                [entry[key] for entry in log]), (name, key)


def test_same_seed_same_log_with_and_without_loader_workers(
        model_3, tmp_path):
    data = make_dataset(tmp_path / 'd', 3)
    logs = []
    for name, jobs, seed in (('a', '0', '1'), ('b', '2', '1'),
                             ('c', '0', '2')):
        out = str(tmp_path / name)
        assert train_googlenet.main([
            '--train', data, '--model', model_3, '--out', out,
            '--epoch', '1', '-B', '3', '--val-ratio', '0.34', '--lr',
            '1e-3', '--seed', seed, '--no-progress', '--loaderjob',
            jobs]) == 0
        logs.append(_without_times(read_log(out)))
    assert logs[0] == logs[1]
    assert logs[0] != logs[2]  # the seed does steer crops and dropout


def test_crops_come_from_seed_epoch_and_index(dataset):
    pairs = googlenet_data.read_folder(dataset).pairs
    images = train_googlenet.ImageDataset(pairs, True, seed=3)
    order = train_googlenet.SeededOrder(3)
    first = order(numpy.arange(len(pairs)), 0)
    second = order(first, 0)
    assert sorted(first % len(pairs)) == list(range(len(pairs)))
    assert not numpy.array_equal(first % len(pairs), second % len(pairs))
    assert numpy.array_equal(second, order(first, 0))
    index = int(first[0])
    assert numpy.array_equal(images[index][0], images[index][0])
    crops = {images[index + k * len(pairs)][0].tobytes() for k in range(4)}
    assert len(crops) > 1  # another epoch, another crop


def test_keep_snapshots_and_stray_files_removed(cached_run, tmp_path,
                                                capsys):
    out = tmp_path / 'r'
    assert cached_run(out, '--epoch', '2',
                       '--snapshot-interval', '1 iteration',
                       '--keep-snapshots', '3') == 0
    assert _snapshot_iterations(str(out)) == [7, 8, 9]  # 5 + 4 iterations
    # What a kill -9 leaves: Chainer's temporary snapshot folder and an
    # atomic_write temporary file.
    os.makedirs(out / 'tmpsnapshot_iter_9abc')
    (out / 'tmpsnapshot_iter_9abc' / 'snapshot_iter_9').write_bytes(b'x')
    (out / '.log.x1y2.tmp').write_text('{')
    assert cached_run(out, '--epoch', '3',
                       '--resume', 'latest', '--keep-snapshots', '3') == 0
    assert 'removed {}'.format(out / 'tmpsnapshot_iter_9abc') in \
        capsys.readouterr().out
    # The resumed session snapshots once per epoch (the default): the
    # newest three are two of the first session's and its own.
    assert _snapshot_iterations(str(out)) == [8, 9, 14]
    assert not [name for name in os.listdir(out)
                if train_googlenet.STRAY_PATTERN.match(name)]


@pytest.mark.parametrize('epochs', ['1', '3'])
def test_non_finite_loss_stops_the_run(
        cached_run, tmp_path, capsys, epochs):
    # In one epoch the training loss stays finite and the validation loss
    # does not: the diverged model is not saved as the best either way.
    out = tmp_path / 'r'
    assert cached_run(out, '--epoch', epochs,
                       '--lr', '1e30') == 1
    err = _one_error_line(capsys)
    assert re.search(r'loss became (nan|inf) at iteration \d+:', err), err
    assert 'lower --lr' in err
    assert not (out / 'tuned_googlenet.model').exists()


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
    assert _run('--train', dataset, '--model', model_3, '--out',
                str(tmp_path / 'file')) == 1
    assert 'is a file, not a folder' in _one_error_line(capsys)
    assert _run('--train', dataset, '--model', model_3, '--out',
                str(tmp_path / 'r'), '--output',
                str(tmp_path / 'file' / 'best.model')) == 1
    assert 'cannot write --output' in _one_error_line(capsys)
    monkeypatch.setattr(train_googlenet.shutil, 'disk_usage',
                        lambda path: shutil._ntuple_diskusage(
                            10 ** 9, 10 ** 9 - 10 ** 6, 10 ** 6))
    assert cached_run(tmp_path / 'r', '--epoch',
                       '1') == 1
    err = _one_error_line(capsys)
    assert 'not enough disk space' in err and '1 MB are free' in err
    assert not (tmp_path / 'r' / 'run.json').exists()


def test_disk_full_mid_run_is_one_line_and_resumable(
        cached_run, tmp_path, capsys, monkeypatch):
    writes = []
    write = train_googlenet.write_npz

    def fill_up(path, arrays):
        writes.append(path)
        if len(writes) == 2:
            raise OSError(28, 'No space left on device', path)
        write(path, arrays)
    monkeypatch.setattr(train_googlenet, 'write_npz', fill_up)
    out = tmp_path / 'r'
    assert cached_run(out, '--epoch', '3') == 1
    err = _one_error_line(capsys)
    assert 'No space left on device' in err and '--resume latest' in err
    assert _snapshot_iterations(str(out)) == [5]  # epoch 1's
    assert not [name for name in os.listdir(out) if 'tmp' in name]
    assert cached_run(out, '--epoch', '3',
                       '--resume', 'latest') == 0
    assert len(read_log(str(out))) == 3


def test_lr_policies_and_patience(
        cached_run, tmp_path, capsys):
    out = tmp_path / 'step'
    assert cached_run(out, '--epoch', '2',
                       '--lr-policy', 'step', '--lr-step', '1',
                       '--gamma', '0.5') == 0
    assert [e['lr'] for e in read_log(str(out))] == pytest.approx(
        [1e-3, 5e-4])
    assert ' lr ' in capsys.readouterr().out
    out = tmp_path / 'poly'
    assert cached_run(out, '--epoch', '2',
                       '--lr-policy', 'poly', '--power', '1') == 0
    lrs = [e['lr'] for e in read_log(str(out))]
    # The rate of each epoch's last update (iterations 5 and 9 of 9):
    # 1e-3 * (1 - (iteration - 1) / 9).
    assert lrs == pytest.approx([1e-3 * (1 - 4 / 9), 1e-3 * (1 - 8 / 9)])
    patience = ['--epoch', '10', '--lr', '1e-12', '--patience', '2',
                '--keep-snapshots', '9']
    out = tmp_path / 'patience'
    assert cached_run(out, *patience) == 0
    whole = read_log(str(out))
    assert len(whole) == 3
    assert 'stopped early at epoch 3' in capsys.readouterr().out
    # Resumed from epoch 2's snapshot, it stops where it stopped...
    resumed = tmp_path / 'resumed'
    shutil.copytree(out, resumed)
    os.unlink(train_googlenet.snapshot_files(str(resumed))[-1][1])
    assert cached_run(resumed, *patience, '--resume', 'latest') == 0
    assert _without_times(read_log(str(resumed))) == _without_times(whole)
    # ... and a run that stopped early, resumed, trains no more.
    assert cached_run(out, *patience, '--resume', 'latest') == 0
    assert _without_times(read_log(str(out))) == _without_times(whole)
    assert 'UserWarning' not in capsys.readouterr().err


def test_training_marks_the_heads_it_trained(cached_run, model_3, tmp_path):
    # The converter leaves a 3-class model's heads untrained, which
    # prediction refuses (test_convert); the best model has them trained.
    fresh, _ = tuned_googlenet.load_model(model_3)
    assert fresh.untrained_heads == ('loss1_fc2', 'loss2_fc2', 'loss3_fc')
    assert cached_run(tmp_path / 'r', '--epoch', '1') == 0
    best, _ = tuned_googlenet.load_model(
        str(tmp_path / 'r' / 'tuned_googlenet.model'), classify=True)
    assert best.untrained_heads == ()
    # With --aux-heads off the aux heads keep their fresh weights.
    fresh.aux_heads = False
    path = str(tmp_path / 'aux_off.model')
    train_googlenet.SaveBest(fresh, path, ['a', 'b', 'c'])(None)
    model, _ = tuned_googlenet.load_model(path, classify=True)
    assert model.untrained_heads == ('loss1_fc2', 'loss2_fc2')


def test_validation_accuracy_is_over_images_not_batch_means(
        cached_run, tmp_path):
    # Batches of 4 leave a short last one, which Chainer's Evaluator would
    # weigh as much as each full batch.
    out = tmp_path / 'r'
    assert cached_run(out, '--epoch', '3', '--val-batchsize', '4') == 0
    with open(out / 'report.json') as f:
        report = json.load(f)
    assert report['images'] % 4
    for entry in read_log(str(out)):
        right = entry['validation/main/accuracy'] * report['images']
        assert right == pytest.approx(round(right), abs=1e-6), entry
    # The best model, evaluated again, scores what the log says it did.
    assert report['accuracy'] == pytest.approx(
        report['best_validation_accuracy'], abs=1e-6)


def test_balanced_class_weight(cached_run, model_3, tmp_path, capsys):
    weight = train_googlenet.balanced_class_weight([0, 0, 0, 1], 3)
    assert numpy.allclose(weight, [4 / 6, 2, 1])
    # The held-out split of 8 images a class leaves 6 of each: equal weights.
    assert cached_run(tmp_path / 'r', '--epoch', '1',
                      '--class-weight', 'balanced') == 0
    assert 'class weights: blue 1.000, green 1.000, red 1.000' in \
        capsys.readouterr().out
    model, _ = tuned_googlenet.load_model(model_3)
    model.class_weight = weight
    x = [numpy.ones((4,) + s, numpy.float32)
         for s in train_googlenet.FEATURE_SHAPES]
    with chainer.using_config('train', False):
        weighted = float(model(*x, numpy.array([0, 0, 0, 1],
                                               numpy.int32)).array)
        model.class_weight = None
        plain = float(model(*x, numpy.array([0, 0, 0, 1], numpy.int32)).array)
    assert weighted != pytest.approx(plain)


def test_every_option_says_its_default():
    for action in train_googlenet.build_parser()._actions:
        if action.dest != 'help':
            assert 'default' in action.help, action.dest
    parse = train_googlenet.snapshot_interval
    assert parse('2 epoch') == (2, 'epoch')
    assert parse('5') == (5, 'iteration')
    assert parse('3 iterations') == (3, 'iteration')
    with pytest.raises(Exception):
        parse('0 epoch')


def test_train_without_a_converted_model(dataset, tmp_path, capsys):
    assert _run('--train', dataset, '--model', str(tmp_path / 'none.model'),
                '--out', str(tmp_path / 'r')) == 1
    assert 'run convert_caffe_model.py --classes N first' in \
        _one_error_line(capsys)


def test_predict_takes_the_device_option(model_1000, dataset, capsys):
    image = os.path.join(dataset, 'red', '0.png')
    assert googlenet_predict.main(['--model', model_1000, '-d', '@bogus',
                                   image]) == 1
    assert 'not a Chainer device' in _one_error_line(capsys)
    assert googlenet_predict.main(['--model', model_1000, '-g', '-1',
                                   image]) == 0
    assert googlenet_predict.main(['--model', model_1000, '--device',
                                   '@numpy', image]) == 0


def test_converter_seed_fixes_the_fresh_heads(caffemodels, tmp_path):
    heads = []
    for name, seed in (('a', 1), ('b', 1), ('c', 2)):
        path = str(tmp_path / name)
        assert convert_caffe_model.main([
            '--caffemodel', caffemodels['v1'], '--output', path,
            '--classes', '3', '--seed', str(seed)]) == 0
        with numpy.load(path) as npz:
            heads.append(npz['loss3_fc/W'])
    assert numpy.array_equal(heads[0], heads[1])
    assert not numpy.array_equal(heads[0], heads[2])


def test_image_unreadable_mid_run_is_skipped_and_reported(model_3, tmp_path,
                                                          capfd):
    data = make_dataset(tmp_path / 'd', 3)
    session = train_googlenet.Session(args_for(
        '--train', data, '--model', model_3, '--out', str(tmp_path / 'r'),
        '--epoch', '1', '-B', '3', '--val-ratio', '0.34', '--no-progress',
        '--loaderjob', '2'))
    victim = session.train_set.pairs[0][0]
    with open(victim, 'wb') as f:
        f.write(b'no longer an image')
    session.run()
    assert 'warning: skipped unreadable {}'.format(victim) in \
        capfd.readouterr().err
    assert len(read_log(str(tmp_path / 'r'))) == 1


def _children(pid):
    kids = []
    for task in os.listdir('/proc/{}/task'.format(pid)):
        with contextlib.suppress(OSError), open(
                '/proc/{}/task/{}/children'.format(pid, task)) as f:
            kids += [int(k) for k in f.read().split()]
    return kids


def _start(argv):
    return subprocess.Popen(
        [sys.executable, train_googlenet.__file__] + argv,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        start_new_session=True)


class _Numbers(chainer.dataset.DatasetMixin):
    """Example i is [i % 10] * 3; in a loader worker, example 3 kills its
    process (SIGKILL, as the out-of-memory killer does) while the folder
    `kills` has a file, taking one, or sleeps for an hour when `stuck`."""

    def __init__(self, kills=None, stuck=False):
        self.parent = os.getpid()
        self.kills = kills
        self.stuck = stuck

    def __len__(self):
        return 10

    def get_example(self, i):
        if i % 10 == 3 and os.getpid() != self.parent:
            if self.stuck:
                time.sleep(3600)
            for name in sorted(os.listdir(self.kills)) if self.kills else []:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(os.path.join(self.kills, name))
                    os.kill(os.getpid(), signal.SIGKILL)
        return numpy.full(3, i % 10, numpy.float32)


def _kills(tmp_path, n):
    folder = tmp_path / 'kills'
    folder.mkdir()
    for k in range(n):
        (folder / str(k)).touch()
    return str(folder)


def test_a_killed_loader_worker_costs_a_warning_not_a_batch(tmp_path,
                                                             capfd):
    order = train_googlenet.SeededOrder(1)
    loaded = train_googlenet.make_iterator(
        _Numbers(_kills(tmp_path, 1)), 4, 2, 60.0, order)
    serial = train_googlenet.make_iterator(_Numbers(), 4, 0, 60.0, order)
    try:
        for _ in range(8):  # three epochs, so example 3 comes up thrice
            assert numpy.array_equal(numpy.stack(next(loaded)),
                                     numpy.stack(next(serial)))
            assert (loaded.epoch_detail, loaded.is_new_epoch) == (
                serial.epoch_detail, serial.is_new_epoch)
    finally:
        loaded.finalize()
    assert not os.listdir(tmp_path / 'kills')
    assert capfd.readouterr().err == (
        'warning: a loader process died (killed by SIGKILL, as the '
        'out-of-memory killer does); reading the batch again with new '
        'ones\n')


@pytest.mark.parametrize('dataset, words', [
    ('killed', 'a loader process died twice reading the same batch (killed '
     'by SIGKILL'),
    ('stuck', 'the loader processes gave no batch in 2.0 s')])
def test_a_loader_that_cannot_deliver_stops_in_bounded_time(dataset, words,
                                                           tmp_path):
    dataset = _Numbers(_kills(tmp_path, 9)) if dataset == 'killed' else \
        _Numbers(stuck=True)
    iterator = train_googlenet.make_iterator(dataset, 4, 2, 2.0)
    start = time.monotonic()
    with pytest.raises(train_googlenet.UserError) as error:
        for _ in range(3):
            next(iterator)
    iterator.finalize()  # kills the stuck worker rather than wait for it
    assert time.monotonic() - start < 30
    assert words in str(error.value)


def test_loader_workers_killed_again_and_again_never_hang_the_run(
        model_3, tmp_path):
    data = make_dataset(tmp_path / 'd', 4)
    out = tmp_path / 'r'
    process = _start(['--train', data, '--model', model_3, '--out', str(out),
                      '--epoch', '6', '-B', '2', '--loaderjob', '2',
                      '--val-ratio', '0.25', '--loader-timeout', '20',
                      '--no-progress'])
    killed = 0
    try:
        while process.poll() is None and killed < 4:
            workers = _children(process.pid)
            if workers:
                with contextlib.suppress(OSError):
                    os.kill(workers[killed % len(workers)], signal.SIGKILL)
                    killed += 1
            time.sleep(0.5)
        err = process.communicate(timeout=200)[1]
    finally:
        with contextlib.suppress(OSError):
            os.killpg(process.pid, signal.SIGKILL)
    assert killed, 'the run ended before a worker could be killed'
    assert 'Traceback' not in err, err
    if process.returncode == 0:  # each death cost a warning and a reload
        assert 'warning: a loader process died (killed by SIGKILL' in err
        assert len(read_log(str(out))) == 6
    else:  # or two deaths hit one batch: one line, resumable
        assert process.returncode == 1, err
        assert err.splitlines()[-1].startswith(
            'error: a loader process died twice reading the same batch'), \
            err


@pytest.mark.parametrize('moment', ['imports', 'worker start-up',
                                    'training'])
def test_ctrl_c_at_any_moment(moment, model_3, tmp_path):
    data = make_dataset(tmp_path / 'd', 4)
    out = tmp_path / 'r'
    process = _start(['--train', data, '--model', model_3, '--out', str(out),
                      '--epoch', '50', '-B', '2', '--loaderjob', '2',
                      '--snapshot-interval', '1 iteration', '--no-progress'])
    deadline = time.time() + 240
    try:
        if moment == 'imports':
            time.sleep(0.3)
        while moment != 'imports' and process.poll() is None and \
                time.time() < deadline:
            if (_children(process.pid) if moment == 'worker start-up'
                    else (out / 'log').exists()):
                break
            time.sleep(0.01)
        os.killpg(process.pid, signal.SIGINT)  # as Ctrl-C in a terminal
        err = process.communicate(timeout=120)[1]
    finally:
        with contextlib.suppress(OSError):
            os.killpg(process.pid, signal.SIGKILL)
    assert process.returncode == 130, err
    assert err.endswith('interrupted\n') and 'Traceback' not in err, err
    names = os.listdir(out) if out.exists() else []
    assert not [n for n in names if train_googlenet.STRAY_PATTERN.match(n)]
    for iteration, path in train_googlenet.snapshot_files(str(out)):
        with numpy.load(path) as snapshot:
            assert 'run_config' in snapshot.files
    if 'log' in names:
        read_log(str(out))


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
    assert re.search(r'argument {}(/-\w)?: expected'.format(option),
                     capsys.readouterr().err)


def test_snapshots_from_before_aux_heads_and_mpi_still_resume():
    current = dict({key: 1 for key in train_googlenet.RUN_KEYS},
                   aux_heads='on', processes=1)
    old = {key: value for key, value in current.items()
           if key not in ('aux_heads', 'processes')}
    assert train_googlenet.config_difference(old, current) == ''
    assert train_googlenet.config_difference(old, dict(
        current, processes=2)) == 'MPI processes (1 in the snapshot, 2 now)'


# --- outputs never land in the data nor replace what is not a model ----------

def _snapshot(folder):
    """{path: bytes} of every file under folder."""
    return {os.path.join(d, name): open(os.path.join(d, name), 'rb').read()
            for d, _, names in os.walk(folder) for name in names}


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
    assert train_googlenet.check_out(args_for(
        '--train', data, '--model', model_3, '--out', str(tmp_path / 'r'),
        '--output', str(model)))[0] == str(model)


def test_out_that_is_or_lies_in_a_data_folder_is_refused(
        capsys, tmp_path, model_3):
    data = make_dataset(tmp_path / 'data', 2)
    before = _snapshot(data)
    assert _run('--train', data, '--model', model_3, '--out', data) == 1
    assert _one_error_line(capsys) == 'error: --out {0} is the input folder ' \
        '{0}; choose another place\n'.format(data)
    inside = os.path.join(data, 'red', 'run')
    assert _run('--train', data, '--model', model_3, '--out', inside) == 1
    assert _one_error_line(capsys) == 'error: --out {} lies inside the ' \
        'input folder {}; choose a place outside it\n'.format(inside, data)
    assert _snapshot(data) == before and not os.path.exists(inside)
    # A data folder inside --out is fine.
    out = tmp_path / 'r'
    assert train_googlenet.check_out(args_for(
        '--train', make_dataset(out / 'data', 2), '--model', model_3,
        '--out', str(out)))[0] == str(out / 'tuned_googlenet.model')


def _alive(pid):
    try:
        with open('/proc/{}/stat'.format(pid)) as f:
            return f.read().rsplit(')', 1)[1].split()[0] != 'Z'
    except OSError:
        return False


def test_loader_workers_die_with_a_run_killed_outright():
    process = subprocess.Popen([sys.executable, '-c', '''
import sys, time
sys.path.insert(0, {!r})
import numpy, train_googlenet
iterator = train_googlenet.make_iterator(
    [numpy.zeros(3, numpy.float32)] * 8, 2, 2, 60.0)
next(iterator)
print('ready', flush=True)
time.sleep(600)
'''.format(os.path.dirname(train_googlenet.__file__))],
        stdout=subprocess.PIPE, text=True, start_new_session=True)
    try:
        assert process.stdout.readline() == 'ready\n'
        workers = _children(process.pid)
        assert len(workers) == 2
        os.kill(process.pid, signal.SIGKILL)  # as kill -9 of the run
        process.wait()
        deadline = time.time() + 30
        while any(map(_alive, workers)) and time.time() < deadline:
            time.sleep(0.1)
        assert not any(map(_alive, workers))
    finally:
        with contextlib.suppress(OSError):
            os.killpg(process.pid, signal.SIGKILL)
