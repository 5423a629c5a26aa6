"""How close two float32 computations of GoogLeNet must be: the suite's one home.

Two float32 forward passes that do the same arithmetic in another order (a
different OpenBLAS kernel, thread count or blocking, NHWC against NCHW, the
fast path against Chainer's functions) differ only by rounding. The
tolerances below are derived from that rounding, not measured on one host:

* A sum of n float32 products carries a relative rounding error of about
  sqrt(n) * u (u = 2**-24), and exceeds LAMBDA * sqrt(n) * u only with
  probability at most 2 * exp(-LAMBDA**2 / 2) (Higham and Mary, "A new
  approach to probabilistic rounding error analysis", SISC 2019). Two
  orderings differ by at most twice that.
* Through the network the errors of successive layers are independent and add
  in quadrature, so what matters is the number of products summed along the
  longest path, PATH_TERMS (conv1, conv2, then each Inception module's
  3x3_reduce and 3x3, then loss3/classifier): 17,411.
* A logit is a sum of terms about as large as the largest logit, so logits
  are compared relative to their vector's largest magnitude.
* Softmax: d(log p_i) = dz_i - sum_j p_j dz_j, so a probability moves by at
  most 2 * max|dz| relative to itself. The logits of the suite's synthetic
  network reach about 25 (BVLC's about 20-30); LOGIT_BOUND covers both.

Measured for scale (AMD EPYC, 2026-11-29): float32 against a float64 forward
differs by 5e-7 of max|z| and 1.4e-5 relative on probabilities, far inside
these bounds; a real mistake (a shifted channel, a missing ReLU, alpha not
divided by the window) moves outputs by percents.

Where the claim is that nothing was recomputed (copied weights, V1 against V2,
a frozen trunk after training), tests use numpy.array_equal, not these.
"""
import math

import numpy

import tuned_googlenet

U = 2.0 ** -24
LAMBDA = 4.0


def _path_terms():
    terms = 3 * 7 * 7 + 64 + 64 * 3 * 3  # conv1, conv2/3x3_reduce, conv2/3x3
    for c_in, _, proj3, _, _, _, _ in tuned_googlenet.INCEPTION.values():
        terms += c_in + proj3 * 3 * 3
    return terms + 1024  # loss3/classifier


PATH_TERMS = _path_terms()


def rtol_for(terms):
    """Relative difference of two float32 orderings of ``terms`` products."""
    return 2 * LAMBDA * math.sqrt(terms) * U


LOGIT_RTOL = rtol_for(PATH_TERMS)  # about 6.3e-5
LOGIT_BOUND = 32.0
PROB_RTOL = 2 * LOGIT_RTOL * LOGIT_BOUND  # about 4e-3
# A probability in [0, 1] rounds to within u absolutely; tiny ones flush.
PROB_ATOL = U


def _winograd_growth(at, g, bt):
    """How much larger than the direct sum's the rounding of a Winograd
    F(m, r) convolution can be, in 2-D: the products it sums are
    (B^T d)_j (G g)_j, each up to sum_k |B^T_jk| |d| times sum_l |G_jl| |g|,
    and an output adds them with weights |A^T_ij|; the direct sum has r
    terms of |d| |g| per axis (Barabasz et al., "Error analysis and
    improving the accuracy of Winograd convolution for deep neural
    networks", ACM TOMS 2020, bound the error by these norms)."""
    at, g, bt = (numpy.abs(numpy.array(a, float)) for a in (at, g, bt))
    per_axis = max(at @ (g.sum(axis=1) * bt.sum(axis=1))) / g.shape[1]
    return per_axis ** 2


# F(2x2, 3x3) as fast_ops.winograd_conv_relu runs it (Lavin and Gray 2016):
# (8/3)**2, about 7.1.
WINOGRAD_F2_GROWTH = _winograd_growth(
    at=[[1, 1, 1, 0], [0, 1, -1, -1]],
    g=[[1, 0, 0], [.5, .5, .5], [.5, -.5, .5], [0, 0, 1]],
    bt=[[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]])

# F(4x4, 3x3) with the points 0, 1, -1, 2, -2 and infinity (Lavin and Gray
# 2016), as fast_ops.winograd_conv_relu runs it where winograd_f4_pays:
# 16**2 = 256, the last output row summing 8 times the products at +-2.
WINOGRAD_F4_GROWTH = _winograd_growth(
    at=[[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0],
        [0, 1, -1, 8, -8, 1]],
    g=[[1 / 4, 0, 0], [-1 / 6, -1 / 6, -1 / 6], [-1 / 6, 1 / 6, -1 / 6],
       [1 / 24, 1 / 12, 1 / 6], [1 / 24, -1 / 12, 1 / 6], [0, 0, 1]],
    bt=[[4, 0, -5, 0, 1, 0], [0, -4, -4, 1, 1, 0], [0, 4, -4, -1, 1, 0],
        [0, -2, -1, 2, 1, 0], [0, 2, -1, -2, 1, 0], [0, 4, 0, -5, 0, 1]])

# Issue 13's acceptance bound for the fast path against the standard one on
# photos and random inputs: a probability may move by 2e-4 of itself, far
# tighter than the worst case PROB_RTOL (the errors do not all line up);
# measured 5e-6 (the photo) and 1.5e-5 (random inputs) here (AMD EPYC,
# 2026-11-29), so it still catches a transform that loses a few bits, not
# only a wrong one.
FAST_PROB_RTOL = 2e-4


def assert_close(actual, expected, terms=PATH_TERMS, growth=1.0):
    """Activations or logits that sum ``terms`` products along their path:
    relative to the largest magnitude of ``expected``. ``growth`` widens the
    bound for an algorithm whose rounding grows (WINOGRAD_F2_GROWTH,
    WINOGRAD_F4_GROWTH)."""
    actual, expected = numpy.asarray(actual), numpy.asarray(expected)
    assert actual.shape == expected.shape
    rtol = rtol_for(terms) * growth
    scale = float(numpy.abs(expected).max()) if expected.size else 0.0
    numpy.testing.assert_allclose(actual, expected, rtol=rtol,
                                  atol=rtol * scale)


def assert_probabilities_close(actual, expected, rtol=PROB_RTOL):
    """Class probabilities of two float32 passes of the whole network."""
    numpy.testing.assert_allclose(actual, expected, rtol=rtol,
                                  atol=PROB_ATOL)
