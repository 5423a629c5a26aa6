"""The optimizer of a run (--optimizer) and its learning-rate schedule
(--lr-policy, --warmup)."""
import math

from googlenet_chainer.compat import chainer

# --optimizer: Chainer's optimizer, in words for --help and the docs.
OPTIMIZERS = {
    'momentum': 'MomentumSGD, as Caffe\'s solver',
    'adam': 'Adam with L2 weight decay',
    'adamw': 'Adam with decoupled weight decay (AdamW)',
    'rmsprop': 'RMSprop'}
# The arrays each keeps per parameter besides the parameter itself (its
# snapshots' size): momentum; Adam's two moments; RMSprop's mean square.
STATES = {'momentum': 1, 'adam': 2, 'adamw': 2, 'rmsprop': 1}
POLICIES = ('fixed', 'step', 'poly', 'cosine')


def make_optimizer(model, name='momentum', lr=0.01, momentum=0.9,
                   weight_decay=2e-4):
    """The optimizer of a run, set up on the model with the trunk frozen.

    momentum, adam and rmsprop take L2 weight decay as a gradient term
    (Chainer's WeightDecay hook, Caffe's weight_decay and PyTorch's
    weight_decay= of those optimizers). adamw decouples it: each update
    takes lr x weight_decay of every weight besides Adam's step, as
    PyTorch's and Keras' AdamW do; Chainer's Adam takes that as
    weight_decay_rate, which it does not scale by alpha, so it gets lr x
    weight_decay, and the schedule scales both through eta (schedule_attr).
    Weight decay applies to weights, not biases, as BVLC's solver has it
    (each bias's decay_mult: 0 in bvlc_googlenet's train_val.prototxt) and
    as timm's optimizers do.
    Adam's betas and epsilon and RMSprop's decay and epsilon are
    Chainer's defaults (those of PyTorch too): 0.9, 0.999, 1e-8; 0.99,
    1e-8. The frozen stages, and the aux heads when model.aux_heads is
    False, are kept out of the updates (GoogLeNet.freeze_trunk).

    Args:
        model: the GoogLeNet to train, aux_heads already set.
        name: a key of OPTIMIZERS.
        lr: the learning rate (Adam's alpha).
        momentum: MomentumSGD's momentum (momentum only).
        weight_decay: 0 for none.

    Returns:
        the chainer.Optimizer, set up on model.
    """
    if name == 'momentum':
        optimizer = chainer.optimizers.MomentumSGD(lr=lr, momentum=momentum)
    elif name == 'rmsprop':
        optimizer = chainer.optimizers.RMSprop(lr=lr)
    else:
        optimizer = chainer.optimizers.Adam(
            alpha=lr, weight_decay_rate=lr * weight_decay
            if name == 'adamw' else 0)
    optimizer.setup(model)
    for path, param in model.namedparams():
        if path.endswith('/b'):
            if name == 'adamw':
                param.update_rule.hyperparam.weight_decay_rate = 0
        elif weight_decay and name != 'adamw':
            param.update_rule.add_hook(
                chainer.optimizer_hooks.WeightDecay(weight_decay))
    model.freeze_trunk()
    return optimizer


def schedule_attr(name, lr):
    """The optimizer attribute a schedule sets, and its value at the full
    rate.

    Args:
        name: a key of OPTIMIZERS.
        lr: --lr.

    Returns:
        MomentumSGD's and RMSprop's ('lr', lr); Adam's ('eta', 1.0): the
        schedule multiplier of AdamW's paper, which scales the step and
        the decoupled weight decay alike, alpha staying lr.
    """
    return ('eta', 1.0) if name in ('adam', 'adamw') else ('lr', lr)


def learning_rate(optimizer):
    """The rate of an optimizer's next update, as the log shows it.

    Adam's alpha times eta: its own ``lr`` is alpha with the bias
    corrections of the moments, which no other toolkit reports.

    Args:
        optimizer: a make_optimizer optimizer (or ChainerMN's wrapper).

    Returns:
        float.
    """
    if isinstance(getattr(optimizer, 'actual_optimizer', optimizer),
                  chainer.optimizers.Adam):
        return optimizer.alpha * optimizer.eta
    return optimizer.lr


class Schedule:
    """--lr-policy and --warmup: the multiplier of the learning rate for
    each update, from the iteration and epoch alone.

    fixed: 1; step: gamma ** (epoch // step) (Chainer's StepShift, run each
    epoch); poly: (1 - iteration / iterations) ** power (PolynomialShift,
    Caffe's poly); cosine: (1 + cos(pi * iteration / iterations)) / 2 (the
    half cosine of SGDR and PyTorch's CosineAnnealingLR, to 0). A warm-up
    of W iterations multiplies update k <= W by k / W, as PyTorch's
    LinearLR chained with another schedule does.

    Args:
        policy: one of POLICIES.
        iterations: the whole run's updates.
        warmup: the warm-up's updates; 0 for none.
        gamma, step, power: --gamma, --lr-step (epochs), --power.
    """

    def __init__(self, policy, iterations, warmup=0, gamma=0.1, step=5,
                 power=0.5):
        self.policy = policy
        self.iterations = iterations
        self.warmup = warmup
        self.gamma = gamma
        self.step = step
        self.power = power

    def __call__(self, iteration, epoch):
        """The multiplier of the update after ``iteration`` updates, made
        in ``epoch`` whole epochs."""
        progress = min(iteration / self.iterations, 1.0)
        factor = {'fixed': 1.0,
                  'step': self.gamma ** (epoch // self.step),
                  'poly': (1 - progress) ** self.power,
                  'cosine': (1 + math.cos(math.pi * progress)) / 2,
                  }[self.policy]
        if iteration < self.warmup:
            factor *= (iteration + 1) / self.warmup
        return factor
