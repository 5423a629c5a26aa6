import json
import os
import signal
import subprocess
import sys
import time

import numpy
import pytest
from PIL import Image

from chainer_compat import chainer

import convert_caffe_model
import googlenet_data
import googlenet_predict
import train_googlenet
import tuned_googlenet
from numeric import LOGIT_RTOL, assert_close

COLOURS = {'blue': (30, 40, 220), 'green': (30, 200, 40), 'red': (220, 30, 30)}
QUIET = ['--no-progress', '--loaderjob', '0']


def make_dataset(root, per_class, colours=COLOURS):
    rng = numpy.random.RandomState(0)
    for name, colour in colours.items():
        os.makedirs(os.path.join(root, name), exist_ok=True)
        for i in range(per_class):
            noise = rng.randint(-30, 30, (40 + i, 50, 3))
            array = numpy.clip(numpy.array(colour) + noise, 0, 255)
            Image.fromarray(array.astype(numpy.uint8)).save(
                os.path.join(root, name, '{}.png'.format(i)))
    return str(root)


@pytest.fixture(scope='session')
def dataset(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp('data') / 'colours', 8)


@pytest.fixture(scope='session')
def model_3(tmp_path_factory, caffemodels):
    path = str(tmp_path_factory.mktemp('m3') / 'tuned_googlenet.model')
    # Session fixtures are set up before conftest's per-test seeding: seed
    # the fresh heads' initialisation here, or it depends on which tests ran
    # before.
    numpy.random.seed(0)
    convert_caffe_model.convert(caffemodels['v1'], path, n_classes=3,
                                log=lambda line: None)
    return path


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
                 'snapshot_iter_3', 'tuned_googlenet.model'):
        assert os.path.exists(os.path.join(out, name)), name
    assert 'precision' in printed and 'confusion matrix' in printed
    # The saved model's trunk is the caffemodel's, bit for bit.
    model, names = tuned_googlenet.load_model(
        os.path.join(out, 'tuned_googlenet.model'))
    assert names == ['blue', 'green', 'red']
    for caffe_name, link in convert_caffe_model.LAYER_MAP.items():
        if link.split('/')[0] in tuned_googlenet.TRUNK:
            target = model
            for part in link.split('/'):
                target = getattr(target, part)
            assert numpy.array_equal(target.W.array,
                                     weights[caffe_name][0]), caffe_name
    # ... and prediction prints its class names (which class comes first is
    # not asserted: after 30 epochs at lr 3e-4 the heads' probabilities for
    # a training image can still be close to uniform).
    assert googlenet_predict.main([
        '--model', os.path.join(out, 'tuned_googlenet.model'), '--top', '3',
        os.path.join(dataset, 'red', '0.png')]) == 0
    printed = capsys.readouterr().out.splitlines()[1:4]
    assert sorted(line.split('% ')[1] for line in printed) == names


def test_cached_features_are_the_trunk_on_the_centre_crop_and_mirror(
        dataset, model_3, tmp_path):
    session = train_googlenet.Session(args_for(
        '--train', dataset, '--model', model_3, '--out', str(tmp_path),
        '--cache-features', *QUIET))
    assert len(session.train_set) == 21  # 10% of each class held out
    cached = session.train_set.features
    image_pairs, _ = googlenet_data.read_folder(dataset)
    train_pairs, _ = googlenet_data.stratified_split(image_pairs, 0.1, 0)
    x = train_googlenet.ViewDataset(train_pairs[:2], 2)
    batch = numpy.concatenate([x[0], x[1]])
    with chainer.no_backprop_mode(), chainer.using_config('train', False):
        parts = session.model.features(batch)
    flat = numpy.concatenate([p.array.reshape(4, -1) for p in parts], axis=1)
    assert_close(cached[:2].reshape(4, -1), flat)
    assert not numpy.allclose(cached[0, 0], cached[0, 1])  # the mirror


def test_a_step_on_images_equals_a_step_on_cached_features(dataset, model_3):
    pairs, _ = googlenet_data.read_folder(dataset)
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
    assert 'skipped unreadable' in printed and 'broken.png' in printed


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
