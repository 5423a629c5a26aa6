"""train_googlenet.py through main() and in processes: runs, resume, the
cache, schedules, kills and Ctrl-C."""
import contextlib
import csv
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import numpy
import pytest

import convert_caffe_model
import googlenet_predict
import train_googlenet
import tuned_googlenet
from googlenet_chainer import caffe_layers, errors, model_file, plots
from googlenet_chainer.compat import chainer
from googlenet_chainer.training import (data as tdata, extensions,
                                        feature_cache, run_folder, snapshots)
from googlenet_chainer.training.final_report import report_best_model

import run_steps
from helpers import Page, children, one_error_line, run_training
from image_fixtures import QUIET, make_dataset, two_tone


def read_log(out):
    with open(os.path.join(out, 'log')) as f:
        return json.load(f)


def _snapshot_iterations(out):
    return sorted(int(name.split('_')[-1]) for name in os.listdir(out)
                  if snapshots.SNAPSHOT_PATTERN.match(name))


def _without_times(log):
    return [{k: v for k, v in entry.items() if k != 'elapsed_time'}
            for entry in log]


def _start(argv):
    return subprocess.Popen(
        [sys.executable, train_googlenet.__file__] + argv,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        start_new_session=True)


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
    assert '--cache-features at inc5b: 71 KB per image and view (inc4a\'s ' \
        'pool 512x4x4, inc4d\'s pool 528x4x4, pool5 1024x1x1), 3.0 MB in ' \
        'all; each epoch ' \
        'trains on one of each image\'s 2 views, the centre crop and its ' \
        'mirror; validation on the centre crop; the heads train' in printed
    # The total is the cache's files': 18 images x 2 views, 6 x 1.
    cached = sum(os.path.getsize(os.path.join(out, 'features', name))
                 for name in ('train.npy', 'val.npy'))
    assert round(cached / 1e6, 1) == 3.0
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
    # The page shows the curves PlotLog drew, inline, and the mistakes;
    # predictions.csv has a row per validation image.
    page = Page(os.path.join(out, 'report.html'))
    with open(os.path.join(out, 'loss.png'), 'rb') as f:
        assert f.read() in page.inline_images()
    assert len(page.mistakes) == round(6 * (1 - report['accuracy']))
    assert 'best epoch {}'.format(report['best_epoch']) in page.text
    with open(os.path.join(out, 'predictions.csv'), newline='') as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 6 and sum(row['correct'] == 'True'
                                  for row in rows) == round(6 * best)
    # The saved model's trunk is the caffemodel's, bit for bit.
    model, names = model_file.load_model(
        os.path.join(out, 'tuned_googlenet.model'))
    assert names == ['blue', 'green', 'red']
    for caffe_name, link in caffe_layers.LAYER_MAP.items():
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
    _, names = model_file.load_model(os.path.join(
        out, 'tuned_googlenet.model'))
    assert names == ['0', '1', '2']


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
    assert text.endswith(
        'left out, could not be used (1 file):\n  {}\n'.format(unreadable[0]))


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
    run = run_steps.start(argv + ['--resume', 'latest'])
    trainer = run.trainer
    assert trainer.updater.iteration == done[-1]
    with numpy.load(last) as snapshot:
        for name, param in run.model.namedparams():
            if name.split('/')[1] not in tuned_googlenet.HEADS:
                continue
            key = 'updater/optimizer:main{}/v'.format(name)
            assert numpy.array_equal(param.update_rule.state['v'],
                                     snapshot[key]), name
            assert numpy.array_equal(
                param.array, snapshot['updater/model:main' + name]), name
    run_steps.finish(run)
    log = read_log(out)
    assert [entry['epoch'] for entry in log][-1] == 2
    assert trainer.updater.iteration == 9  # 2 epochs of 18 images at 4
    model_file.load_model(os.path.join(out, 'tuned_googlenet.model'))


def test_one_run_per_out_and_resume_checks_the_run(
        cached_run, model_3, tmp_path, capsys, monkeypatch):
    out = tmp_path / 'r'
    assert cached_run(out, '--epoch', '1') == 0
    with open(out / 'run.json') as f:
        config = json.load(f)
    assert config['class_names'] == ['blue', 'green', 'red']
    model, _ = model_file.load_model(model_3)
    assert config['trunk'] == model_file.weights_digest(
        model, tuned_googlenet.TRUNK)
    assert len(config['data']) == 40 and config['arguments']['epoch'] == 1
    capsys.readouterr()
    # A second run into the same folder is refused, nothing overwritten.
    best = (out / 'tuned_googlenet.model').read_bytes()
    assert cached_run(out, '--epoch', '2') == 1
    err = one_error_line(capsys)
    assert 'holds another training run' in err and '--resume latest' in err
    assert (out / 'tuned_googlenet.model').read_bytes() == best
    # Resuming with other data of the same shapes names what differs.
    other = make_dataset(tmp_path / 'other', 8, {
        'cyan': (0, 200, 200), 'grey': (90, 90, 90), 'pink': (250, 90, 200)})
    assert cached_run(out, '--resume', 'latest', data=other) == 1
    err = one_error_line(capsys)
    assert 'another run' in err and 'data set' in err
    assert ('class names (blue, green, red in the snapshot; cyan, grey, '
            'pink now)') in err
    # ... and so does a snapshot with another seed.
    snapshot = snapshots.latest_snapshot(str(out))
    with pytest.raises(errors.UserError, match='is a training snapshot'):
        model_file.load_model(snapshot)
    assert cached_run(out, '--seed', '5', '--resume', snapshot) == 1
    err = one_error_line(capsys)
    assert 'options recorded in {}, and these are given otherwise: --seed ' \
        '(0 recorded, 5 given); leave them out (only --epoch, '.format(
            snapshot) in err
    # A snapshot goes on in its own folder, not in another run's: that
    # one's run.json, log and reports stay as they were.
    assert cached_run(tmp_path / 'r2', '--epoch', '1') == 0
    before = {name: (tmp_path / 'r2' / name).read_bytes()
              for name in ('run.json', 'log', 'report.json')}
    capsys.readouterr()
    assert cached_run(tmp_path / 'r2', '--resume', snapshot) == 1
    err = one_error_line(capsys)
    assert 'continues the run in its own folder, {}, not in --out {}'.format(
        out, tmp_path / 'r2') in err
    assert before == {
        name: (tmp_path / 'r2' / name).read_bytes() for name in before}
    # A folder without snapshots says how to start instead.
    assert cached_run(tmp_path / 'r3', '--resume', 'latest') == 1
    assert 'without --resume to start it' in one_error_line(capsys)
    # The same configuration continues, for more epochs, from a snapshot
    # named without --out: in the snapshot's folder. Its record keeps the
    # weights the run started from, whichever --model this session names.
    started = config['start']
    other_heads = str(tmp_path / 'other_heads.model')
    model.loss3_fc.W.array[...] += 1
    model_file.save_model(other_heads, model, config['class_names'])
    monkeypatch.chdir(tmp_path)
    assert run_training('--resume', snapshot, '--epoch', '2',
                        '--model', other_heads) == 0
    assert len(read_log(str(out))) == 2
    assert not (tmp_path / 'result').exists()
    with open(out / 'run.json') as f:
        config = json.load(f)
    assert config['start'] == started
    assert config['arguments']['model'] == other_heads
    # Fewer epochs than it has done: said, and its record left alone.
    record = (out / 'run.json').read_bytes()
    capsys.readouterr()
    assert cached_run(out, '--resume', 'latest', '--epoch', '1') == 1
    assert one_error_line(capsys) == (
        'error: the run has done 2 epochs (snapshot {}), more than --epoch '
        '1: give --epoch 2 or more to train on, or leave it out\n'.format(
            snapshots.latest_snapshot(str(out))))
    assert (out / 'run.json').read_bytes() == record
    # Its best model moved away: said before any work, not after it.
    best = out / 'tuned_googlenet.model'
    best.rename(tmp_path / 'moved.model')
    assert cached_run(out, '--resume', 'latest', '--epoch', '3') == 1
    assert one_error_line(capsys) == (
        "error: the run's best model {} is missing, and {} has trained 2 "
        "epochs: without it the run cannot report its best; put it back (a "
        "run's folder moves whole: its best model beside its snapshots)\n"
        .format(best, snapshots.latest_snapshot(str(out))))
    assert len(read_log(str(out))) == 2
    (tmp_path / 'moved.model').rename(best)
    # A new run does not write over a fine-tuned model outside its folder.
    kept = tmp_path / 'kept.model'
    kept.write_bytes(best.read_bytes())
    assert cached_run(tmp_path / 'r7', '--output', str(kept)) == 1
    assert one_error_line(capsys) == (
        'error: --output {} holds a fine-tuned model (its class names '
        'stored), which a new run would write over: give another --output\n'
        .format(kept))
    assert kept.read_bytes() == best.read_bytes()
    # Stopped before its first snapshot (Ctrl-C in epoch 1's snapshot
    # write), the same run starts again, with or without --resume latest.
    for name, _ in [('r4', None), ('r5', 'latest')]:
        fresh = tmp_path / name
        assert cached_run(fresh, '--epoch', '1') == 0
        for _, path in snapshots.snapshot_files(str(fresh)):
            os.unlink(path)
        capsys.readouterr()
        assert cached_run(fresh, '--epoch', '1', *(
            ['--resume', 'latest'] if _ else [])) == 0
        assert 'stopped before its first snapshot: starting it from the ' \
            'beginning' in capsys.readouterr().out
        assert len(read_log(str(fresh))) == 1
    # Another configuration there is still refused.
    assert cached_run(tmp_path / 'r4', '--epoch', '1', '--seed', '3') == 1
    assert 'holds another training run' in one_error_line(capsys)


def test_resumed_run_equals_an_uninterrupted_one_and_its_plots_the_log(
        cached_run, tmp_path, monkeypatch):
    plotted = {}

    def record(log, keys, path, best):
        plotted[os.path.basename(path)] = plots.plot_curves(
            log, keys)
    monkeypatch.setattr(plots, 'plot_log', record)
    common = ['--epoch', '3', '--snapshot-interval', '2 iteration',
              '--keep-snapshots', '9']
    assert cached_run(tmp_path / 'a', *common) == 0
    whole = read_log(str(tmp_path / 'a'))
    # "Killed" right after the mid-epoch snapshot at iteration 4: the
    # later snapshots never came to be.
    out = tmp_path / 'b'
    assert cached_run(out, *common) == 0
    for iteration, path in snapshots.snapshot_files(str(out)):
        if iteration > 4:
            os.unlink(path)
    plotted.clear()
    # Only the folder: the options come from its run.json.
    assert run_training('--resume', 'latest', '--out', str(out)) == 0
    log = read_log(str(out))
    assert _without_times(log) == _without_times(whole)
    for name, keys in extensions.PlotLog.PLOTS.items():
        for key in keys:
            assert plotted[name][key] == (
                [entry['epoch'] for entry in log],
                [entry[key] for entry in log]), (name, key)


def test_a_cut_with_random_views_adamw_cosine_and_warm_up_resumes_alone(
        model_3, tmp_path, capsys):
    data = make_dataset(tmp_path / 'd', 3)  # 6 training, 3 validation
    argv = ['--train', data, '--model', model_3, '--freeze-until', 'inc5a',
            '--cache-features', '--cache-views', '2 random', '--aux-heads',
            'off', '--optimizer', 'adamw', '--weight-decay', '0.05',
            '--lr-policy', 'cosine', '--warmup', '1', '--label-smoothing',
            '0.1', '--lr', '1e-3', '-B', '2', '--epoch', '3',
            '--val-ratio', '0.25', '--snapshot-interval', '2 iteration',
            '--keep-snapshots', '9']
    whole = tmp_path / 'a'
    assert run_training(*argv, '--out', str(whole)) == 0
    assert 'inc5a\'s output 832x7x7' in capsys.readouterr().out
    log = read_log(str(whole))
    # Warm-up over epoch 1's 3 updates, then the half cosine over 9.
    assert [entry['lr'] for entry in log] == pytest.approx(
        [1e-3 * (1 + math.cos(math.pi * k / 9)) / 2 for k in (2, 5, 8)])
    # Killed after iteration 4 (mid-epoch), resumed from its folder alone.
    out = tmp_path / 'b'
    shutil.copytree(whole / 'features', out / 'features')
    assert run_training(*argv, '--out', str(out)) == 0
    for iteration, path in snapshots.snapshot_files(str(out)):
        if iteration > 4:
            os.unlink(path)
    capsys.readouterr()
    assert run_training('--resume', 'latest', '--out', str(out)) == 0
    printed = capsys.readouterr().out
    assert 'continuing with the options recorded in {}'.format(
        out / 'run.json') in printed
    assert 'computing trunk features' not in printed
    assert _without_times(read_log(str(out))) == _without_times(log)
    # What may not change is refused, naming it.
    assert run_training('--resume', 'latest', '--out', str(out), '--epoch',
                        '4', '--optimizer', 'adam', '--seed', '0') == 1
    assert 'these are given otherwise: --optimizer (adamw recorded, adam ' \
        'given); leave them out' in one_error_line(capsys)


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
    assert cached_run(out, '--epoch', '3', '--resume', 'latest',
                      '--snapshot-interval', '1 epoch') == 0
    assert 'removed {}'.format(out / 'tmpsnapshot_iter_9abc') in \
        capsys.readouterr().out
    # The resumed session snapshots once per epoch, as it is told (it would
    # take the run's every iteration otherwise), keeping 3 as the run does:
    # the newest three are two of the first session's and its own.
    assert _snapshot_iterations(str(out)) == [8, 9, 14]
    assert not [name for name in os.listdir(out)
                if run_folder.STRAY_PATTERN.match(name)]


@pytest.mark.parametrize('epochs', ['1', '3'])
def test_non_finite_loss_stops_the_run(
        cached_run, tmp_path, capsys, epochs):
    # In one epoch the training loss stays finite and the validation loss
    # does not: the diverged model is not saved as the best either way.
    out = tmp_path / 'r'
    assert cached_run(out, '--epoch', epochs,
                      '--lr', '1e30') == 1
    err = one_error_line(capsys)
    assert re.search(r'loss became (nan|inf) at iteration \d+:', err), err
    assert 'lower --lr' in err
    assert not (out / 'tuned_googlenet.model').exists()


def test_disk_full_mid_run_is_one_line_and_resumable(
        cached_run, tmp_path, capsys, monkeypatch):
    writes = []
    write = snapshots.write_npz

    def fill_up(path, arrays):
        writes.append(path)
        if len(writes) == 2:
            raise OSError(28, 'No space left on device', path)
        write(path, arrays)
    monkeypatch.setattr(snapshots, 'write_npz', fill_up)
    out = tmp_path / 'r'
    assert cached_run(out, '--epoch', '3') == 1
    err = one_error_line(capsys)
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
    os.unlink(snapshots.snapshot_files(str(resumed))[-1][1])
    assert cached_run(resumed, *patience, '--resume', 'latest') == 0
    assert _without_times(read_log(str(resumed))) == _without_times(whole)
    # ... and a run that stopped early, resumed, trains no more.
    assert cached_run(out, *patience, '--resume', 'latest') == 0
    assert _without_times(read_log(str(out))) == _without_times(whole)
    assert 'UserWarning' not in capsys.readouterr().err


def test_training_marks_the_heads_it_trained(cached_run, model_3, tmp_path):
    # The converter leaves a 3-class model's heads untrained, which
    # prediction refuses (test_convert); the best model has them trained.
    fresh, _ = model_file.load_model(model_3)
    assert fresh.untrained_heads == ('loss1_fc2', 'loss2_fc2', 'loss3_fc')
    assert cached_run(tmp_path / 'r', '--epoch', '1') == 0
    best, _ = model_file.load_model(
        str(tmp_path / 'r' / 'tuned_googlenet.model'), classify=True)
    assert best.untrained_heads == ()
    # With --aux-heads off the aux heads keep their fresh weights.
    fresh.aux_heads = False
    path = str(tmp_path / 'aux_off.model')
    extensions.SaveBest(fresh, path, ['a', 'b', 'c'])(None)
    model, _ = model_file.load_model(path, classify=True)
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
    weight = tdata.balanced_class_weight([0, 0, 0, 1], 3)
    assert numpy.allclose(weight, [4 / 6, 2, 1])
    # The held-out split of 8 images a class leaves 6 of each: equal weights.
    assert cached_run(tmp_path / 'r', '--epoch', '1',
                      '--class-weight', 'balanced') == 0
    assert 'class weights: blue 1.000, green 1.000, red 1.000' in \
        capsys.readouterr().out
    model, _ = model_file.load_model(model_3)
    model.class_weight = weight
    x = [numpy.ones((4,) + s, numpy.float32)
         for s in feature_cache.feature_shapes()]
    with chainer.using_config('train', False):
        weighted = float(model(*x, numpy.array([0, 0, 0, 1],
                                               numpy.int32)).array)
        model.class_weight = None
        plain = float(model(*x, numpy.array([0, 0, 0, 1], numpy.int32)).array)
    assert weighted != pytest.approx(plain)


@pytest.mark.parametrize('part', ['train_set', 'val_set', 'report'])
def test_an_image_unreadable_mid_run_stops_it_resumably(model_3, tmp_path,
                                                        part):
    """Skipped, it would leave the epochs' accuracies (or the final
    report) measured on other sets; the run stops naming it, and goes on
    once it is back."""
    data = make_dataset(tmp_path / 'd', 3)
    argv = ['--train', data, '--model', model_3, '--out',
            str(tmp_path / 'r'), '--epoch', '1', '-B', '3', '--val-ratio',
            '0.34', '--no-progress', '--loaderjob', '2']
    run = run_steps.start(argv)
    if part == 'report':  # the epoch done, the best model scored
        run.trainer.run(show_loop_exception_msg=False)
    victim = getattr(run, 'val_set' if part == 'report' else part).pairs[
        -1][0]
    kept = open(victim, 'rb').read()
    with open(victim, 'wb') as f:
        f.write(b'no longer an image')
    with pytest.raises(errors.UserError) as e:
        if part == 'report':
            report_best_model(run.args, run.plan, run.trainer, run.val_set,
                              run.device)
        else:
            run_steps.finish(run)
    assert str(e.value).startswith('{} cannot be read any more ('.format(
        victim))
    assert str(e.value).endswith(
        'it changed after the run checked its data; put it back and '
        'continue with --resume latest, or start a run without it')
    run_folder.release(str(tmp_path / 'r'))
    with open(victim, 'wb') as f:
        f.write(kept)
    assert train_googlenet.main(argv + ['--resume', 'latest']) == 0
    assert len(read_log(str(tmp_path / 'r'))) == 1
    assert os.path.exists(tmp_path / 'r' / 'report.html')


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
            workers = children(process.pid)
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
            if (children(process.pid) if moment == 'worker start-up'
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
    if moment == 'training':  # a snapshot each iteration: one is there
        assert err.endswith('the run goes on from its last snapshot with '
                            'the same command and --resume latest\n'
                            'interrupted\n'), err
    names = os.listdir(out) if out.exists() else []
    assert not [n for n in names if run_folder.STRAY_PATTERN.match(n)]
    for iteration, path in snapshots.snapshot_files(str(out)):
        with numpy.load(path) as snapshot:
            assert 'run_config' in snapshot.files
    if 'log' in names:
        read_log(str(out))


def test_aux_heads_off_trains_loss3_on_a_pool5_cache(
        dataset, model_3, tmp_path, capsys):
    out = tmp_path / 'r'
    assert train_googlenet.main([
        '--train', dataset, '--model', model_3, '--out', str(out),
        '--cache-features', '--aux-heads', 'off', '--epoch', '2', '-B', '4',
        '--val-ratio', '0.25', '--lr', '1e-3'] + QUIET) == 0
    features = numpy.load(out / 'features' / 'train.npy', mmap_mode='r')
    assert features.shape == (18, 2, 1024)  # 4 KB per view
    with open(out / 'log') as f:
        log = json.load(f)
    assert 'main/loss1' not in log[-1]
    assert log[-1]['main/loss'] == log[-1]['main/loss3']
    start, _ = model_file.load_model(model_3)
    tuned, _ = model_file.load_model(str(out / 'tuned_googlenet.model'))
    for name in tuned_googlenet.HEADS:
        same = numpy.array_equal(getattr(start, name).W.array,
                                 getattr(tuned, name).W.array)
        assert same == (name in tuned_googlenet.AUX_HEADS), name
    capsys.readouterr()
    assert googlenet_predict.main(['--model', str(out / 'tuned_googlenet.'
                                                  'model'),
                                   os.path.join(dataset, 'red', '0.png')]) \
        == 0
    assert capsys.readouterr().out.startswith(
        os.path.join(dataset, 'red', '0.png'))


def _cached_training(data, model, out, *extra):
    return run_training('--train', data, '--model', model, '--out', out,
                        '--cache-features', '-B', '4', '--val-ratio', '0.25',
                        '--lr', '1e-3', *extra)


def test_the_same_run_after_convert_again_and_a_move(tmp_path, caffemodels,
                                                     capsys):
    def convert(model):
        return convert_caffe_model.main(['--caffemodel', caffemodels['v1'],
                                         '--classes', '3', '--output',
                                         str(model)])
    first = tmp_path / 'project_a'
    data = make_dataset(first / 'photos', 4)
    model = first / 'tuned.model'
    assert convert(model) == 0
    before = model_file.load_model(str(model))[0]
    assert _cached_training(data, str(model), str(first / 'r'),
                            '--epoch', '1') == 0
    # The quick start's convert, run again: the same model.
    assert convert(model) == 0
    again = model_file.load_model(str(model))[0]
    for (name, a), (_, b) in zip(sorted(before.namedparams()),
                                 sorted(again.namedparams())):
        assert numpy.array_equal(a.array, b.array), name
    # The project moved to a bigger disk: the same run, its cache reused.
    second = tmp_path / 'project_b'
    shutil.move(str(first), str(second))
    capsys.readouterr()
    assert _cached_training(str(second / 'photos'),
                            str(second / 'tuned.model'), str(second / 'r'),
                            '--epoch', '2', '--resume', 'latest') == 0
    out = capsys.readouterr().out
    assert 'resumed from' in out and 'computing trunk features' not in out
    assert [entry['epoch'] for entry in read_log(second / 'r')] == [1, 2]


def test_an_image_edited_in_place_is_new_data_though_size_and_date_stay(
        tmp_path, model_3, capsys):
    data = tmp_path / 'd'
    for name, colour in (('a', (200, 30, 30)), ('b', (30, 30, 200)),
                         ('c', (30, 200, 30))):
        (data / name).mkdir(parents=True)
        for i in range(4):  # BMP: the size is the dimensions'
            two_tone(colour, (40 + i, 30)).save(data / name / '{}.bmp'
                                                .format(i))
    assert _cached_training(str(data), model_3, str(tmp_path / 'r'),
                            '--epoch', '1') == 0
    victim = data / 'a' / '0.bmp'
    info = victim.stat()
    two_tone((30, 90, 90), (40, 30)).save(victim)
    os.utime(victim, ns=(info.st_atime_ns, info.st_mtime_ns))
    assert victim.stat().st_size == info.st_size
    capsys.readouterr()
    assert _cached_training(str(data), model_3, str(tmp_path / 'r'),
                            '--epoch', '2', '--resume', 'latest') == 1
    assert 'a snapshot of another run; differs in data set' in \
        one_error_line(capsys)
    # Its cached features are not the new pixels': computed again.
    shutil.copytree(str(tmp_path / 'r' / 'features'),
                    str(tmp_path / 'r2' / 'features'))
    assert _cached_training(str(data), model_3, str(tmp_path / 'r2'),
                            '--epoch', '1') == 0
    assert 'computing trunk features of 9 images' in capsys.readouterr().out


def test_a_resume_needs_only_the_disk_space_it_will_add(
        cached_run, model_3, tmp_path, capsys, monkeypatch):
    out = tmp_path / 'r'
    assert cached_run(out, '--epoch', '1') == 0

    def needs(run_out, *extra, free=10 ** 6):
        with monkeypatch.context() as patch:
            patch.setattr(run_folder.shutil, 'disk_usage',
                          lambda path: shutil._ntuple_diskusage(
                              10 ** 10, 10 ** 10 - free, free))
            code = cached_run(run_out, *extra)
        err = capsys.readouterr().err
        if code == 0:
            return None
        return float(re.search(r'needs about (\d+) MB', err).group(1))
    [(_, snapshot)] = snapshots.snapshot_files(str(out))
    one_more = os.path.getsize(snapshot) + os.path.getsize(model_3)
    resumed = needs(out, '--epoch', '2', '--resume', 'latest')
    assert resumed == round(one_more / 1e6)  # a snapshot, a model's copy
    assert needs(tmp_path / 'fresh', '--epoch', '1') > resumed
    # Given that much, it runs.
    assert needs(out, '--epoch', '2', '--resume', 'latest',
                 free=one_more + 10 ** 6) is None
    assert [entry['epoch'] for entry in read_log(out)] == [1, 2]
