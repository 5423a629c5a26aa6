"""Inference-only numpy paths for GoogLeNet's trunk, where no gradient is
needed.

Chainer's functions keep what backprop needs even under no_backprop_mode:
max pooling builds im2col columns and an argmax index, the convolutions copy
their input into columns in NCHW and transpose around tensordot. Here the
trunk runs channels-last (NHWC), where a 1x1 convolution is one GEMM straight
on the activations, the 1x1 convolutions of an Inception module that read the
same input are fused into one GEMM, a kxk convolution is one copy into
columns and one GEMM, max pooling is a running maximum over strided views
and LRN a running sum over the (contiguous) channel axis.

Anything that backpropagates keeps Chainer's standard functions. The switch:
``GOOGLENET_FAST=0`` in the environment, or ``fast_ops.enabled(False)``.
"""
import concurrent.futures
import contextlib
import ctypes
import itertools
import os
import threading

import numpy
from numpy.lib.stride_tricks import as_strided

_state = {'on': os.environ.get('GOOGLENET_FAST', '1') != '0'}
# Floats in a working set that fits a core's L2 cache with room to spare.
_L2_FLOATS = 32 * 1024


def is_enabled():
    """Whether the fast paths are on now.

    ``GOOGLENET_FAST=0`` in the environment at import turns them off;
    enabled() sets them inside its block.

    Returns:
        The current setting, a bool.
    """
    return _state['on']


@contextlib.contextmanager
def enabled(flag):
    """Turns the fast paths on or off inside the block.

    The switch is process-wide, not per thread; the previous setting comes
    back on leaving the block, an exception included.

    Args:
        flag: True for the fast paths, False for Chainer's functions alone.
    """
    previous = _state['on']
    _state['on'] = flag
    try:
        yield
    finally:
        _state['on'] = previous


class _OpenBLAS:
    """The thread count of the OpenBLAS that numpy loaded, found by its
    file in /proc/self/maps and its exported setter: suffixed 64_ in
    numpy's ILP64 wheels, and also prefixed scipy_ in numpy 2's, which
    ship scipy-openblas (libscipy_openblas64_); ``found`` is False on any
    other BLAS or system, where nothing here changes it."""

    def __init__(self):
        self.get = self.set = None
        try:
            with open('/proc/self/maps') as f:
                paths = {line.split()[-1] for line in f
                         if 'openblas' in line.lower() and '/' in line}
        except OSError:
            paths = ()
        for path in sorted(paths):
            try:
                lib = ctypes.CDLL(path)
            except OSError:
                continue
            for prefix, suffix in itertools.product(('scipy_', ''),
                                                    ('64_', '_64_', '')):
                get = getattr(lib, prefix + 'openblas_get_num_threads' +
                              suffix, None)
                set_ = getattr(lib, prefix + 'openblas_set_num_threads' +
                               suffix, None)
                if get and set_:
                    get.restype, set_.argtypes = ctypes.c_int, [ctypes.c_int]
                    self.get, self.set = get, set_
                    return

    @property
    def found(self):
        return self.get is not None


_blas = {}
_spread = {'lock': threading.Lock(), 'pool': None, 'size': 0}


def worker_count():
    """How many threads spread_over_cores runs.

    Returns:
        OpenBLAS's own thread count (the cores it may use,
        OPENBLAS_NUM_THREADS if set), at least 1; 1 where that cannot be
        read or set (another BLAS or system).
    """
    if 'lib' not in _blas:
        _blas['lib'] = _OpenBLAS()
    lib = _blas['lib']
    return max(1, lib.get()) if lib.found else 1


def spread_over_cores(function, items):
    """[function(item) for item in items], the items shared out among cores.

    The items are dealt in turn among worker_count() threads (the calling
    one included), each with a one-thread OpenBLAS for the duration; a
    single item runs in the calling thread, also on one BLAS thread.

    On a 2-core machine a small GEMM split over two BLAS threads waits on
    both, and everything between the GEMMs (copies, transforms, pooling,
    LRN, bias and ReLU) runs on one core; whole images on each core keep
    both busy with neither waiting. One image's GEMMs on numpy 2's OpenBLAS
    threads took 2-3x as long as on one whenever other processes shared
    the cores (bench/README.md). numpy releases the GIL in its array loops
    and BLAS calls. One caller at a time spreads (the thread count is
    process-wide); another runs in the calling thread as it is.

    Args:
        function: called with one item; must be safe to run in several
            threads at once.
        items: an iterable, read once into a list.

    Returns:
        The list of function's results, in items' order.
    """
    items = list(items)
    workers = min(worker_count(), len(items))
    if (not items or worker_count() < 2 or
            not _spread['lock'].acquire(blocking=False)):
        return [function(item) for item in items]
    lib = _blas['lib']
    threads = lib.get()
    try:
        lib.set(1)
        if workers < 2:
            return [function(items[0])]
        return _shared_out(function, items, workers)
    finally:
        lib.set(threads)
        _spread['lock'].release()


def _shared_out(function, items, workers):
    """spread_over_cores' work on ``workers`` threads, the calling one
    included, once it holds the lock and BLAS runs on one thread."""
    if _spread['size'] < workers - 1:
        _spread['pool'] = concurrent.futures.ThreadPoolExecutor(
            workers - 1, thread_name_prefix='fast_ops')
        _spread['size'] = workers - 1
    stop = threading.Event()

    def share(k):
        done = []
        for item in items[k::workers]:
            if stop.is_set():
                break
            done.append(function(item))
        return done
    futures = [_spread['pool'].submit(share, k) for k in range(1, workers)]
    try:
        shares = [share(0)]
        for future in futures:
            # Polled, so that Ctrl-C reaches a main thread that waits.
            while True:
                try:
                    shares.append(future.result(timeout=0.1))
                    break
                except concurrent.futures.TimeoutError:
                    pass
    except BaseException:
        # The other threads finish the item in hand first: the BLAS thread
        # count must not change under a running GEMM, nor the next caller
        # spread while they still run.
        stop.set()
        concurrent.futures.wait(futures)
        raise
    results = [None] * len(items)
    for k, part in enumerate(shares):
        results[k::workers] = part
    return results


def applies(x):
    """Whether x can take the fast path.

    Args:
        x: an array or a chainer.Variable.

    Returns:
        True when the fast paths are on (is_enabled) and x's array is a
        float32 numpy array (on the CPU).
    """
    array = getattr(x, 'array', x)
    return _state['on'] and isinstance(array, numpy.ndarray) and (
        array.dtype == numpy.float32)


def to_nhwc(x):
    """NCHW x as a C-contiguous NHWC array, copied unless already so.

    Args:
        x: a numpy array, N x C x H x W.

    Returns:
        The array N x H x W x C, C-contiguous.
    """
    return numpy.ascontiguousarray(x.transpose(0, 2, 3, 1))


def to_nchw(x):
    """NHWC x as a C-contiguous NCHW array, to_nhwc's inverse.

    Args:
        x: a numpy array, N x H x W x C.

    Returns:
        The array N x C x H x W, C-contiguous.
    """
    return numpy.ascontiguousarray(x.transpose(0, 3, 1, 2))


def _bias_relu(y, b):
    y += b
    numpy.maximum(y, 0, out=y)
    return y


def _columns(x, kh, kw, stride, pad):
    """im2col for NHWC: (N*Ho*Wo, kh*kw*C + 1), in (ky, kx, c) order, then
    a column of ones that multiplies the bias row of the kernel matrix."""
    n, h, w, c = x.shape
    if pad:
        padded = numpy.zeros((n, h + 2 * pad, w + 2 * pad, c), x.dtype)
        padded[:, pad:pad + h, pad:pad + w] = x
    else:
        padded = numpy.ascontiguousarray(x)
    ho = (h + 2 * pad - kh) // stride + 1
    wo = (w + 2 * pad - kw) // stride + 1
    sn, sh, sw, sc = padded.strides
    windows = as_strided(padded, (n, ho, wo, kh, kw, c),
                         (sn, sh * stride, sw * stride, sh, sw, sc))
    k = kh * kw * c
    cols = numpy.empty((n * ho * wo, k + 1), x.dtype)
    numpy.copyto(cols[:, :k].reshape(windows.shape), windows)
    cols[:, k] = 1
    return cols, (n, ho, wo)


def _kernel(key, source, make, kernels):
    """make(), or its earlier result in kernels while source is the same
    array (kernels is None where the weights may change between calls)."""
    if kernels is None:
        return make()
    entry = kernels.get(key)
    if entry is None or entry[0] is not source:
        entry = kernels[key] = (source, make())
    return entry[1]


def conv_relu(link, x, out=None, kernels=None):
    """ReLU(convolution) of NHWC x by a Convolution2D link, as NHWC.

    A 1x1 convolution of stride 1 without padding is one GEMM on the
    activations, a 3x3 one of stride 1 and pad 1 winograd_conv_relu, any
    other one GEMM on im2col columns with the bias as a row of the kernel
    matrix.

    Args:
        link: a chainer.links.Convolution2D with square stride and pad
            (only their first values are read).
        x: float32 numpy array, N x H x W x C.
        out: None, or a (N*Ho*Wo, O) view to write into (a slice of a
            concatenated output).
        kernels: None, or a dict that keeps the weights rearranged for
            GEMM between calls (_kernel): only for weights no update
            changes.

    Returns:
        N x Ho x Wo x O, ``out``'s memory where given.
    """
    W, b = link.W.array, link.b.array
    o, c, kh, kw = W.shape
    stride, pad = link.stride[0], link.pad[0]
    if kh == kw == 1 and stride == 1 and pad == 0:
        n, h, w, _ = x.shape
        y = numpy.matmul(x.reshape(-1, c), W.reshape(o, c).T, out=out)
        _bias_relu(y, b)
        return y.reshape(n, h, w, o)
    if kh == kw == 3 and stride == 1 and pad == 1:
        return winograd_conv_relu(link, x, out, kernels)
    cols, shape = _columns(x, kh, kw, stride, pad)
    # (O, C, kh, kw) -> (kh*kw*C, O) in _columns' order, then the bias.
    kernel = _kernel(link, W, lambda: numpy.concatenate([
        W.transpose(2, 3, 1, 0).reshape(-1, o), b[None]]), kernels)
    y = numpy.matmul(cols, kernel, out=out)
    numpy.maximum(y, 0, out=y)
    return y.reshape(shape + (o,))


# Winograd F(m x m, 3x3) (Lavin and Gray, "Fast Algorithms for Convolutional
# Neural Networks", CVPR 2016): an m x m output tile of a 3x3 convolution is
# A^T [(G g G^T) * (B^T d B)] A for the (m+2) x (m+2) input tile d around it,
# (m+2)**2 multiplications per channel instead of 9 m**2: F(2x2) at 4 per
# output, F(4x4) at 2.25. F(2x2)'s B^T and A^T hold only 0 and +-1; F(4x4)'s
# (points 0, 1, -1, 2, -2 and infinity) also 2, 4, 5 and 8.
# Floats of GEMM products per block of tiles (4 MB).
WINOGRAD_BLOCK_FLOATS = 1 << 20
WINOGRAD_G = numpy.array([[1, 0, 0], [.5, .5, .5], [.5, -.5, .5], [0, 0, 1]])
WINOGRAD_F4_G = numpy.array([
    [1 / 4, 0, 0], [-1 / 6, -1 / 6, -1 / 6], [-1 / 6, 1 / 6, -1 / 6],
    [1 / 24, 1 / 12, 1 / 6], [1 / 24, -1 / 12, 1 / 6], [0, 0, 1]])
WINOGRAD_F4_AT = numpy.array([[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0],
                              [0, 1, 1, 4, 4, 0], [0, 1, -1, 8, -8, 1]])
# (16, 36): the outputs (dy, dx) of a tile from its 36 products.
WINOGRAD_F4_AT2 = numpy.kron(WINOGRAD_F4_AT, WINOGRAD_F4_AT).astype(
    numpy.float32)


def winograd_kernel(W, g=WINOGRAD_G):
    """Winograd's transform of 3x3 filters: the right-hand sides of GEMMs.

    Transformed in float64 and rounded once.

    Args:
        W: the filters, O x C x 3 x 3.
        g: the transform G, a x 3: WINOGRAD_G (a = 4, F(2x2)) or
            WINOGRAD_F4_G (a = 6, F(4x4)).

    Returns:
        a*a x C x O of W's dtype: G w G^T at each of the a*a tile
        positions.
    """
    o, c = W.shape[:2]
    a = len(g)
    out = numpy.empty((a, a, c, o), W.dtype)
    # In blocks of output channels whose float64 temporaries (512 KB) are
    # reused from the heap: whole-layer ones are fresh pages each time, and
    # their page faults were most of a fresh process's first forward pass.
    # Two tensordots (BLAS), not a three-operand einsum (0.27 s in C
    # loops); either way the same float64 sums of three, so the same
    # rounded kernels.
    step = max(1, (1 << 16) // (a * a * c))
    for first in range(0, o, step):
        w = W[first:first + step].astype(numpy.float64)
        u = numpy.tensordot(numpy.tensordot(g, w, axes=(1, 2)), g,
                            axes=(3, 1))
        # (i, o, c, j) -> (i, j, c, o)
        out[:, :, :, first:first + step] = u.transpose(0, 3, 2, 1)
    return out.reshape(a * a, c, o)


def _taps(a, axis, tiles, stride, i):
    """Tap i of every tile's window along axis: a[i::stride], tiles long."""
    index = [slice(None)] * a.ndim
    index[axis] = slice(i, i + stride * tiles, stride)
    return a[tuple(index)]


def _pairs(a, axis, out):
    """B^T along one axis of 4-tap windows at stride 2: out[0..3] =
    (d0 - d2, d1 + d2, d2 - d1, d1 - d3) for d_i = a[i::2] (tiles)."""
    tiles = out.shape[axis + 1]

    def d(i):
        return _taps(a, axis, tiles, 2, i)
    numpy.subtract(d(0), d(2), out=out[0])
    numpy.add(d(1), d(2), out=out[1])
    numpy.subtract(d(2), d(1), out=out[2])
    numpy.subtract(d(1), d(3), out=out[3])


def _sixes(d, out, scratch):
    """F(4x4)'s B^T over six taps d[0..5] (arrays of out[0]'s shape; Lavin
    and Gray 2016): out[0..5] = (4 d0 - 5 d2 + d4, -4 d1 - 4 d2 + d3 + d4,
    4 d1 - 4 d2 - d3 + d4, -2 d1 - d2 + 2 d3 + d4, 2 d1 - d2 - 2 d3 + d4,
    4 d1 - 5 d3 + d5); scratch is out[0]'s shape."""
    # Shared sums, each a pass fewer than the rows one by one:
    # out1, out2 = r +- q with q = d3 - 4 d1, r = d4 - 4 d2;
    # out3, out4 = t +- s with t = d4 - d2, s = 2 (d3 - d1).
    numpy.multiply(d[1], -4, out=scratch)
    scratch += d[3]
    numpy.multiply(d[2], -4, out=out[2])
    out[2] += d[4]
    numpy.add(out[2], scratch, out=out[1])
    out[2] -= scratch
    numpy.subtract(d[4], d[2], out=scratch)
    numpy.subtract(d[0], d[2], out=out[0])
    out[0] *= 4
    out[0] += scratch
    numpy.subtract(d[3], d[1], out=out[5])
    out[5] *= 2
    numpy.add(scratch, out[5], out=out[3])
    numpy.subtract(scratch, out[5], out=out[4])
    out[5] *= -2
    out[5] += d[5]
    out[5] -= d[3]


def winograd_f4_pays(n, h, w):
    """Whether F(4x4) runs n h x w images faster than F(2x2).

    It does where the tiles fit without padding and are enough for its
    GEMMs, at least two 28x28 images' worth (98 rows). Measured on one core
    (2026-11-30, a shared machine, medians of alternating runs): 1.1-1.3x
    at conv2 (56x56, 64 -> 192) from one image; at 28x28 (inc3a, inc3b)
    0.92-1.10x from one image, 1.05-1.45x from two or four; 0.4-0.9x at
    14x14 and 7x7 (inc4*, inc5*: tiles padded by a third, few GEMM rows).

    Args:
        n: images.
        h: their height, in pixels.
        w: their width, in pixels.

    Returns:
        True when h and w are multiples of 4 and n*h*w >= 2*28*28.
    """
    return h % 4 == 0 and w % 4 == 0 and n * h * w >= 2 * 28 * 28


def winograd_conv_relu(link, x, out=None, kernels=None):
    """ReLU of a 3x3, stride 1, pad 1 convolution of NHWC x by Winograd.

    F(m x m, 3x3), m = 4 where winograd_f4_pays, else 2: (m+2)**2 GEMMs of
    (N*ceil(H/m)*ceil(W/m), C) by (C, O), in blocks of tile rows whose
    products stay in the cache. Its rounding grows over the direct sum's
    by (8/3)**2 for F(2x2), 16**2 for F(4x4) (tests/numeric.py,
    WINOGRAD_F2_GROWTH and WINOGRAD_F4_GROWTH).

    Args:
        link: a chainer.links.Convolution2D of 3x3 filters; its stride and
            pad are taken to be 1 (not read).
        x: float32 numpy array, N x H x W x C.
        out: None, or a (N*H*W, O) view to write into, as conv_relu's.
        kernels: None, or conv_relu's cache of transformed filters.

    Returns:
        N x H x W x O, ``out``'s memory where given.
    """
    W, b = link.W.array, link.b.array
    o, c = W.shape[:2]
    n, h, w, _ = x.shape
    if winograd_f4_pays(n, h, w):
        m, g = 4, WINOGRAD_F4_G
        buffers, block_function = _winograd4_buffers, _winograd4_block
    else:
        m, g = 2, WINOGRAD_G
        buffers, block_function = _winograd_buffers, _winograd_block
    th, tw = -(-h // m), -(-w // m)
    kernel = _kernel((link, m), W, lambda: winograd_kernel(W, g), kernels)
    padded = numpy.zeros((n, m * th + 2, m * tw + 2, c), x.dtype)
    padded[:, 1:h + 1, 1:w + 1] = x
    if out is None:
        out = numpy.empty((n * h * w, o), x.dtype)
    image = out.reshape(n, h, w, o)
    # Rows of tiles in blocks whose GEMM products stay in the cache
    # between the GEMMs and the output transform.
    step = max(1, WINOGRAD_BLOCK_FLOATS // ((m + 2) ** 2 * o * n * tw))
    space = buffers(n, min(step, th), tw, c, x.dtype)
    for first in range(0, th, step):
        block = min(step, th - first)
        block_function(padded[:, m * first:m * (first + block) + 2], space,
                       kernel, b, image[:, m * first:m * (first + block)])
    return image


def _winograd_buffers(n, tile_rows, tw, c, dtype):
    """F(2x2)'s work space for blocks of up to tile_rows rows of tw tiles:
    the input transformed along the rows, then along the columns."""
    return (numpy.empty((4, n, tile_rows, 2 * tw + 2, c), dtype),
            numpy.empty((4, 4, n, tile_rows, tw, c), dtype))


def _winograd_block(padded, space, kernel, b, image):
    """F(2x2) on the tiles of one block of rows, padded (N, 2*rows + 2,
    2*tiles + 2, C): input transform, GEMMs, output transform, ReLU, into
    image (the block's output rows). space is _winograd_buffers'."""
    c, o = kernel.shape[1:]
    tiles_y = (padded.shape[1] - 2) // 2
    rows, v = space[0][:, :, :tiles_y], space[1][:, :, :, :tiles_y]
    n, tw = v.shape[2], v.shape[4]
    _pairs(padded, 1, rows)
    for i in range(4):
        _pairs(rows[i], 2, v[i])
    m = numpy.matmul(v.reshape(16, -1, c), kernel).reshape(4, 4, -1, o)
    # A^T has +1 at row i, column 1 for both rows i: the bias added at tile
    # position (1, 1) reaches all four outputs once.
    m[1, 1] += b
    # A^T along the rows of each tile, then along its columns.
    s = numpy.empty((2, 4) + m.shape[2:], m.dtype)
    numpy.add(m[0], m[1], out=s[0])
    s[0] += m[2]
    numpy.subtract(m[1], m[2], out=s[1])
    s[1] -= m[3]
    for dy in range(2):
        for dx in range(2):
            target = image[:, dy::2, dx::2]
            ty, tx = target.shape[1:3]
            t = s[dy].reshape(4, n, tiles_y, tw, o)[:, :, :ty, :tx]
            if dx == 0:
                numpy.add(t[0], t[1], out=target)
                target += t[2]
            else:
                numpy.subtract(t[1], t[2], out=target)
                target -= t[3]
            numpy.maximum(target, 0, out=target)


def _winograd4_buffers(n, tile_rows, tw, c, dtype):
    """F(4x4)'s work space for blocks of up to tile_rows rows of tw tiles:
    the input transformed along the rows, then along the columns (v), and
    a scratch for each step."""
    width = 4 * tw + 2
    return (numpy.empty((6, n, tile_rows, width, c), dtype),
            numpy.empty((6, 6, n, tile_rows, tw, c), dtype),
            numpy.empty((n, tile_rows, width, c), dtype),
            numpy.empty((n, tile_rows, tw, c), dtype))


def _winograd4_block(padded, space, kernel, b, image):
    """F(4x4) on the tiles of one block of rows, as _winograd_block:
    padded (N, 4*rows + 2, 4*tiles + 2, C), space _winograd4_buffers'."""
    c, o = kernel.shape[1:]
    tiles_y = (padded.shape[1] - 2) // 4
    rows, v = space[0][:, :, :tiles_y], space[1][:, :, :, :tiles_y]
    row_scratch, scratch = space[2][:, :tiles_y], space[3][:, :tiles_y]
    n, tw = v.shape[2], v.shape[4]
    _sixes([_taps(padded, 1, tiles_y, 4, i) for i in range(6)], rows,
           row_scratch)
    for j in range(6):
        _sixes([_taps(rows[j], 2, tw, 4, i) for i in range(6)], v[j],
               scratch)
    m = numpy.matmul(v.reshape(36, -1, c), kernel)
    # Column 1 of A^T is all ones: the bias added at tile position (1, 1)
    # reaches all sixteen outputs once.
    m[7] += b
    # A^T m A of every tile and channel as one GEMM by A^T (x) A^T, the
    # outputs at (dy, dx) of their tiles: a third faster than the sums
    # as passes over m, which leave the cache between passes.
    y = WINOGRAD_F4_AT2 @ m.reshape(36, -1)
    height, width = image.shape[1:3]
    full = height == 4 * tiles_y and width == 4 * tw
    target = image if full else numpy.empty(
        (n, 4 * tiles_y, 4 * tw, o), image.dtype)
    tiles = y.reshape(4, 4, n, tiles_y, tw, o).transpose(2, 3, 0, 4, 1, 5)
    numpy.maximum(tiles, 0, out=target.reshape(n, tiles_y, 4, tw, 4, o))
    if not full:
        image[...] = target[:, :height, :width]


def pooled_size(size, k, s, pad):
    """The output size of a pooling along one axis, rounded up.

    Args:
        size: the input's size along the axis.
        k: the window.
        s: the stride.
        pad: the padding on each side.

    Returns:
        The number of windows, the last one allowed to reach past the
        padded edge.
    """
    # Chainer's cover_all=True, which is Caffe's ceil mode for these shapes.
    return (size + 2 * pad - k + s - 1) // s + 1


def max_pool(x, k, s, pad=0):
    """Max pooling of NHWC x, rounding the output size up like Caffe.

    Separable (along rows, then columns) and without a padded copy: a window
    reaching past an edge takes the maximum of what lies inside, as Caffe
    and Chainer's -inf padding do.

    Args:
        x: numpy array, N x H x W x C.
        k: the square window's side.
        s: the stride.
        pad: the padding on each side.

    Returns:
        N x Ho x Wo x C of x's dtype, Ho and Wo of pooled_size.
    """
    n, h, w, c = x.shape
    rows = _max_along(x, 2, k, s, pad, pooled_size(w, k, s, pad))
    return _max_along(rows, 1, k, s, pad, pooled_size(h, k, s, pad))


def _max_along(x, axis, k, s, pad, size_out):
    """Window maxima along one axis: out[j] = max x[j*s - pad + d], d < k,
    over the indices inside the array."""
    size = x.shape[axis]

    def along(start, stop, step=1):
        index = [slice(None)] * x.ndim
        index[axis] = slice(start, stop, step)
        return tuple(index)

    # Each offset's inputs and the range of outputs they reach.
    shape = list(x.shape)
    shape[axis] = size_out
    out = numpy.empty(shape, x.dtype)
    parts = []
    for d in range(k):
        first = max(0, -((d - pad) // s))  # j with j*s - pad + d >= 0
        last = min(size_out, (size - 1 - d + pad) // s + 1)
        if last > first:
            parts.append((x[along(first * s - pad + d,
                                  (last - 1) * s - pad + d + 1, s)],
                          first, last))
    # Widest first: the first two start the output with one maximum (and
    # a copy at the edges the second misses), not a copy and a maximum.
    parts.sort(key=lambda part: part[1] - part[2])
    if not parts or parts[0][2] - parts[0][1] < size_out:
        out.fill(-numpy.inf)
    elif len(parts) == 1:
        numpy.copyto(out, parts.pop(0)[0])
    else:
        (whole, _, _), (source, first, last) = parts.pop(0), parts.pop(0)
        numpy.maximum(whole[along(first, last)], source,
                      out=out[along(first, last)])
        for edge in (along(0, first), along(last, size_out)):
            numpy.copyto(out[edge], whole[edge])
    for source, first, last in parts:
        target = out[along(first, last)]
        numpy.maximum(target, source, out=target)
    return out


def lrn(x, n=5, k=1.0, alpha=1e-4 / 5, beta=0.75):
    """Local response normalisation across the channels of NHWC x:
    x / (k + alpha * sum of squares over n channels) ** beta.

    Each pixel's squares sit between n // 2 zeros on either side, so the
    window sums are shifted adds over one contiguous buffer; the work runs
    over blocks of pixels small enough to stay in the L2 cache.

    Args:
        x: numpy array, N x H x W x C.
        n: the window, in channels (5 in GoogLeNet).
        k: the constant added to the scaled sum.
        alpha: the sum's scale, as Chainer takes it: Caffe's alpha divided
            by n.
        beta: the exponent; 0.75 takes a faster path than the others.

    Returns:
        An array of x's shape and dtype.
    """
    c = x.shape[-1]
    half = n // 2
    width = c + 2 * half
    flat = x.reshape(-1, c)
    out = numpy.empty_like(flat)
    step = max(1, _L2_FLOATS // width)
    squares = numpy.zeros((step, width), x.dtype)
    scale = numpy.empty(step * width, x.dtype)
    for begin in range(0, len(flat), step):
        block = flat[begin:begin + step]
        rows = len(block)
        numpy.multiply(block, block, out=squares[:rows, half:half + c])
        padded = squares[:rows].reshape(-1)
        total = scale[:rows * width - 2 * half]
        # total[j] sums padded[j .. j + n): the window of the channel at
        # padded index j + half.
        numpy.add(padded[:len(total)], padded[1:len(total) + 1], out=total)
        for shift in range(2, n):
            total += padded[shift:shift + len(total)]
        total *= alpha
        total += k
        if beta == 0.75:
            # s ** 0.75 = sqrt(s) * sqrt(sqrt(s)), far cheaper than power.
            numpy.sqrt(total, out=total)
            total *= numpy.sqrt(total)
        else:
            numpy.power(total, beta, out=total)
        windows = scale[:rows * width].reshape(rows, width)[:, :c]
        numpy.divide(block, windows, out=out[begin:begin + step])
    return out.reshape(x.shape)


def inception(module, x, kernels=None):
    """An Inception module on NHWC x, as tuned_googlenet.Inception runs it.

    One GEMM for the three 1x1 convolutions that read x; each branch is
    written into its slice of one output.

    Args:
        module: a tuned_googlenet.Inception.
        x: float32 numpy array, N x H x W x C.
        kernels: None, or conv_relu's cache of rearranged weights.

    Returns:
        N x H x W x (out1 + out3 + out5 + proj_pool): the branches
        concatenated in Inception.forward's order.
    """
    n, h, w, c = x.shape
    first = (module.conv1, module.proj3, module.proj5)
    widths = [link.W.shape[0] for link in first]
    kernel, bias = _kernel(module, module.conv1.W.array, lambda: (
        numpy.concatenate([link.W.array.reshape(-1, c) for link in first]).T,
        numpy.concatenate([link.b.array for link in first])), kernels)
    reduced = _bias_relu(x.reshape(-1, c) @ kernel, bias)
    out1, out3, out5, outp = (module.conv1.W.shape[0],
                              module.conv3.W.shape[0],
                              module.conv5.W.shape[0],
                              module.projp.W.shape[0])
    y = numpy.empty((n * h * w, out1 + out3 + out5 + outp), x.dtype)
    y[:, :out1] = reduced[:, :out1]
    a, b = widths[0], widths[0] + widths[1]
    proj3 = reduced[:, a:b].reshape(n, h, w, -1)
    proj5 = reduced[:, b:].reshape(n, h, w, -1)
    conv_relu(module.conv3, proj3, y[:, out1:out1 + out3], kernels)
    conv_relu(module.conv5, proj5, y[:, out1 + out3:out1 + out3 + out5],
              kernels)
    conv_relu(module.projp, max_pool(x, 3, 1, 1),
              y[:, out1 + out3 + out5:], kernels)
    return y.reshape(n, h, w, -1)


def average_pool(x, k, s):
    """Average pooling of NHWC x without padding (both heads' pools).

    Args:
        x: numpy array, N x H x W x C.
        k: the square window's side.
        s: the stride.

    Returns:
        float32 N x Ho x Wo x C, the windows that fit inside x.
    """
    n, h, w, c = x.shape
    ho, wo = (h - k) // s + 1, (w - k) // s + 1
    sn, sh, sw, sc = x.strides
    windows = as_strided(x, (n, ho, wo, k, k, c),
                         (sn, sh * s, sw * s, sh, sw, sc))
    return windows.mean(axis=(3, 4), dtype=numpy.float32)


class TrunkOps:
    """GoogLeNet's trunk operations on NHWC numpy arrays, without backprop.

    The same operations as tuned_googlenet.StandardOps'. The kernels are
    used only while ``reuse_kernels`` is True, as the caller sets it for
    frozen stages, whose weights no update touches.

    Args:
        kernels: a dict that keeps the weights rearranged for GEMM between
            calls (the model's own).
    """

    def __init__(self, kernels):
        self.kernels = kernels
        self.reuse_kernels = False

    def _cache(self):
        return self.kernels if self.reuse_kernels else None

    def conv_relu(self, link, x):
        return conv_relu(link, x, kernels=self._cache())

    @staticmethod
    def max_pool(x):
        return max_pool(x, 3, 2)

    @staticmethod
    def lrn(x):
        return lrn(x, n=5, k=1.0, alpha=1e-4 / 5, beta=0.75)

    def inception(self, module, x):
        return inception(module, x, kernels=self._cache())


def run_stages(stage, x, names, first, stop, plan):
    """Stages names[first:stop] of x on the fast path, spread over the cores.

    The batch runs as groups of images, one group at a time on each worker
    (spread_over_cores), each group through every stage in chunks of images
    sized per stage (``plan['chunks']``); each chunk's output is copied
    into one array as soon as it is made.

    Args:
        stage: stage(name, h, ops) runs one stage on NHWC h with TrunkOps
            ops and returns its output.
        x: float32 numpy N x C x H x W, the input of names[first].
        names: every stage, in order (tuned_googlenet.TRUNK).
        first, stop: the stages [first, stop) run.
        plan: {'chunks': ((stage name, images per chunk), ...), the chunk
            size from each named stage on, the first named first;
            'taps': {stage name: (k, s)}, the average pools of stage
            outputs to keep; 'reuse': the stages before this index keep
            their GEMM kernels between calls (the frozen ones);
            'kernels': the dict that keeps them (the model's)}.

    Returns:
        (float32 N x C x H x W, the output of names[stop - 1], or None
        when stop is the last stage, whose taps are all that is read;
        {tap: its N x C x H x W pool} of the taps passed), numpy arrays.
    """
    starts = [names.index(name) for name, _ in plan['chunks']] + [stop]
    largest = max(chunk for _, chunk in plan['chunks'])
    # Groups no larger than the largest chunk, and enough of them to give
    # every worker one where the batch allows.
    size = min(largest, -(-len(x) // worker_count()))
    output = stop < len(names)

    def group(begin):
        # Its own TrunkOps: reuse_kernels changes from stage to stage.
        ops, taps = TrunkOps(plan['kernels']), {}
        h = to_nhwc(x[begin:begin + size])
        for (_, chunk), low, high in zip(plan['chunks'], starts,
                                         starts[1:]):
            low, high = max(low, first), min(high, stop)
            if low < high:
                h = _chunked(stage, h, chunk, ops, names, (low, high),
                             plan, taps)
        return (h if output else None), taps
    results = spread_over_cores(group, range(0, len(x), size))

    def joined(parts):
        return to_nchw(numpy.concatenate(parts) if len(parts) > 1
                       else parts[0])
    pooled = {name: joined([part for _, taps in results
                            for part in taps[name]])
              for name in results[0][1]}
    return (joined([h for h, _ in results]) if output else None), pooled


def _chunked(stage, h, chunk, ops, names, stages, plan, taps):
    """Stages names[stages[0]:stages[1]] on NHWC h, ``chunk`` images at a
    time (run_stages' plan); appends the pools of the taps passed to
    taps[name]."""
    out = None
    for i in range(0, len(h), chunk):
        part = h[i:i + chunk]
        for k in range(*stages):
            ops.reuse_kernels = k < plan['reuse']
            part = stage(names[k], part, ops)
            if names[k] in plan['taps']:
                taps.setdefault(names[k], []).append(
                    average_pool(part, *plan['taps'][names[k]]))
        if len(part) == len(h):
            return part
        if out is None:
            out = numpy.empty((len(h),) + part.shape[1:], part.dtype)
        out[i:i + len(part)] = part
    return out
