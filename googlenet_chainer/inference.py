"""The one inference path: batches of network inputs through a model on a
device, with their images decoded ahead on every core.

Prediction, evaluation, pool5 features, the feature cache and training's
last validation all run through Predictor; those that read images from
files or URLs also through ``batched`` over ``prefetch``, so batching, the
device, crop averaging, the finite check and decoding ahead are written once.
"""
import numpy

from googlenet_chainer.compat import chainer
from googlenet_chainer.errors import UserError
from googlenet_chainer.images import (DEFAULT_MAX_PIXELS, network_input,
                                      open_image)
from googlenet_chainer.prefetch import prefetch, usable_cores


def _to_cpu(array):
    """array as a numpy array, from whichever device it is on."""
    return chainer.backend.CpuDevice().send(array)


class Predictor:
    """A model's forward pass for inference, on a device.

    Every method takes a batch as a list of arrays, one per image, each
    ``crops`` x 3 x 224 x 224 float32 (images.network_input), and returns
    numpy arrays on the CPU.

    Args:
        model: a tuned_googlenet.GoogLeNet, already on ``device``.
        device: a Chainer device (devices.get_device).
        crops: inputs per image: 1 (the centre crop), 10 (Caffe's
            oversample, averaged) or the feature cache's views.
    """

    def __init__(self, model, device, crops=1):
        self.model = model
        self.device = device
        self.crops = crops

    def _send(self, arrays):
        """The batch as one array on the model's device."""
        return self.device.send(numpy.concatenate(arrays))

    def __call__(self, arrays):
        """float32 N x classes: loss3's probabilities, the mean over each
        image's crops as Caffe's classify.py averages them."""
        probs = _to_cpu(self.model.predict(self._send(arrays)))
        return probs.reshape(-1, self.crops, probs.shape[-1]).mean(axis=1)

    def pool5(self, arrays):
        """float32 N x 1024: pool5, the vector loss3/classifier reads, the
        mean over each image's crops."""
        with chainer.no_backprop_mode(), chainer.using_config('train',
                                                              False):
            pool5 = self.model.features(self._send(arrays), aux=False)[2]
        return _to_cpu(pool5.array).reshape(len(arrays), self.crops,
                                            -1).mean(axis=1)

    def trunk_features(self, arrays, aux=True):
        """float32 N x crops x size: what the feature cache keeps of each
        crop (model.frozen_features: the pools of the taps before the cut,
        with ``aux`` the aux heads' too, then the frozen part's output, or
        pool5 at inc5b), flattened and concatenated, not averaged."""
        with chainer.no_backprop_mode(), chainer.using_config('train',
                                                              False):
            parts = self.model.frozen_features(self._send(arrays), aux=aux)
        n = len(arrays) * self.crops
        flat = numpy.concatenate([_to_cpu(p.array).reshape(n, -1)
                                  for p in parts], axis=1)
        return flat.reshape(len(arrays), self.crops, -1)

    def probabilities_from_cache(self, cut):
        """float32 N x classes from the feature cache's last part of N
        crops (the frozen part's output, N x C x H x W; pool5 at inc5b):
        the stages above the cut, then loss3."""
        with chainer.no_backprop_mode(), chainer.using_config('train',
                                                              False):
            pool5 = self.model.features_from_cache(
                [self.device.send(numpy.ascontiguousarray(cut))],
                aux=False)[2]
            return _to_cpu(self.model.probabilities_from_pool5(pool5))


def check_finite(probs, what):
    """Refuses probabilities that hold NaN or infinity.

    They come from a model with broken weights, whose argmax would look like
    a class (NaN compares as class 0) and whose JSON would hold NaN.

    Args:
        probs: an array of probabilities, of any shape.
        what: the source, named in the error.

    Raises:
        UserError: probs holds NaN or infinity.
    """
    if not numpy.isfinite(probs).all():
        raise UserError('{} gave non-finite probabilities (NaN or infinity): '
                        'its weights are broken'.format(what))


def top_predictions(probs, fields, k):
    """The k most probable classes of one image, best first.

    Args:
        probs: float32 vector of the model's classes, finite.
        fields: (class id, name) of each class (labels.class_fields).
        k: how many.

    Returns:
        [{'index': int, 'class_id': str, 'name': str, 'probability':
        float}], ties to the lower index.
    """
    order = numpy.argsort(-probs, kind='stable')[:k]
    return [{'index': int(i), 'class_id': fields[i][0], 'name': fields[i][1],
             'probability': float(probs[i])} for i in order]


def batched(function, ahead, batchsize):
    """Runs ``function`` on batches of decoded inputs, keeping input order.

    Args:
        function: batch (list of arrays) -> one result per input, such as
            a Predictor or its pool5.
        ahead: (item, future of its network input) pairs, as prefetch
            yields them.
        batchsize: inputs per call of function.

    Yields:
        (item, result) for each item in order; result is the UserError
        that stopped the item's decoding, if one did.
    """
    batch, items = [], []

    def run():
        done = list(zip(items, function(batch))) if batch else []
        batch.clear()
        items.clear()
        return done

    for item, inputs in ahead:
        try:
            inputs = inputs.result()
        except UserError as e:
            yield from run()  # the inputs before it first: input order
            yield item, e
            continue
        batch.append(inputs)
        items.append(item)
        if len(batch) == batchsize:
            yield from run()
    yield from run()


def outcomes(predictor, ahead, batchsize, pool5=False):
    """What prediction reports of each input, in input order.

    Args:
        predictor: a Predictor.
        ahead: ((name, source), future of its network input) pairs.
        batchsize: inputs per forward pass.
        pool5: the pool5 vector of each input instead of its classes.

    Yields:
        (name, outcome): the float32 vector of the class probabilities, or
        of pool5 with ``pool5``, or the UserError that stopped the input
        (its decoding, or probabilities that are not finite:
        check_finite).
    """
    for (name, _), result in batched(predictor.pool5 if pool5 else predictor,
                                     ahead, batchsize):
        if not pool5 and not isinstance(result, UserError):
            try:
                check_finite(result, 'the model')
            except UserError as e:
                result = e
        yield name, result


def decoded_ahead(load, items, batchsize):
    """prefetch(load, items) on every core, a batch and one ahead.

    The next images decode and resize while a batch runs through the
    network. Use it in a with block (it stops its threads on leaving).

    Args:
        load: item -> its network input, a crops x 3 x 224 x 224 array
            (images.network_input); called in the threads.
        items: what to load, in order.
        batchsize: inputs per forward pass.

    Returns:
        prefetch's iterator of (item, a done future of load(item)), in
        the items' order.
    """
    return prefetch(load, items, batchsize + 1, workers=usable_cores())


def predict_dataset(predictor, pairs, batchsize,
                    max_pixels=DEFAULT_MAX_PIXELS, progress=None):
    """Class probabilities of each readable image of a labelled set.

    Args:
        predictor: a Predictor; its crops (1 or 10) choose the centre crop
            or Caffe's ten, averaged.
        pairs: [(path, label)].
        batchsize: images per forward pass.
        max_pixels: images.open_image's limit.
        progress: None, or a callable wrapping an iterable (a tqdm bar).

    Returns:
        (probabilities float32 N x classes, the N readable pairs in order,
        ['path: why'] of the others).
    """
    oversample = predictor.crops == 10

    def load(pair):
        return network_input(open_image(pair[0], max_pixels), oversample)

    kept, bad, results = [], [], []
    with decoded_ahead(load, pairs, batchsize) as ahead:
        for pair, result in batched(
                predictor, progress(ahead) if progress else ahead,
                batchsize):
            if isinstance(result, UserError):
                bad.append('{}: {}'.format(pair[0], result))
            else:
                kept.append(pair)
                results.append(result)
    probs = (numpy.stack(results) if results else
             numpy.zeros((0, predictor.model.n_classes), numpy.float32))
    return probs, kept, bad
