"""losses: the cross entropy with label smoothing, against its definition."""
import numpy
import pytest

from googlenet_chainer.compat import chainer
import chainer.functions as F
from googlenet_chainer.losses import cross_entropy

from numeric import U, rtol_for


def reference(y, t, eps, weight):
    """PyTorch's CrossEntropyLoss(weight=, label_smoothing=eps) but
    normalised as Chainer's softmax_cross_entropy: by the examples, not by
    their weights; in float64."""
    y = y.astype(numpy.float64)
    log_p = y - y.max(axis=1, keepdims=True)
    log_p -= numpy.log(numpy.exp(log_p).sum(axis=1, keepdims=True))
    target = numpy.full(y.shape, eps / y.shape[1])
    target[numpy.arange(len(t)), t] += 1 - eps
    return (-(target * log_p).sum(axis=1) * weight[t]).mean()


@pytest.mark.parametrize('eps', [0.0, 0.1, 0.5])
@pytest.mark.parametrize('weighted', [False, True])
def test_smoothed_cross_entropy_is_its_definition(rng, eps, weighted):
    y = (rng.randn(6, 5) * 4).astype(numpy.float32)
    t = numpy.array([0, 4, 3, 2, 2, 1], numpy.int32)
    weight = (rng.rand(5) + 0.5).astype(numpy.float32) if weighted \
        else None
    loss = cross_entropy(y, t, eps, weight)
    expected = reference(y, t, eps, weight if weighted else numpy.ones(5))
    # A sum over 5 classes and 6 examples of float32 terms.
    assert float(loss.array) == pytest.approx(expected, rel=rtol_for(30))
    if not eps:  # Chainer's own function, untouched
        assert float(loss.array) == float(F.softmax_cross_entropy(
            y, t, class_weight=weight).array)


def test_smoothing_pulls_the_gradient_towards_uniform(rng):
    y = chainer.Variable((rng.randn(4, 3) * 4).astype(numpy.float32))
    t = numpy.array([0, 1, 2, 1], numpy.int32)
    cross_entropy(y, t, 0.3).backward()
    p = F.softmax(y).array
    target = numpy.full((4, 3), 0.1)
    target[numpy.arange(4), t] += 0.7
    expected = (p - target) / 4
    # A softmax over 3 classes in float32, each value within a few u.
    numpy.testing.assert_allclose(y.grad, expected, rtol=rtol_for(3),
                                  atol=U)
