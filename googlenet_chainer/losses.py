"""The classification loss with label smoothing, which Chainer 7's
softmax_cross_entropy lacks."""
from googlenet_chainer.compat import chainer  # noqa: F401 (before F)
import chainer.functions as F


def cross_entropy(y, t, smoothing=0.0, class_weight=None):
    """Softmax cross entropy against targets smoothed by ``smoothing``.

    The target of an example of class c puts 1 - smoothing on c and
    smoothing spread evenly over all K classes (c included), as PyTorch's
    CrossEntropyLoss(label_smoothing=...) and Keras' do (Szegedy et al.,
    "Rethinking the Inception architecture", 2016): the loss is (1 -
    smoothing) * -log p_c + smoothing * mean_k(-log p_k). Without
    smoothing it is Chainer's softmax_cross_entropy itself.

    Args:
        y: logits, a Variable or array N x K.
        t: int32 labels, N.
        smoothing: from 0 (none) to 1.
        class_weight: None, or float32 K weights on y's device: each
            example's loss times its class's weight, as
            softmax_cross_entropy weights it.

    Returns:
        A scalar Variable: the mean over the examples.
    """
    if not smoothing:
        return F.softmax_cross_entropy(y, t, class_weight=class_weight)
    log_p = F.log_softmax(y)
    loss = (1 - smoothing) * -F.select_item(log_p, t) + \
        smoothing * -F.mean(log_p, axis=1)
    if class_weight is not None:
        loss = loss * class_weight[t]
    return F.mean(loss)
