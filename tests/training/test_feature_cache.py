"""training.feature_cache: the trunk's outputs cached, resumed, repaired."""
import json
import os
import shutil

import numpy
import pytest

import tuned_googlenet
from googlenet_chainer import datasets, errors, model_file
from googlenet_chainer.compat import chainer
from googlenet_chainer.inference import Predictor
from googlenet_chainer.training import data as tdata, feature_cache

import run_steps
from helpers import sha1_of
from image_fixtures import QUIET
from numeric import LOGIT_RTOL, assert_close

CPU = chainer.get_device('@numpy')


@pytest.fixture(scope='module')
def four(dataset):
    """Four images, (path, sha1) each: two blocks of two."""
    return [(path, sha1_of(path))
            for path, _ in datasets.read_folder(dataset).pairs[::6]]


@pytest.fixture(scope='module')
def model(model_3):
    return model_file.load_model(model_3)[0]


@pytest.fixture(scope='module')
def reference(four, model, tmp_path_factory):
    """(folder of a complete cache c.npy and c.json, its array)."""
    folder = tmp_path_factory.mktemp('cache')
    return folder, compute(model, four, folder / 'c.npy')


class CountingModel:
    """The model, counting its forward passes; raises KeyboardInterrupt on
    pass number stop_at (a Ctrl-C in the middle of the cache)."""

    def __init__(self, model, stop_at=None):
        self.model = model
        self.stop_at = stop_at
        self.passes = 0

    def namedparams(self):
        return self.model.namedparams()

    @property
    def frozen_stages(self):
        return self.model.frozen_stages

    def features(self, x, aux=True):
        self.passes += 1
        if self.passes == self.stop_at:
            raise KeyboardInterrupt
        return self.model.features(x, aux=aux)


def compute(model, images, path):
    features = feature_cache.cached_features(
        Predictor(model, CPU), images, str(path), 2, 0, 60, show=False)
    return numpy.array(features)


def _truncate(path):
    with open(path, 'r+b') as f:
        f.truncate(os.path.getsize(path) - 100)


def _empty(path):
    open(path, 'wb').close()


def _overwrite_row_3(path):
    array = numpy.load(path, mmap_mode='r')
    with open(path, 'r+b') as f:
        f.seek(array.offset + 3 * array[0].nbytes + 40)
        f.write(b'\x7f' * 16)


def _fifo(path):
    os.unlink(path)
    os.mkfifo(path)  # opened, it would wait for a writer forever


def test_a_stopped_cache_resumes_from_its_complete_blocks(
        four, model, reference, tmp_path, capsys):
    stopped = CountingModel(model, stop_at=2)
    with pytest.raises(KeyboardInterrupt):
        compute(stopped, four, tmp_path / 'b.npy')
    with open(tmp_path / 'b.json') as f:
        index = json.load(f)
    assert index['rows_complete'] == 2 and index['blocks'][1] is None
    capsys.readouterr()
    again = CountingModel(model)
    assert numpy.array_equal(compute(again, four, tmp_path / 'b.npy'),
                             reference[1])
    assert again.passes == 1  # the second block only
    assert '(2 done before)' in capsys.readouterr().out
    # Complete and unchanged: read back, memory-mapped, nothing computed.
    reread = CountingModel(model)
    mapped = feature_cache.cached_features(
        Predictor(reread, CPU), four, str(tmp_path / 'b.npy'), 2, 0, 60,
        show=False)
    assert isinstance(mapped, numpy.memmap) and reread.passes == 0
    assert capsys.readouterr().out == ''


@pytest.mark.parametrize('damage, file, note, passes', [
    (_truncate, 'c.npy', 'bytes where', 2),
    (_fifo, 'c.npy', 'c.npy: not a regular file: recomputing it', 2),
    (_empty, 'c.npy', 'damaged (not a .npy file', 2),
    (_empty, 'c.json', 'damaged index', 2),
    (os.unlink, 'c.npy', 'c.npy: missing: recomputing it', 2),
    (_overwrite_row_3, 'c.npy', '1 complete block changed on disk', 1)])
def test_a_damaged_cache_is_recomputed_with_a_note(
        damage, file, note, passes, four, model, reference, tmp_path,
        capsys):
    for name in ('c.npy', 'c.json'):
        shutil.copy(reference[0] / name, tmp_path / name)
    damage(str(tmp_path / file))
    capsys.readouterr()
    counting = CountingModel(model)
    assert numpy.array_equal(compute(counting, four, tmp_path / 'c.npy'),
                             reference[1])
    printed = capsys.readouterr().out
    assert note in printed and 'Traceback' not in printed, printed
    assert counting.passes == passes


def test_a_cache_of_an_earlier_reading_of_the_images_is_recomputed(
        four, model, reference, tmp_path, monkeypatch):
    # Same images, same trunk, but the decoding or preprocessing changed
    # (a new release): the old features are not the images' any more.
    for name in ('c.npy', 'c.json'):
        shutil.copy(reference[0] / name, tmp_path / name)
    monkeypatch.setattr(feature_cache, 'READING', feature_cache.READING + 1)
    counting = CountingModel(model)
    compute(counting, four, tmp_path / 'c.npy')
    assert counting.passes == 2


def test_an_image_gone_after_the_check_is_named_and_the_blocks_kept(
        four, model, tmp_path):
    images = [(str(tmp_path / '{}.png'.format(i)), sha1)
              for i, (_, sha1) in enumerate(four)]
    for (source, _), (copy, _) in zip(four, images):
        shutil.copy(source, copy)
    os.unlink(images[3][0])
    with pytest.raises(errors.UserError) as e:
        compute(model, images, tmp_path / 'c.npy')
    assert str(e.value) == ('{}: no such file (it changed after the images '
                            'were checked)'.format(images[3][0]))
    with open(tmp_path / 'c.json') as f:
        assert json.load(f)['rows_complete'] == 2


def test_cached_features_are_the_trunk_on_the_centre_crop_and_mirror(
        dataset, model_3, tmp_path):
    _, model, _, _, train_set, _ = run_steps.datasets_of([
        '--train', dataset, '--model', model_3, '--out', str(tmp_path),
        '--cache-features', *QUIET])
    assert len(train_set) == 21  # 10% of each class held out
    cached = train_set.features
    image_pairs = datasets.read_folder(dataset).pairs
    train_pairs, _ = datasets.stratified_split(image_pairs, 0.1, 0)
    x = feature_cache.ViewDataset(train_pairs[:2], 2)
    batch = numpy.concatenate([x[0], x[1]])
    with chainer.no_backprop_mode(), chainer.using_config('train', False):
        parts = model.features(batch)
    flat = numpy.concatenate([p.array.reshape(4, -1) for p in parts], axis=1)
    assert_close(cached[:2].reshape(4, -1), flat)
    assert not numpy.allclose(cached[0, 0], cached[0, 1])  # the mirror


def test_a_step_on_images_equals_a_step_on_cached_features(dataset, model_3):
    pairs = datasets.read_folder(dataset).pairs
    pairs = pairs[::8]  # one image of each class
    x = numpy.stack([tdata.ImageDataset(pairs, False)[i][0]
                     for i in range(3)])
    t = numpy.array([label for _, label in pairs], numpy.int32)
    grads = []
    for cached in (False, True):
        model, _ = model_file.load_model(model_3)
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
