"""Inference-only numpy paths for GoogLeNet's trunk, where no gradient is needed.

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
import os
import threading

import numpy
from numpy.lib.stride_tricks import as_strided

_state = {'on': os.environ.get('GOOGLENET_FAST', '1') != '0'}
# Floats in a working set that fits a core's L2 cache with room to spare.
_L2_FLOATS = 32 * 1024


def is_enabled():
    return _state['on']


@contextlib.contextmanager
def enabled(flag):
    """Turns the fast paths on or off inside the block."""
    previous = _state['on']
    _state['on'] = flag
    try:
        yield
    finally:
        _state['on'] = previous


class _OpenBLAS:
    """The thread count of the OpenBLAS that numpy loaded, found by its
    file in /proc/self/maps and its exported setter (suffixed 64_ in
    numpy's ILP64 wheels); ``found`` is False on any other BLAS or
    system, where nothing here changes it."""

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
            for suffix in ('64_', '_64_', ''):
                get = getattr(lib, 'openblas_get_num_threads' + suffix, None)
                set_ = getattr(lib, 'openblas_set_num_threads' + suffix, None)
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
    """How many threads spread_over_cores runs: OpenBLAS's own thread count
    (the cores it may use, OPENBLAS_NUM_THREADS if set), or 1 where that
    cannot be read or set."""
    if 'lib' not in _blas:
        _blas['lib'] = _OpenBLAS()
    lib = _blas['lib']
    return max(1, lib.get()) if lib.found else 1


def spread_over_cores(function, items):
    """[function(item) for item in items], the items shared out in turn
    among worker_count() threads (the calling one included), each with a
    one-thread OpenBLAS for the duration.

    On a 2-core machine a small GEMM split over two BLAS threads waits on
    both, and everything between the GEMMs (copies, transforms, pooling,
    LRN, bias and ReLU) runs on one core; whole images on each core keep
    both busy with neither waiting. numpy releases the GIL in its array
    loops and BLAS calls. One caller at a time spreads (the thread count
    is process-wide); another, or a single item, runs in the calling
    thread as it is.
    """
    items = list(items)
    workers = min(worker_count(), len(items))
    if workers < 2 or not _spread['lock'].acquire(blocking=False):
        return [function(item) for item in items]
    lib = _blas['lib']
    threads = lib.get()
    try:
        if _spread['size'] < workers - 1:
            _spread['pool'] = concurrent.futures.ThreadPoolExecutor(
                workers - 1, thread_name_prefix='fast_ops')
            _spread['size'] = workers - 1
        lib.set(1)

        def share(k):
            return [function(item) for item in items[k::workers]]
        futures = [_spread['pool'].submit(share, k)
                   for k in range(1, workers)]
        shares = [share(0)]
        for future in futures:
            # Polled, so that Ctrl-C reaches a main thread that waits.
            while True:
                try:
                    shares.append(future.result(timeout=0.1))
                    break
                except concurrent.futures.TimeoutError:
                    pass
    finally:
        lib.set(threads)
        _spread['lock'].release()
    results = [None] * len(items)
    for k, part in enumerate(shares):
        results[k::workers] = part
    return results


def applies(x):
    """Whether x (an array or Variable) can take the fast path."""
    array = getattr(x, 'array', x)
    return _state['on'] and isinstance(array, numpy.ndarray) and (
        array.dtype == numpy.float32)


def to_nhwc(x):
    return numpy.ascontiguousarray(x.transpose(0, 2, 3, 1))


def to_nchw(x):
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

    ``out``, when given, is a (N*Ho*Wo, O) view to write into (a slice of
    a concatenated output).
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


# Winograd F(2x2, 3x3) (Lavin and Gray, "Fast Algorithms for Convolutional
# Neural Networks", CVPR 2016): a 2x2 output tile of a 3x3 convolution is
# A^T [(G g G^T) * (B^T d B)] A for the 4x4 input tile d around it, 16
# multiplications per channel instead of 36. B^T and A^T hold only 0 and +-1,
# so the input and output transforms are additions.
# Floats of GEMM products per block of tiles (4 MB).
WINOGRAD_BLOCK_FLOATS = 1 << 20
WINOGRAD_G = numpy.array([[1, 0, 0], [.5, .5, .5], [.5, -.5, .5], [0, 0, 1]])


def winograd_kernel(W):
    """(O, C, 3, 3) filters -> (16, C, O): G g G^T at each of the 16 tile
    positions, as the right-hand sides of 16 GEMMs. Transformed in float64
    and rounded once."""
    o, c = W.shape[:2]
    g = WINOGRAD_G
    out = numpy.empty((4, 4, c, o), W.dtype)
    # In blocks of output channels whose float64 temporaries (512 KB) are
    # reused from the heap: whole-layer ones are fresh pages each time, and
    # their page faults were most of a fresh process's first forward pass.
    # Two tensordots (BLAS), not a three-operand einsum (0.27 s in C
    # loops); either way the same float64 sums of three, so the same
    # rounded kernels.
    step = max(1, (1 << 16) // (16 * c))
    for first in range(0, o, step):
        w = W[first:first + step].astype(numpy.float64)
        u = numpy.tensordot(numpy.tensordot(g, w, axes=(1, 2)), g,
                            axes=(3, 1))
        # (i, o, c, j) -> (i, j, c, o)
        out[:, :, :, first:first + step] = u.transpose(0, 3, 2, 1)
    return out.reshape(16, c, o)


def _pairs(a, axis, out):
    """B^T along one axis of 4-tap windows at stride 2: out[0..3] =
    (d0 - d2, d1 + d2, d2 - d1, d1 - d3) for d_i = a[i::2] (tiles)."""
    tiles = out.shape[axis + 1]

    def d(i):
        index = [slice(None)] * a.ndim
        index[axis] = slice(i, i + 2 * tiles, 2)
        return a[tuple(index)]
    numpy.subtract(d(0), d(2), out=out[0])
    numpy.add(d(1), d(2), out=out[1])
    numpy.subtract(d(2), d(1), out=out[2])
    numpy.subtract(d(1), d(3), out=out[3])


def winograd_conv_relu(link, x, out=None, kernels=None):
    """ReLU of a 3x3, stride 1, pad 1 convolution of NHWC x by Winograd
    F(2x2, 3x3): 16 GEMMs of (N*ceil(H/2)*ceil(W/2), C) by (C, O).

    Same shapes and ``out`` as conv_relu. Its rounding: each transformed
    value sums up to 4 inputs (or 9 weights/4), so the error bound grows by
    (8/3)**2 over the direct sum (tests/numeric.py, WINOGRAD_F2_GROWTH).
    """
    W, b = link.W.array, link.b.array
    o, c = W.shape[:2]
    n, h, w, _ = x.shape
    th, tw = (h + 1) // 2, (w + 1) // 2
    kernel = _kernel(link, W, lambda: winograd_kernel(W), kernels)
    padded = numpy.zeros((n, 2 * th + 2, 2 * tw + 2, c), x.dtype)
    padded[:, 1:h + 1, 1:w + 1] = x
    if out is None:
        out = numpy.empty((n * h * w, o), x.dtype)
    image = out.reshape(n, h, w, o)
    # Rows of tiles in blocks whose 16 GEMM products stay in the cache
    # between the GEMMs and the output transform.
    step = max(1, WINOGRAD_BLOCK_FLOATS // (16 * o * n * tw))
    rows = numpy.empty((4, n, min(step, th), 2 * tw + 2, c), x.dtype)
    v = numpy.empty((4, 4, n, min(step, th), tw, c), x.dtype)
    for first in range(0, th, step):
        block = min(step, th - first)
        _winograd_block(padded[:, 2 * first:2 * (first + block) + 2],
                        rows[:, :, :block], v[:, :, :, :block], kernel, b,
                        image[:, 2 * first:2 * (first + block)])
    return image


def _winograd_block(padded, rows, v, kernel, b, image):
    """Tiles of one block of rows: input transform, GEMMs, output
    transform, ReLU, into image (the block's output rows)."""
    c, o = kernel.shape[1:]
    n, tiles_y, tw = v.shape[2:5]
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


def pooled_size(size, k, s, pad):
    # Chainer's cover_all=True, which is Caffe's ceil mode for these shapes.
    return (size + 2 * pad - k + s - 1) // s + 1


def max_pool(x, k, s, pad=0):
    """Max pooling of NHWC x, rounding the output size up like Caffe.

    Separable (along rows, then columns) and without a padded copy: a window
    reaching past an edge takes the maximum of what lies inside, as Caffe
    and Chainer's -inf padding do.
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
    """An Inception module on NHWC x: one GEMM for the three 1x1
    convolutions that read x, the branches written into one output."""
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
    """Average pooling of NHWC x without padding (both heads' pools)."""
    n, h, w, c = x.shape
    ho, wo = (h - k) // s + 1, (w - k) // s + 1
    sn, sh, sw, sc = x.strides
    windows = as_strided(x, (n, ho, wo, k, k, c),
                         (sn, sh * s, sw * s, sh, sw, sc))
    return windows.mean(axis=(3, 4), dtype=numpy.float32)
