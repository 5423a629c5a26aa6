"""BVLC GoogLeNet as a Chainer Chain: replaceable heads, a frozen trunk.

The original workflow: set N_CLASSES below to the number of classes of your
own data set, run ``convert_caffe_model.py`` (which copies the pretrained
trunk and leaves the replaced heads freshly initialised), then train.
"""
import functools

from googlenet_chainer.compat import chainer
import chainer.functions as F
import chainer.links as L
from chainer import initializer, initializers

from googlenet_chainer import fast_ops
from googlenet_chainer.errors import UserError
from googlenet_chainer.losses import cross_entropy

# Number of classes of the replaced heads (loss1_fc2, loss2_fc2, loss3_fc).
# 1000 is ImageNet's, for which the converter copies every pretrained head.
N_CLASSES = 1000
# ImageNet-21k has 21,841: room to spare, and 1.2 GB of heads at most.
MAX_CLASSES = 100000

# The trunk in the order it runs. The Caffe pooling layers pool3 and pool4
# (no parameters) close inc3b and inc4e, so every stage boundary is a cut
# point and a stage's output is what the next one reads.
TRUNK = ('conv1', 'conv2_reduce', 'conv2',
         'inc3a', 'inc3b',
         'inc4a', 'inc4b', 'inc4c', 'inc4d', 'inc4e',
         'inc5a', 'inc5b')
HEADS = ('loss1_conv', 'loss1_fc1', 'loss1_fc2',
         'loss2_conv', 'loss2_fc1', 'loss2_fc2',
         'loss3_fc')
AUX_HEADS = HEADS[:6]
# (in_channels, out1, proj3, out3, proj5, out5, proj_pool) of each module.
INCEPTION = {
    'inc3a': (192, 64, 96, 128, 16, 32, 32),
    'inc3b': (256, 128, 128, 192, 32, 96, 64),
    'inc4a': (480, 192, 96, 208, 16, 48, 64),
    'inc4b': (512, 160, 112, 224, 24, 64, 64),
    'inc4c': (512, 128, 128, 256, 24, 64, 64),
    'inc4d': (512, 112, 144, 288, 32, 64, 64),
    'inc4e': (528, 256, 160, 320, 32, 128, 128),
    'inc5a': (832, 256, 160, 320, 32, 128, 128),
    'inc5b': (832, 384, 192, 384, 48, 128, 128),
}
DEFAULT_FREEZE_UNTIL = 'inc5b'


def parse_freeze_until(value):
    """Returns the TRUNK name of the command line's freeze cut, or None.

    Args:
        value: None, 'none' (any case: nothing frozen) or a TRUNK name.

    Raises:
        UserError: value is none of those.
    """
    if value is None or value.lower() == 'none':
        return None
    if value not in TRUNK:
        raise UserError('unknown layer {!r} for the freeze cut; choose one of '
                        '{} or none'.format(value, ', '.join(TRUNK)))
    return value


class Inception(chainer.Chain):
    """An Inception module whose links are named like chainer.links.Inception.

    Args:
        in_channels, out1, proj3, out3, proj5, out5, proj_pool: channels of
            its input and of its links' outputs, as INCEPTION lists them.
        conv: makes its links: conv(in_channels, out_channels, ksize, pad=...).
    """

    def __init__(self, in_channels, out1, proj3, out3, proj5, out5, proj_pool,
                 conv=L.Convolution2D):
        super().__init__()
        with self.init_scope():
            self.conv1 = conv(in_channels, out1, 1)
            self.proj3 = conv(in_channels, proj3, 1)
            self.conv3 = conv(proj3, out3, 3, pad=1)
            self.proj5 = conv(in_channels, proj5, 1)
            self.conv5 = conv(proj5, out5, 5, pad=2)
            self.projp = conv(in_channels, proj_pool, 1)

    def forward(self, x):
        out1 = F.relu(self.conv1(x))
        out3 = F.relu(self.conv3(F.relu(self.proj3(x))))
        out5 = F.relu(self.conv5(F.relu(self.proj5(x))))
        pool = F.relu(self.projp(
            F.max_pooling_2d(x, 3, stride=1, pad=1, cover_all=True)))
        return F.concat((out1, out3, out5, pool), axis=1)


class StandardOps:
    """The trunk's operations as Chainer functions on NCHW Variables: they
    backpropagate, and run on any device. (fast_ops.TrunkOps are the same
    on NHWC numpy arrays, for stages that need no gradient.)"""

    @staticmethod
    def conv_relu(link, x):
        return F.relu(link(x))

    @staticmethod
    def max_pool(x):
        # Caffe rounds the pooled size up: cover_all=True.
        return F.max_pooling_2d(x, 3, stride=2, cover_all=True)

    @staticmethod
    def lrn(x):
        # Caffe divides alpha by the window size; Chainer does not.
        return F.local_response_normalization(x, n=5, k=1, alpha=1e-4 / 5,
                                              beta=0.75)

    @staticmethod
    def inception(module, x):
        return module(x)


# The heads read the 5/3 average pools of these stages' outputs, and pool5,
# the 7/1 average pool of inc5b's.
AUX_TAPS = ('inc4a', 'inc4d')
TAP_POOLS = {'inc4a': (5, 3), 'inc4d': (5, 3), 'inc5b': (7, 1)}
# The fast path runs each group of images (fast_ops.run_stages) in chunks,
# sized per stage: one image through the 112x112 to 28x28 stages (12544 to
# 784 GEMM rows already) keeps two groups' working sets, one per core, near
# the caches; four from the 14x14 stages on give the late GEMMs 196 to 784
# rows. Peak RSS at batch 32, two groups at a time: 259 MB with these, 287
# MB with chunks of 2 up to 28x28, at the same speed (2026-11-30).
FAST_CHUNKS = (('conv1', 1), ('inc4a', 4))


def cached_taps(cut, aux=True):
    """The taps a trunk frozen up to ``cut`` passes, in order: AUX_TAPS
    (with ``aux``), and inc5b, whose pool5 stands for its output.

    Args:
        cut: a TRUNK stage, the last frozen one.
        aux: with the aux heads' taps.

    Returns:
        [str]: names of TAP_POOLS.
    """
    return [name for name in TAP_POOLS
            if TRUNK.index(name) <= TRUNK.index(cut)
            and (aux or name not in AUX_TAPS)]


def _constant(x):
    """x as a Variable whose gradient no backward computes (the layers that
    read what frozen stages made would compute it, to throw it away)."""
    if isinstance(x, chainer.Variable) and not x.requires_grad:
        return x
    return chainer.Variable(getattr(x, 'array', x), requires_grad=False)


class _Unfilled(initializer.Initializer):
    """Leaves a new parameter's array as numpy.empty made it (its pages
    untouched): load_model replaces the array itself."""

    def __call__(self, array):
        return array


def link_makers(initialize=True):
    """Returns (conv, linear), the makers of the Chain's links.

    Each takes L.Convolution2D's or L.Linear's arguments, input size first.

    Args:
        initialize: draw the weights as Caffe's "xavier" filler does
            (LeCun's uniform in Chainer's terms), biases zero. False when a
            file is loaded next and replaces every array: none is filled
            (13 M random draws cost 0.1 s; a fill's page faults alone
            0.08 s) and no gradient array is made (Chainer would give each
            parameter a NaN one as large as itself, 53 MB that prediction
            never uses and that training's first update replaces).
    """
    if initialize:
        w = initializers.LeCunUniform(scale=1.0)
        return (functools.partial(L.Convolution2D, initialW=w),
                functools.partial(L.Linear, initialW=w))

    def unfilled(cls):
        def make(in_size, *args, **kwargs):
            link = cls(None, *args, initialW=_Unfilled(),
                       initial_bias=_Unfilled(), **kwargs)
            # Cleared while W has no array yet, no gradient is made for it.
            link.W.cleargrad()
            link.b.cleargrad()
            link._initialize_params(in_size)
            return link
        return make
    return unfilled(L.Convolution2D), unfilled(L.Linear)


class GoogLeNet(chainer.Chain):
    """bvlc_googlenet with three loss heads and a frozen trunk.

    ``class_weight`` (None, or an array of n_classes on the model's device)
    weights each class's examples in the three losses, as softmax_cross_entropy
    does; ``label_smoothing`` (0 to 1) smooths their targets
    (losses.cross_entropy). ``aux_heads = False`` trains loss3 alone: the aux
    heads are neither computed nor updated (with the trunk frozen they do not
    change what loss3's classifier learns) and keep their weights.

    Args:
        n_classes: classes of the heads, 2 to MAX_CLASSES; None: N_CLASSES.
        freeze_until: None, or the last frozen TRUNK stage: those up to it
            run under no_backprop_mode, and freeze_trunk stops their updates.
        initialize: False leaves the weight arrays unfilled (numpy.empty)
            for load_model, which replaces every one with the file's.

    Raises:
        UserError: n_classes is below 2 or above MAX_CLASSES.
        ValueError: freeze_until is neither None nor in TRUNK.
    """

    aux_heads = True
    label_smoothing = 0.0
    untrained_heads = ()  # set by load_model

    def __init__(self, n_classes=None, freeze_until=DEFAULT_FREEZE_UNTIL,
                 initialize=True):
        super().__init__()
        self.n_classes = N_CLASSES if n_classes is None else int(n_classes)
        if self.n_classes < 2:  # a softmax over one class is always 100%
            raise UserError('a classifier needs at least 2 classes, got {}'
                            .format(self.n_classes))
        if self.n_classes > MAX_CLASSES:
            raise UserError(
                '{} classes is more than this project supports ({:,}; the '
                'three heads take 12 KB of weights per class)'.format(
                    self.n_classes, MAX_CLASSES))
        if freeze_until is not None and freeze_until not in TRUNK:
            raise ValueError('freeze_until must be None or one of TRUNK')
        self.freeze_until = freeze_until
        self._fast_kernels = {}
        self.class_weight = None
        conv, linear = link_makers(initialize)
        with self.init_scope():
            self.conv1 = conv(3, 64, 7, stride=2, pad=3)
            self.conv2_reduce = conv(64, 64, 1)
            self.conv2 = conv(64, 192, 3, pad=1)
            for name, sizes in INCEPTION.items():
                setattr(self, name, Inception(*sizes, conv=conv))
            self.loss1_conv = conv(512, 128, 1)
            self.loss1_fc1 = linear(2048, 1024)
            self.loss1_fc2 = linear(1024, self.n_classes)
            self.loss2_conv = conv(528, 128, 1)
            self.loss2_fc1 = linear(2048, 1024)
            self.loss2_fc2 = linear(1024, self.n_classes)
            self.loss3_fc = linear(1024, self.n_classes)

    @property
    def frozen_stages(self):
        """The TRUNK stages up to freeze_until, in order; () for none."""
        if self.freeze_until is None:
            return ()
        return TRUNK[:TRUNK.index(self.freeze_until) + 1]

    def freeze_trunk(self):
        """Keeps the frozen stages (and the aux heads, when aux_heads is
        False) out of updates; call after optimizer.setup."""
        aux = () if self.aux_heads else AUX_HEADS
        for name in self.frozen_stages + aux:
            getattr(self, name).disable_update()

    def _stage(self, name, h, ops):
        if name == 'conv1':
            return ops.lrn(ops.max_pool(ops.conv_relu(self.conv1, h)))
        if name == 'conv2_reduce':
            return ops.conv_relu(self.conv2_reduce, h)
        if name == 'conv2':
            return ops.max_pool(ops.lrn(ops.conv_relu(self.conv2, h)))
        h = ops.inception(getattr(self, name), h)
        return ops.max_pool(h) if name in ('inc3b', 'inc4e') else h

    def _run(self, h, first, stop, aux, pooled):
        """Stages [first, stop) of TRUNK on h, their input: returns the
        last one's output (None when that is inc5b on the fast path) and
        adds the pools of the taps it passes to ``pooled``. The stages
        that need no gradient (the frozen ones, or all under
        no_backprop_mode) take fast_ops' paths where they apply."""
        backprop = chainer.config.enable_backprop
        frozen = len(self.frozen_stages)
        taps = {name: pool for name, pool in TAP_POOLS.items()
                if aux or name not in AUX_TAPS}
        no_grad = min(stop, max(frozen, first)) if backprop else stop
        if no_grad > first and fast_ops.applies(h):
            h, fast = fast_ops.run_stages(self._stage, getattr(h, 'array', h),
                                          TRUNK, first, no_grad, dict(
                                              chunks=FAST_CHUNKS, taps=taps,
                                              reuse=frozen,
                                              kernels=self._fast_kernels))
            h = None if h is None else _constant(h)
            pooled.update((name, _constant(pool))
                          for name, pool in fast.items())
            first = no_grad
        for i in range(first, stop):
            if i == max(first, frozen):  # what frozen stages made: constant
                h = _constant(h)
                pooled.update({k: _constant(v) for k, v in pooled.items()})
            with chainer.using_config('enable_backprop',
                                      backprop and i >= frozen):
                h = self._stage(TRUNK[i], h, StandardOps)
                if TRUNK[i] in taps:
                    pooled[TRUNK[i]] = F.average_pooling_2d(h,
                                                            *taps[TRUNK[i]])
        return h

    def features(self, x, aux=True):
        """The trunk on images x: returns what the heads read.

        That is the 5/3 average pools of inc4a and inc4d (None unless
        ``aux``) and pool5, the 7x7 average pool of inc5b. Those pools have
        no parameters, so a frozen trunk's features can be computed once
        and cached (frozen_features).
        """
        pooled = {}
        self._run(x, 0, len(TRUNK), aux, pooled)
        return pooled.get('inc4a'), pooled.get('inc4d'), pooled['inc5b']

    def frozen_features(self, x, aux=True):
        """What the feature cache keeps of images x: the pools of the taps
        up to the cut (cached_taps), then the last frozen stage's output
        unless that is inc5b; a list of Variables. Nothing above the cut
        runs."""
        pooled = {}
        h = self._run(x, 0, len(self.frozen_stages), aux, pooled)
        kept = [pooled[name] for name in cached_taps(self.freeze_until, aux)]
        return kept + ([h] if self.freeze_until != 'inc5b' else [])

    def features_from_cache(self, cached, aux=True):
        """features() from frozen_features(x, aux)'s arrays (or Variables):
        only the stages above the cut run."""
        taps = cached_taps(self.freeze_until, aux)
        pooled = dict(zip(taps, map(_constant, cached)))
        if len(cached) > len(taps):
            self._run(cached[-1], len(self.frozen_stages), len(TRUNK), aux,
                      pooled)
        return pooled.get('inc4a'), pooled.get('inc4d'), pooled['inc5b']

    def serialize(self, serializer):
        """Also drops the GEMM layouts: loading overwrites W in place."""
        self._fast_kernels.clear()
        super().serialize(serializer)

    def _aux_head(self, prefix, h):
        h = F.relu(getattr(self, prefix + '_conv')(h))
        h = F.relu(getattr(self, prefix + '_fc1')(h))
        h = F.dropout(h, 0.7)
        return getattr(self, prefix + '_fc2')(h)

    def _main_head(self, pool5):
        return self.loss3_fc(F.dropout(pool5, 0.4))

    def loss_from_features(self, aux1, aux2, pool5, t):
        """The training loss ``(loss1 + loss2) * 0.3 + loss3`` on the features
        (loss3 alone when aux1 and aux2 are None); reports its parts."""
        def loss(y):
            return cross_entropy(y, t, self.label_smoothing,
                                 self.class_weight)
        y = self._main_head(pool5)
        parts = {'loss3': loss(y), 'accuracy': F.accuracy(y, t)}
        total = parts['loss3']
        if aux1 is not None:
            parts['loss1'] = loss(self._aux_head('loss1', aux1))
            parts['loss2'] = loss(self._aux_head('loss2', aux2))
            total = (parts['loss1'] + parts['loss2']) * 0.3 + total
        parts['loss'] = total
        chainer.report(parts, self)
        return total

    def forward(self, *inputs):
        """``model(x, t)`` on images N x 3 x H x W, or ``model(*cached, t)``
        on frozen_features(x, aux_heads)' arrays, as the feature cache
        keeps them (features_from_cache)."""
        *inputs, t = inputs
        if len(inputs) == 1 and inputs[0].shape[1] == 3:
            features = self.features(inputs[0], aux=self.aux_heads)
        else:
            features = self.features_from_cache(inputs, aux=self.aux_heads)
        return self.loss_from_features(*features, t)

    def predict(self, x):
        """loss3's class probabilities, an N x n_classes array; train off."""
        with chainer.no_backprop_mode(), chainer.using_config('train', False):
            return self.probabilities_from_pool5(
                self.features(x, aux=False)[2])

    def probabilities_from_pool5(self, pool5):
        """loss3's probabilities of pool5 rows (N x 1024 x 1 x 1), an array;
        its dropout runs unless chainer.config.train is off, as in predict."""
        return F.softmax(self._main_head(pool5)).array

