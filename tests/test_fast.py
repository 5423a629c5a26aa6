"""The fast inference paths against Chainer's standard functions."""
import os
import signal
import subprocess
import sys
import threading
import time

import numpy
import pytest

from chainer_compat import chainer
import chainer.functions as F

import fast_ops
import tuned_googlenet
from googlenet_io import UserError, open_image, prefetch, preprocess
from numeric import (FAST_PROB_RTOL, PATH_TERMS, PROB_ATOL, PROB_RTOL,
                     WINOGRAD_F2_GROWTH, WINOGRAD_F4_GROWTH, assert_close,
                     assert_probabilities_close)

ROOT = os.path.dirname(os.path.abspath(fast_ops.__file__))


@pytest.fixture(scope='module')
def model(model_1000):
    return tuned_googlenet.load_model(model_1000)[0]


def _images(rng, n, h, w):
    return rng.uniform(-120, 130, (n, 3, h, w)).astype(numpy.float32)


@pytest.mark.parametrize('n, h, w', [(1, 224, 224), (3, 223, 231),
                                     (5, 239, 224)])
def test_probabilities_match_the_standard_path(model, rng, n, h, w):
    x = _images(rng, n, h, w)
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
    x = _images(rng, 5, 224, 224)
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


def test_loading_takes_the_files_arrays_and_no_gradients(model_1000):
    model, _ = tuned_googlenet.load_model(model_1000)
    with numpy.load(model_1000) as npz:
        assert len(npz.files) == len(list(model.params()))
        for name, param in model.namedparams():
            assert numpy.array_equal(param.array, npz[name[1:]]), name
            assert param.array.flags.writeable and param.grad is None


@pytest.mark.parametrize('save', [numpy.savez, numpy.savez_compressed])
def test_read_npz_gives_what_numpy_load_gives(tmp_path, rng, save):
    path = str(tmp_path / 'a.npz')
    arrays = {'a/W': rng.randn(3, 4, 5).astype(numpy.float32),
              'b': numpy.arange(7, dtype=numpy.int64), 'empty': numpy.ones(0),
              'class_names': numpy.array(['cat', 'dog house'])}
    save(path, **arrays)
    got = tuned_googlenet.read_npz(path)
    assert sorted(got) == sorted(arrays)
    for name, array in arrays.items():
        assert got[name].dtype == array.dtype, name
        assert numpy.array_equal(got[name], array), name


def test_a_truncated_or_incomplete_model_is_refused(tmp_path, model_1000):
    with open(model_1000, 'rb') as f:
        data = f.read()
    cut = tmp_path / 'cut.model'
    cut.write_bytes(data[:len(data) // 2] + data[-2000:])
    with pytest.raises(UserError, match='cannot read model file'):
        tuned_googlenet.load_model(str(cut))
    # One byte changed inside a weight: finite, the right size, wrong.
    flipped = bytearray(data)
    flipped[len(data) // 2] ^= 0x01
    damaged = tmp_path / 'damaged.model'
    damaged.write_bytes(bytes(flipped))
    with pytest.raises(UserError, match='bad CRC-32, the file is damaged'):
        tuned_googlenet.load_model(str(damaged))
    with numpy.load(model_1000) as npz:
        arrays = {name: npz[name] for name in npz.files}
    for edit in ('missing', 'shape'):
        edited = dict(arrays)
        if edit == 'missing':
            del edited['inc4c/conv3/W']
        else:
            edited['inc4c/conv3/W'] = edited['inc4c/conv3/W'][:, :-1]
        path = str(tmp_path / (edit + '.model'))
        with open(path, 'wb') as f:
            numpy.savez(f, **edited)
        with pytest.raises(UserError, match='cannot read model file'):
            tuned_googlenet.load_model(path)


def test_prediction_with_a_model_imports_no_dead_weight(model_1000):
    # What a run that classifies with an existing model never uses, and
    # whose imports would lengthen every start-up: downloads, plots,
    # progress bars, the caffemodel reader.
    code = ('import sys, googlenet_predict\n'
            'code = googlenet_predict.main(sys.argv[1:])\n'
            'print(sorted({"requests", "matplotlib", "tqdm", "asyncio",'
            ' "google.protobuf", "caffe_pb2"} & set(sys.modules)), code)')
    out = subprocess.run(
        [sys.executable, '-c', code, '--model', model_1000, '--top', '1',
         os.path.join(ROOT, 'sample_images', 'cat.png')],
        capture_output=True, text=True, cwd=ROOT, check=True).stdout
    assert out.splitlines()[-1] == '[] 0'


def test_chainers_download_lock_still_loads_on_first_use():
    code = ('import sys, chainer_compat, chainer.dataset.download as d\n'
            'before = "asyncio" in sys.modules\n'
            'lock = d.filelock.FileLock(sys.argv[1])\n'
            'import filelock\n'
            'print(before, type(lock).__module__,'
            ' filelock.FileLock is d.filelock.FileLock)')
    out = subprocess.run([sys.executable, '-c', code, os.devnull + '.lock'],
                         capture_output=True, text=True, cwd=ROOT,
                         check=True).stdout
    assert out.split() == ['False', 'filelock._unix', 'True']


def test_features_match_and_the_cut_still_trains(model_1000, rng):
    model, _ = tuned_googlenet.load_model(model_1000, freeze_until='inc4e')
    x = _images(rng, 3, 224, 224)
    results = []
    for flag in (True, False):
        with fast_ops.enabled(flag):
            model.cleargrads()
            features = model.features(x)
            F.sum(features[2]).backward()
            results.append(([f.array.copy() for f in features],
                            model.inc5a.conv3.W.grad.copy()))
            assert model.inc4e.conv3.W.grad is None
    for fast, standard in zip(results[0][0], results[1][0]):
        assert_close(fast, standard)
    # The weight gradient sums products along the path to pool5 and back.
    assert_close(results[0][1], results[1][1], terms=2 * PATH_TERMS)


def _nchw(x):
    return x.transpose(0, 3, 1, 2)


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
    model, _ = tuned_googlenet.load_model(model_1000, freeze_until=None)
    x = _images(rng, 1, 224, 224)
    before = model.predict(x)
    # An update of the (unfrozen) trunk, then prediction again.
    optimizer = tuned_googlenet.make_optimizer(model, lr=1e-3)
    model.cleargrads()
    model(_images(rng, 2, 224, 224), numpy.array([3, 4], numpy.int32)
          ).backward()
    optimizer.update()
    after = model.predict(x)
    with fast_ops.enabled(False):
        assert_probabilities_close(after, model.predict(x))
    assert not numpy.allclose(before, after, rtol=PROB_RTOL, atol=PROB_ATOL)
    # A load into the same object, frozen this time.
    frozen, _ = tuned_googlenet.load_model(model_1000)
    frozen.predict(x)
    tuned_googlenet.save_model(str(tmp_path / 'm.model'), model)
    chainer.serializers.load_npz(str(tmp_path / 'm.model'), frozen)
    assert_probabilities_close(frozen.predict(x), after)


def test_the_switch(model, rng):
    x = _images(rng, 1, 224, 224)
    assert fast_ops.applies(x)
    with fast_ops.enabled(False):
        assert not fast_ops.applies(x)
    assert not fast_ops.applies(x.astype(numpy.float64))
    env = dict(os.environ, GOOGLENET_FAST='0')
    out = subprocess.run(
        [sys.executable, '-c', 'import fast_ops; print(fast_ops.is_enabled())'],
        env=env, capture_output=True, text=True, cwd=os.path.dirname(
            fast_ops.__file__)).stdout
    assert out.strip() == 'False'


def test_prefetch_overlaps_keeps_order_and_errors_in_place():
    started = {}

    def work(item):
        started[item] = threading.Event()
        started[item].set()
        if item == 2:
            raise UserError('bad {}'.format(item))
        return item * 10

    got = []
    for item, future in prefetch(work, range(5), ahead=2):
        if item == 0:
            # The next item is prepared while the caller still holds this.
            assert wait_for(lambda: 1 in started)
        try:
            got.append(future.result())
        except UserError as e:
            got.append(str(e))
    assert got == [0, 10, 'bad 2', 30, 40]


def test_prefetch_stays_ahead_by_at_most_its_bound_and_stops_when_closed():
    calls = []
    items = prefetch(lambda i: calls.append(i) or i, range(1000), ahead=3)
    assert next(items)[0] == 0
    assert wait_for(lambda: len(calls) >= 4)
    # Three waiting in the queue, one held by the blocked thread.
    assert not wait_for(lambda: len(calls) > 5, timeout=0.5)
    items.close()
    count = len(calls)
    assert not wait_for(lambda: len(calls) > count + 1, timeout=0.5)


def test_prefetch_with_two_workers_decodes_two_at_once_in_order():
    both = threading.Barrier(2, timeout=10)

    def work(item):
        if item < 2:
            both.wait()  # returns only when items 0 and 1 run together
        time.sleep(0.001 * (item % 3))  # finishing out of order
        if item == 4:
            raise UserError('bad 4')
        return item * 10
    got = []
    for item, future in prefetch(work, range(9), ahead=2, workers=2):
        try:
            got.append((item, future.result()))
        except UserError as e:
            got.append((item, str(e)))
    assert got == [(i, 'bad 4' if i == 4 else i * 10) for i in range(9)]


def test_prefetch_starts_before_the_first_next_and_close_stops_it():
    calls = []
    with prefetch(lambda i: calls.append(i) or i, range(1000), ahead=2):
        # The caller loads its model meanwhile.
        assert wait_for(lambda: len(calls) >= 3)
    count = len(calls)
    assert count <= 4
    assert not wait_for(lambda: len(calls) > count, timeout=0.5)


def test_images_opened_in_threads_keep_their_own_pixel_limits(tmp_path):
    from PIL import Image
    path = str(tmp_path / 'a.png')
    Image.fromarray(numpy.arange(6000, dtype=numpy.uint8).reshape(
        40, 50, 3)).save(path)
    default = Image.MAX_IMAGE_PIXELS

    def opened(limit):
        try:
            return open_image(path, limit).size
        except UserError as e:
            return str(e)
    limits = [1999, 2000, 10 ** 6] * 20
    for got, limit in zip(prefetch(opened, limits, ahead=8, workers=4),
                          limits):
        assert got[1].result() == ((50, 40) if limit >= 2000 else (
            'larger than the pixel limit (2000 pixels > 1999; '
            '--max-pixels raises it)'))
    assert Image.MAX_IMAGE_PIXELS == default


def wait_for(condition, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return condition()


def test_ctrl_c_while_an_image_is_prepared_ahead(model_1000, server):
    """The prefetching thread, stuck in a download, neither hides the
    interrupt nor holds up the exit."""
    reached, released = threading.Event(), threading.Event()

    def stuck(handler):
        reached.set()
        released.wait(600)  # until the test ends
    server.routes['/stuck.png'] = stuck
    process = subprocess.Popen(
        [sys.executable, 'googlenet_predict.py', '--model', model_1000,
         '--timeout', '600', '-u', server.url('/stuck.png')],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        # A job started in the background of a script inherits SIGINT
        # ignored, and Python then keeps ignoring it: a user's Ctrl-C is
        # what is tested, so the child gets the default disposition.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        assert reached.wait(300)
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=60)
    finally:
        process.kill()
        released.set()
    assert process.returncode == 130, err
    assert err.strip().splitlines() == ['interrupted']


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
