"""training.feature_cache: the trunk's outputs cached, resumed, repaired."""
import argparse
import json
import os
import shutil

import numpy
import pytest

import tuned_googlenet
from googlenet_chainer import datasets, errors, model_file
from googlenet_chainer.compat import chainer
from googlenet_chainer.inference import Predictor
from googlenet_chainer.training import (data as tdata, feature_cache,
                                        sampling, views as views_of)
from googlenet_chainer.training.loader import make_iterator
from googlenet_chainer.training.sampling import SeededOrder
from chainer.serializers import DictionarySerializer, NpzDeserializer

from helpers import sha1_of
from image_fixtures import random_images
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

    def __getattr__(self, name):  # namedparams, freeze_until, ...
        return getattr(self.model, name)

    def frozen_features(self, x, aux=True):
        self.passes += 1
        if self.passes == self.stop_at:
            raise KeyboardInterrupt
        return self.model.frozen_features(x, aux=aux)


def compute(model, images, path, views='1', seed=0):
    features = feature_cache.cached_features(
        Predictor(model, CPU, views_of.view_count(views)), images,
        str(path), 2, 0, 60, show=False, views=views, seed=seed)
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
        show=False, views='1')
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
    assert str(e.value) == (
        '{} cannot be read any more (no such file): it changed after the run '
        'checked its data; put it back and continue with --resume latest, or '
        'start a run without it'.format(images[3][0]))
    with open(tmp_path / 'c.json') as f:
        assert json.load(f)['rows_complete'] == 2


@pytest.fixture
def cut_at():
    """Loads model_3 frozen at a cut, once per cut in a test."""
    loaded = {}

    def load(path, cut):
        if cut not in loaded:
            loaded[cut] = model_file.load_model(path, freeze_until=cut)[0]
        return loaded[cut]
    return load


def test_what_is_cached_at_each_cut_is_the_frozen_part(model_3, cut_at,
                                                      rng):
    x = random_images(rng, 1, 224, 224)
    whole = None
    for cut in feature_cache.CUTS:
        model = cut_at(model_3, cut)
        for aux in (True, False):
            with chainer.no_backprop_mode(), \
                    chainer.using_config('train', False):
                parts = model.frozen_features(x, aux)
                assert [p.shape[1:] for p in parts] == \
                    feature_cache.feature_shapes(cut, aux), (cut, aux)
                if cut in ('inc3b', 'inc4d', 'inc4e', 'inc5b'):
                    again = model.features_from_cache(
                        [p.array for p in parts], aux)
                    whole = whole or model.features(x)
                    for got, expected in zip(again, whole):
                        if aux or got is not None:
                            assert_close(chainer.as_array(got),
                                         expected.array)
                        else:
                            assert expected is not None  # aux off: None
    assert feature_cache.feature_size('inc4e') * 4 == 229632


def test_the_cache_at_a_cut_holds_each_views_frozen_part(
        four, model_3, cut_at, tmp_path):
    model = cut_at(model_3, 'inc4e')
    cached = compute(model, four[:2], tmp_path / 'c.npy', views='2')
    assert cached.shape == (2, 2, feature_cache.feature_size('inc4e'))
    views = views_of.ViewDataset([(path, i) for i, (path, _) in
                                  enumerate(four[:2])], '2')
    with chainer.no_backprop_mode(), chainer.using_config('train', False):
        parts = model.frozen_features(numpy.concatenate([views[0],
                                                         views[1]]))
    flat = numpy.concatenate([p.array.reshape(4, -1) for p in parts], axis=1)
    assert_close(cached.reshape(4, -1), flat)
    assert not numpy.allclose(cached[0, 0], cached[0, 1])  # the mirror
    # A cache made at one cut, with other views, or of other random views
    # is never read for another.
    digests = [sha1 for _, sha1 in four]
    keys = {feature_cache.cache_key(cut_at(model_3, cut), digests, views,
                                    aux, seed)
            for cut in ('inc4e', 'inc5a') for views in ('2', '10',
                                                        '3 random')
            for aux in (True, False) for seed in (0, 1)}
    assert len(keys) == 2 * (2 + 2) * 2  # the seed counts when random


def test_random_views_are_the_images_own_whoever_computes_them(four):
    (a, _), (b, _) = four[:2]
    alone = views_of.ViewDataset([(a, 5)], '3 random', seed=1)[0]
    among = views_of.ViewDataset([(b, 0), (a, 5)], '3 random', seed=1)[1]
    assert alone.shape == (3, 3, 224, 224)
    assert numpy.array_equal(alone, among)
    other = views_of.ViewDataset([(a, 5)], '3 random', seed=2)[0]
    assert not numpy.array_equal(alone, other)
    assert not numpy.array_equal(alone[0], alone[1])
    # The boxes: inside the image, of RandomResizedCrop's scale and
    # aspect; an image too thin for any is taken whole, its aspect clamped.
    rng = numpy.random.default_rng(0)
    for _ in range(200):
        left, top, right, bottom = views_of.random_box(rng, 400, 300)
        w, h = right - left, bottom - top
        assert 0 <= left < right <= 400 and 0 <= top < bottom <= 300
        assert 0.08 * 0.97 <= w * h / 120000 <= 1
        assert 3 / 4 * 0.95 <= w / h <= 4 / 3 * 1.05
    assert views_of.random_box(rng, 1000, 10) == (493, 0, 506, 10)
    assert views_of.random_box(rng, 10, 1000) == (0, 493, 10, 506)


@pytest.mark.parametrize('text, spec', [
    ('2', '2'), (' 10 ', '10'), ('1', '1'), ('8 random', '8 random'),
    ('3random', '3 random'), ('5', None), ('0 random', None),
    ('101 random', None), ('random', None), ('2.5', None)])
def test_cache_views_spellings(text, spec):
    if spec is None:
        with pytest.raises(argparse.ArgumentTypeError,
                           match='expected 1, 2, 10 or "N random"'):
            views_of.parse_views(text)
    else:
        assert views_of.parse_views(text) == spec


def test_a_step_on_images_equals_a_step_on_cached_features(dataset, model_3):
    pairs = datasets.read_folder(dataset).pairs
    pairs = pairs[::8]  # one image of each class
    x = numpy.stack([tdata.ImageDataset(pairs, False)[i][0]
                     for i in range(3)])
    t = numpy.array([label for _, label in pairs], numpy.int32)
    grads = []
    for cached in (False, True):
        model, _ = model_file.load_model(model_3, freeze_until='inc4e')
        model.cleargrads()
        with chainer.no_backprop_mode():
            inputs = [p.array for p in model.frozen_features(x)] \
                if cached else (x,)
        with chainer.using_config('train', False):  # no dropout noise
            loss = model(*inputs, t)
        loss.backward()
        grads.append((float(loss.array), {
            name: p.grad for name, p in model.namedparams()
            if p.grad is not None}))
    assert grads[0][0] == pytest.approx(grads[1][0], rel=LOGIT_RTOL)
    assert grads[0][1].keys() == grads[1][1].keys()
    assert {n.split('/')[1] for n in grads[0][1]} == set(
        ('inc5a', 'inc5b') + tuned_googlenet.HEADS)
    for name in grads[0][1]:
        assert_close(grads[0][1][name], grads[1][1][name])


def test_views_drawn_by_epoch_and_index_with_or_without_loaders_resumed():
    # Each view of each image holds (image, view): a batch shows the draws.
    n, count = 7, 3
    features = numpy.array([[[i, v] for v in range(count)]
                            for i in range(n)], numpy.float32)
    dataset = feature_cache.CachedFeatures(features, list(range(n)), [(2,)],
                                           True, seed=5)

    def batches(loaderjob, resume_after=None, count=8):
        iterator = make_iterator(dataset, 3, loaderjob, 60, SeededOrder(5))
        drawn = []
        try:
            for k in range(count):
                if k == resume_after:  # a snapshot, read by a new session
                    state = {}
                    iterator.serialize(DictionarySerializer(state))
                    iterator.finalize()
                    iterator = make_iterator(dataset, 3, loaderjob, 60,
                                             SeededOrder(5))
                    iterator.serialize(NpzDeserializer(state))
                drawn.append([tuple(int(v) for v in parts.tolist())
                              for parts, _ in next(iterator)])
        finally:
            iterator.finalize()
        return drawn
    serial = batches(0)
    assert batches(2) == serial
    assert batches(0, resume_after=4) == serial
    assert batches(2, resume_after=3) == serial
    # Over three epochs every view is drawn, each as its epoch's order and
    # the image's index in it say.
    seen = [pair for batch in serial for pair in batch]
    assert {view for _, view in seen} == {0, 1, 2}
    for k, pair in enumerate(seen):
        order = SeededOrder(5)(numpy.arange(n) + k // n * n, 0)
        assert pair == sampling.drawn_view(5, order[k % n], n, count)
