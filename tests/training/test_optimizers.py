"""training.optimizers and extensions.LearningRate: each optimizer and
schedule against Chainer's own, set up by hand as the docs say they are, for
a few iterations (AdamW also against PyTorch's definition)."""
import math

import numpy
import pytest
from chainer.testing.training import get_trainer_with_mock_updater

from googlenet_chainer.compat import chainer
import chainer.functions as F
import chainer.links as L
from googlenet_chainer.training import optimizers
from googlenet_chainer.training.extensions import LearningRate
from chainer.training import extensions

from numeric import rtol_for

LR, MOMENTUM, DECAY = 0.05, 0.8, 0.01


class Tiny(chainer.Chain):
    """A linear classifier that make_optimizer can freeze (nothing)."""

    def __init__(self):
        super().__init__()
        with self.init_scope():
            self.fc = L.Linear(4, 3, initialW=numpy.random.RandomState(
                0).randn(3, 4).astype(numpy.float32))

    def freeze_trunk(self):
        pass


def _batch():
    rng = numpy.random.RandomState(1)
    return rng.randn(8, 4).astype(numpy.float32), rng.randint(
        0, 3, 8).astype(numpy.int32)


def trained(optimizer, model, attr, values):
    """model.fc's weights after one update at each of attr's values."""
    x, t = _batch()
    for value in values:
        setattr(optimizer, attr, value)
        optimizer.update(lambda: F.softmax_cross_entropy(model.fc(x), t))
    return model.fc.W.array.copy()


def chainers_own(name):
    """Chainer's optimizer as make_optimizer's docstring says it is."""
    model = Tiny()
    optimizer = {
        'momentum': lambda: chainer.optimizers.MomentumSGD(LR, MOMENTUM),
        'adam': lambda: chainer.optimizers.Adam(alpha=LR),
        'adamw': lambda: chainer.optimizers.AdamW(
            alpha=LR, weight_decay_rate=LR * DECAY),
        'rmsprop': lambda: chainer.optimizers.RMSprop(lr=LR)}[name]()
    optimizer.setup(model)
    if name == 'adamw':
        model.fc.b.update_rule.hyperparam.weight_decay_rate = 0
    else:
        model.fc.W.update_rule.add_hook(
            chainer.optimizer_hooks.WeightDecay(DECAY))
    return optimizer, model


@pytest.mark.parametrize('name', list(optimizers.OPTIMIZERS))
def test_each_optimizer_is_chainers_own_under_the_schedule(name):
    schedule = optimizers.Schedule('cosine', 6, warmup=2)
    multipliers = [schedule(k, 0) for k in range(6)]
    ours = Tiny()
    optimizer = optimizers.make_optimizer(ours, name, LR, MOMENTUM, DECAY)
    attr, base = optimizers.schedule_attr(name, LR)
    got = trained(optimizer, ours, attr, [base * m for m in multipliers])
    theirs, model = chainers_own(name)
    expected = trained(theirs, model, 'eta' if 'adam' in name else 'lr', [
        m if 'adam' in name else LR * m for m in multipliers])
    assert numpy.array_equal(got, expected)
    assert optimizers.learning_rate(optimizer) == pytest.approx(
        LR * multipliers[-1])
    assert not numpy.array_equal(got, Tiny().fc.W.array)


def test_adamw_is_pytorchs():
    """Decoupled weight decay as PyTorch's AdamW defines it: w -= lr * wd *
    w, then Adam's step at lr; lr scheduled. Epsilon where Chainer adds it,
    to sqrt(v) (PyTorch adds it to sqrt(v / (1 - beta2 ** t)): the steps
    of small gradients then differ by a few 1e-5 of themselves)."""
    rates = [LR * m for m in (0.5, 1.0, 0.9, 0.4)]
    model = Tiny()
    optimizer = optimizers.make_optimizer(model, 'adamw', LR, MOMENTUM,
                                          DECAY)
    got = trained(optimizer, model, 'eta', [r / LR for r in rates])
    x, t = _batch()
    w = Tiny().fc.W.array.astype(numpy.float64)
    b = numpy.zeros(3)
    m = v = mb = vb = 0
    for step, lr in enumerate(rates, 1):
        z = x @ w.T + b
        p = numpy.exp(z - z.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        p[numpy.arange(8), t] -= 1
        g, gb = p.T @ x / 8, p.sum(axis=0) / 8
        w = w * (1 - lr * DECAY)  # the bias is not decayed
        m, v = 0.9 * m + 0.1 * g, 0.999 * v + 0.001 * g * g
        mb, vb = 0.9 * mb + 0.1 * gb, 0.999 * vb + 0.001 * gb * gb
        fix1, fix2 = 1 - 0.9 ** step, 1 - 0.999 ** step
        alpha = lr * math.sqrt(fix2) / fix1
        w = w - alpha * m / (numpy.sqrt(v) + 1e-8)
        b = b - alpha * mb / (numpy.sqrt(vb) + 1e-8)
    # Four float32 updates of a few operations each.
    numpy.testing.assert_allclose(got, w, rtol=rtol_for(16))


@pytest.mark.parametrize('name', list(optimizers.OPTIMIZERS))
def test_weights_decay_and_biases_do_not(name):
    # No gradient: what changes is the decay's alone (for Adam, its L2
    # term's step; for AdamW, w -= lr * decay * w).
    model = Tiny()
    model.fc.b.array[:] = 1.0
    optimizer = optimizers.make_optimizer(model, name, LR, MOMENTUM, DECAY)
    w = model.fc.W.array.copy()
    optimizer.update(lambda: F.sum(model.fc.W * 0) + F.sum(model.fc.b * 0))
    assert numpy.array_equal(model.fc.b.array, numpy.ones(3, numpy.float32))
    assert ((model.fc.W.array - w) * w < 0).all()  # towards 0


def rates_used(extension, trigger, iterations=12, per_epoch=4):
    """The rate each update of a stub run uses, the extension shifting
    it."""
    trainer = get_trainer_with_mock_updater((iterations, 'iteration'),
                                            per_epoch)
    optimizer = trainer.updater.get_optimizer('main')
    optimizer.lr = 0.1
    used = []
    trainer.updater.update_core = lambda: used.append(optimizer.lr)
    trainer.extend(extension, trigger=trigger)
    trainer.run()
    return used


def ours(policy, warmup=0, **settings):
    return rates_used(LearningRate(optimizers.Schedule(
        policy, 12, warmup, **settings), 'lr', 0.1), (1, 'iteration'))


def test_each_schedule_is_chainers_own():
    assert ours('step', gamma=0.5, step=1) == pytest.approx(rates_used(
        extensions.StepShift('lr', 0.5, 1), (1, 'epoch')), rel=1e-15)
    assert ours('step', gamma=0.5, step=1)[4:8] == pytest.approx([0.05] * 4)
    assert ours('poly', power=0.5) == pytest.approx(rates_used(
        extensions.PolynomialShift('lr', 0.5, 12), (1, 'iteration')),
        rel=1e-15)
    assert ours('fixed') == [0.1] * 12
    # WarmupShift from 0.1 / W to 0.1 in W - 1 calls: update k <= W at
    # k / W of the rate.
    warm = ours('fixed', warmup=4)
    assert warm == pytest.approx(rates_used(
        extensions.WarmupShift('lr', 0.1 / 4, 3, 0.1), (1, 'iteration')),
        rel=1e-15)
    assert warm[:5] == pytest.approx([0.025, 0.05, 0.075, 0.1, 0.1])
    # Chainer 7 has no cosine: its definition, and with a warm-up the
    # product.
    cosine = [0.1 * (1 + math.cos(math.pi * k / 12)) / 2 for k in range(12)]
    assert ours('cosine') == pytest.approx(cosine, rel=1e-15)
    assert ours('cosine', warmup=4) == pytest.approx(
        [c * min(1, (k + 1) / 4) for k, c in enumerate(cosine)], rel=1e-15)


def test_a_resumed_session_starts_at_the_rate_it_stopped_at():
    """Nothing of the schedule is kept in snapshots: the rate follows from
    the iteration and epoch a resumed trainer starts from."""
    trainer = get_trainer_with_mock_updater((12, 'iteration'), 4)
    optimizer = trainer.updater.get_optimizer('main')
    trainer.updater.iteration, trainer.updater.epoch = 6, 1
    extension = LearningRate(optimizers.Schedule('cosine', 12, 4), 'lr',
                             0.1)
    extension.initialize(trainer)
    assert optimizer.lr == pytest.approx(ours('cosine', warmup=4)[6])
