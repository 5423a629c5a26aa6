"""fast_ops: the numpy kernels against Chainer's functions."""
import os
import subprocess
import sys
import threading
import time

import chainer.functions as F
import numpy
import pytest

import tuned_googlenet
from googlenet_chainer import fast_ops, model_file
from googlenet_chainer.compat import chainer
from googlenet_chainer.images import open_image, preprocess
from googlenet_chainer.training import optimizers

from helpers import ROOT
from image_fixtures import random_images
from numeric import (FAST_PROB_RTOL, PROB_ATOL, PROB_RTOL, WINOGRAD_F2_GROWTH,
                     WINOGRAD_F4_GROWTH, assert_close,
                     assert_probabilities_close)


@pytest.fixture(scope='module')
def model(model_1000):
    return model_file.load_model(model_1000)[0]


def _nchw(x):
    return x.transpose(0, 3, 1, 2)


@pytest.mark.parametrize('n, h, w', [(1, 224, 224), (3, 223, 231),
                                     (5, 239, 224)])
def test_probabilities_match_the_standard_path(model, rng, n, h, w):
    x = random_images(rng, n, h, w)
    fast = model.predict(x)
    with fast_ops.enabled(False):
        standard = model.predict(x)
    assert fast.shape == (n, 1000)
    assert fast.max() > 0.01
    assert_probabilities_close(fast, standard, rtol=FAST_PROB_RTOL)


def test_probabilities_of_the_photo_match(model):
    x = preprocess(open_image(os.path.join(ROOT, 'sample_images',
                                           'cat.png')))[None]
    fast = model.predict(x)
    with fast_ops.enabled(False):
        standard = model.predict(x)
    assert_probabilities_close(fast, standard, rtol=FAST_PROB_RTOL)


def test_chunk_sizes_do_not_change_the_result(model, rng, monkeypatch):
    x = random_images(rng, 5, 224, 224)
    whole = model.predict(x)
    monkeypatch.setattr(tuned_googlenet, 'FAST_CHUNKS',
                        (('conv1', 1), ('inc4a', 2), ('inc5a', 3)))
    assert_close(model.predict(x), whole)


@pytest.mark.parametrize('n, h, w, c, o', [
    (2, 7, 7, 16, 24), (1, 5, 6, 3, 4), (2, 14, 14, 40, 8), (1, 1, 2, 2, 3),
    (2, 28, 28, 16, 24), (1, 9, 13, 5, 7)])
@pytest.mark.parametrize('block', ['default', 'one row of tiles'])
@pytest.mark.parametrize('tile', [2, 4])
def test_winograd_matches_the_direct_convolution(rng, monkeypatch, n, h, w,
                                                 c, o, block, tile):
    if block != 'default':
        monkeypatch.setattr(fast_ops, 'WINOGRAD_BLOCK_FLOATS', 1)
    monkeypatch.setattr(fast_ops, 'winograd_f4_pays',
                        lambda n, h, w: tile == 4)
    link = chainer.links.Convolution2D(c, o, 3, pad=1)
    link.b.array[:] = rng.randn(o)
    x = rng.randn(n, h, w, c).astype(numpy.float32)
    expected = F.relu(link(_nchw(x))).array
    got = fast_ops.winograd_conv_relu(link, x)
    growth = WINOGRAD_F4_GROWTH if tile == 4 else WINOGRAD_F2_GROWTH
    assert_close(_nchw(got), expected, terms=9 * c, growth=growth)
    # Into a slice of a wider output, as an Inception module writes.
    wide = numpy.full((n * h * w, o + 5), 7, numpy.float32)
    fast_ops.winograd_conv_relu(link, x, out=wide[:, 2:2 + o])
    assert numpy.array_equal(wide[:, 2:2 + o].reshape(got.shape), got)
    assert (wide[:, :2] == 7).all() and (wide[:, 2 + o:] == 7).all()


@pytest.mark.parametrize('shape, k, s, pad', [
    ((2, 112, 112, 8), 3, 2, 0), ((1, 28, 28, 5), 3, 1, 1),
    ((2, 14, 14, 3), 3, 2, 0), ((1, 15, 13, 3), 3, 2, 0),
    ((1, 9, 9, 2), 3, 2, 1), ((1, 2, 2, 4), 3, 2, 0), ((1, 1, 1, 2), 3, 2, 1),
    ((2, 6, 5, 3), 2, 2, 1), ((1, 7, 8, 2), 5, 1, 2)])
def test_max_pool_matches_cover_all_pooling(rng, shape, k, s, pad):
    x = rng.randn(*shape).astype(numpy.float32)
    expected = F.max_pooling_2d(_nchw(x), k, s, pad, cover_all=True).array
    assert numpy.array_equal(_nchw(fast_ops.max_pool(x, k, s, pad)),
                             expected)


@pytest.mark.parametrize('shape', [(2, 9, 11, 70), (1, 56, 56, 192),
                                   (1, 3, 3, 1), (3, 5, 5, 6)])
def test_lrn_matches(rng, shape):
    x = (rng.randn(*shape) * 80).astype(numpy.float32)
    expected = F.local_response_normalization(_nchw(x), 5, 1, 1e-4 / 5,
                                              0.75).array
    assert_close(_nchw(fast_ops.lrn(x)), expected, terms=5)


def test_inception_and_strided_convolution_match(model, rng):
    x = rng.randn(2, 28, 28, 192).astype(numpy.float32)
    expected = model.inc3a(_nchw(x)).array
    got = _nchw(fast_ops.inception(model.inc3a, x))
    assert_close(got, expected, terms=192 + 96 * 3 * 3)  # proj3, conv3
    image = rng.uniform(-100, 100, (1, 17, 19, 3)).astype(numpy.float32)
    expected = F.relu(model.conv1(_nchw(image))).array
    got = _nchw(fast_ops.conv_relu(model.conv1, image))
    assert_close(got, expected, terms=3 * 7 * 7)


def test_new_weights_are_seen(model_1000, tmp_path, rng):
    """Kernels kept between calls must follow loads and updates."""
    model, _ = model_file.load_model(model_1000, freeze_until=None)
    x = random_images(rng, 1, 224, 224)
    before = model.predict(x)
    # An update of the (unfrozen) trunk, then prediction again.
    optimizer = optimizers.make_optimizer(model, lr=1e-3)
    model.cleargrads()
    model(random_images(rng, 2, 224, 224), numpy.array([3, 4], numpy.int32)
          ).backward()
    optimizer.update()
    after = model.predict(x)
    with fast_ops.enabled(False):
        assert_probabilities_close(after, model.predict(x))
    assert not numpy.allclose(before, after, rtol=PROB_RTOL, atol=PROB_ATOL)
    # A load into the same object, frozen this time.
    frozen, _ = model_file.load_model(model_1000)
    frozen.predict(x)
    model_file.save_model(str(tmp_path / 'm.model'), model)
    chainer.serializers.load_npz(str(tmp_path / 'm.model'), frozen)
    assert_probabilities_close(frozen.predict(x), after)


def test_the_switch(model, rng):
    x = random_images(rng, 1, 224, 224)
    assert fast_ops.applies(x)
    with fast_ops.enabled(False):
        assert not fast_ops.applies(x)
    assert not fast_ops.applies(x.astype(numpy.float64))
    env = dict(os.environ, GOOGLENET_FAST='0')
    out = subprocess.run(
        [sys.executable, '-c',
            'import fast_ops; print(fast_ops.is_enabled())'],
        env=env, capture_output=True, text=True, cwd=os.path.dirname(
            fast_ops.__file__)).stdout
    assert out.strip() == 'False'


def test_numpys_openblas_is_found_and_set():
    """The thread count of numpy's own OpenBLAS (numpy 1.26's
    libopenblas64_, numpy 2's libscipy_openblas64_ with its scipy_ names)
    is read and set: without, a batch is not spread over the cores."""
    blas = numpy.show_config(mode='dicts')['Build Dependencies']['blas']
    assert 'openblas' in blas['name']  # the wheels the requirements pin
    lib = fast_ops._OpenBLAS()
    assert lib.found
    threads = lib.get()
    assert fast_ops.worker_count() == threads >= 1
    lib.set(1)
    try:
        assert lib.get() == 1
    finally:
        lib.set(threads)


def test_spread_over_cores_keeps_order_errors_and_blas_threads():
    threads = fast_ops.worker_count()
    seen = set()

    def square(i):
        seen.add(threading.current_thread().name)
        return i * i
    assert fast_ops.spread_over_cores(square, range(7)) == [
        i * i for i in range(7)]
    assert fast_ops.spread_over_cores(square, []) == []
    if threads > 1:
        assert len(seen) == min(threads, 7)

    def fail(i):
        if i == 3:
            raise ValueError('item 3')
        return i
    with pytest.raises(ValueError, match='item 3'):
        fast_ops.spread_over_cores(fail, range(6))
    assert fast_ops.worker_count() == threads


def test_an_error_waits_for_the_other_threads_item_in_hand(monkeypatch):
    """When the calling thread's share fails, the other threads finish the
    image in hand and start no other before the BLAS thread count is put
    back: OpenBLAS's count must not change under a running GEMM."""
    threads = fast_ops.worker_count()
    monkeypatch.setattr(fast_ops, 'worker_count', lambda: 2)
    started, finished = [], []
    in_hand = threading.Event()

    def work(i):
        started.append(i)
        if i == 0:
            assert in_hand.wait(10)
            raise ValueError('item 0')
        in_hand.set()
        time.sleep(0.3)
        finished.append(i)
        return i
    with pytest.raises(ValueError, match='item 0'):
        fast_ops.spread_over_cores(work, range(6))
    assert finished == [1]
    assert sorted(started) == [0, 1]
    assert not fast_ops._spread['lock'].locked()
    assert fast_ops._blas['lib'].get() == threads
