"""GoogLeNet in Caffe's terms: BVLC's layer names and the deploy net as layers.

One table, LAYER_MAP, says which Caffe layer holds the weights of which link
of the Chain: the converter copies through it, and the exporter and the
benchmark write the layers that network_layers lists, whose weights it finds
through the same table. The names and parameters are those of BVLC's
``models/bvlc_googlenet/deploy.prototxt`` and ``train_val.prototxt``.
"""
import collections
import functools

import tuned_googlenet
from googlenet_chainer.images import CROP

# Caffe's branch of an Inception module -> the link of tuned_googlenet's.
INCEPTION_BRANCHES = (('1x1', 'conv1'), ('3x3_reduce', 'proj3'),
                      ('3x3', 'conv3'), ('5x5_reduce', 'proj5'),
                      ('5x5', 'conv5'), ('pool_proj', 'projp'))
# Caffe's LRN divides alpha by local_size, and so does ONNX's
# (onnx/docs/Operators.md, LRN): both take Caffe's value.
LRN = {'local_size': 5, 'alpha': 1e-4, 'beta': 0.75, 'k': 1.0}
# BVLC's deploy.prototxt declares a batch of 10 (the ten crops); Caffe and
# OpenCV reshape the input blob to whatever batch they are given.
DEPLOY_BATCH = 10
Layer = collections.namedtuple('Layer', 'name type bottom top params link')
Layer.__doc__ = """One Caffe layer, as network_layers lists them.

Args:
    name: the layer's name, as in BVLC's files.
    type: Caffe's layer type ('Convolution', 'Pooling', 'ReLU', ...).
    bottom: the names of the blobs it reads.
    top: the names of the blobs it writes (its bottom for an in-place
        ReLU or Dropout).
    params: the type's parameters, a dict.
    link: the Chainer link holding its weights; None for a layer without.
"""


def _layer_map():
    """LAYER_MAP's table, built from INCEPTION_BRANCHES and the heads."""
    names = {'conv1/7x7_s2': 'conv1', 'conv2/3x3_reduce': 'conv2_reduce',
             'conv2/3x3': 'conv2'}
    for stage in tuned_googlenet.INCEPTION:
        for caffe_branch, link in INCEPTION_BRANCHES:
            names['inception_{}/{}'.format(stage[3:], caffe_branch)] = (
                '{}/{}'.format(stage, link))
    for head in ('loss1', 'loss2'):
        names[head + '/conv'] = head + '_conv'
        names[head + '/fc'] = head + '_fc1'
        names[head + '/classifier'] = head + '_fc2'
    names['loss3/classifier'] = 'loss3_fc'
    return names


# Caffe layer name -> the path of its link in the Chain, trunk first.
LAYER_MAP = _layer_map()


def link_of(model, caffe_name):
    """The link of ``model`` that holds a Caffe layer's weights.

    Args:
        model: a tuned_googlenet.GoogLeNet.
        caffe_name: a key of LAYER_MAP, such as ``inception_3a/1x1``.

    Returns:
        The chainer.links.Convolution2D or Linear at LAYER_MAP's path.

    Raises:
        KeyError: caffe_name is not in LAYER_MAP.
    """
    return functools.reduce(getattr, LAYER_MAP[caffe_name].split('/'), model)


def _conv(model, name, bottom, relu_name):
    """A Convolution and its in-place ReLU, parameters read off the link."""
    link = link_of(model, name)
    out, _, kh, kw = link.W.shape
    if kh != kw or link.stride[0] != link.stride[1] or (
            link.pad[0] != link.pad[1]):
        raise ValueError('{}: only square kernels, strides and pads'
                         .format(name))
    return [Layer(name, 'Convolution', [bottom], [name],
                  {'num_output': out, 'kernel_size': kh,
                   'stride': link.stride[0], 'pad': link.pad[0]}, link),
            Layer(relu_name, 'ReLU', [name], [name], {}, None)]


def _pool(name, bottom, method, kernel, stride, pad=0):
    """A Pooling layer, ``method`` 'MAX' or 'AVE'."""
    return Layer(name, 'Pooling', [bottom], [name],
                 {'pool': method, 'kernel_size': kernel, 'stride': stride,
                  'pad': pad}, None)


def _lrn(name, bottom):
    """An LRN layer with BVLC's parameters (LRN)."""
    return Layer(name, 'LRN', [bottom], [name], dict(LRN), None)


def _inner_product(model, name, bottom):
    """An InnerProduct layer, its num_output read off the link."""
    link = link_of(model, name)
    return Layer(name, 'InnerProduct', [bottom], [name],
                 {'num_output': link.W.shape[0]}, link)


def _dropout(name, blob, ratio):
    """A Dropout layer, in place on ``blob``."""
    return Layer(name, 'Dropout', [blob], [blob], {'dropout_ratio': ratio},
                 None)


def _inception(model, stage, bottom):
    """The layers of one Inception module (``stage`` a key of
    tuned_googlenet.INCEPTION), in the order they run, up to its Concat
    ``output``."""
    prefix = 'inception_{}/'.format(stage[3:])
    layers = []
    for branch in ('1x1', '3x3_reduce', '3x3', '5x5_reduce', '5x5'):
        source = {'3x3': prefix + '3x3_reduce',
                  '5x5': prefix + '5x5_reduce'}.get(branch, bottom)
        layers += _conv(model, prefix + branch, source,
                        prefix + 'relu_' + branch)
    layers.append(_pool(prefix + 'pool', bottom, 'MAX', 3, 1, 1))
    layers += _conv(model, prefix + 'pool_proj', prefix + 'pool',
                    prefix + 'relu_pool_proj')
    layers.append(Layer(prefix + 'output', 'Concat',
                        [prefix + b for b in ('1x1', '3x3', '5x5',
                                              'pool_proj')],
                        [prefix + 'output'], {'axis': 1}, None))
    return layers


def _aux_head(model, head, bottom):
    """loss1 or loss2 as in BVLC's train_val.prototxt, up to the classifier
    (the caffemodel keeps their weights; the deploy net has no aux heads)."""
    return ([_pool(head + '/ave_pool', bottom, 'AVE', 5, 3)]
            + _conv(model, head + '/conv', head + '/ave_pool',
                    head + '/relu_conv')
            + [_inner_product(model, head + '/fc', head + '/conv'),
               Layer(head + '/relu_fc', 'ReLU', [head + '/fc'],
                     [head + '/fc'], {}, None),
               _dropout(head + '/drop_fc', head + '/fc', 0.7),
               _inner_product(model, head + '/classifier', head + '/fc')])


def network_layers(model, aux=False):
    """GoogLeNet as Caffe layers, in the order they run.

    Args:
        model: a tuned_googlenet.GoogLeNet; its links' shapes give the
            layers' sizes (num_output of the classifiers: its classes).
        aux: insert the loss1 and loss2 heads after inception_4a and
            inception_4d, as train_val.prototxt has them.

    Returns:
        [Layer], from the ``Input`` layer ``data`` (DEPLOY_BATCH x 3 x 224 x
        224) to the ``Softmax`` ``prob``; ReLU and Dropout work in place, as
        in BVLC's files.
    """
    layers = [Layer('data', 'Input', [], ['data'],
                    {'shape': [DEPLOY_BATCH, 3, CROP, CROP]}, None)]
    layers += _conv(model, 'conv1/7x7_s2', 'data', 'conv1/relu_7x7')
    layers += [_pool('pool1/3x3_s2', 'conv1/7x7_s2', 'MAX', 3, 2),
               _lrn('pool1/norm1', 'pool1/3x3_s2')]
    layers += _conv(model, 'conv2/3x3_reduce', 'pool1/norm1',
                    'conv2/relu_3x3_reduce')
    layers += _conv(model, 'conv2/3x3', 'conv2/3x3_reduce', 'conv2/relu_3x3')
    layers += [_lrn('conv2/norm2', 'conv2/3x3'),
               _pool('pool2/3x3_s2', 'conv2/norm2', 'MAX', 3, 2)]
    bottom = 'pool2/3x3_s2'
    for stage in tuned_googlenet.INCEPTION:
        if stage in ('inc4a', 'inc5a'):
            pool = 'pool{}/3x3_s2'.format(int(stage[3]) - 1)
            layers.append(_pool(pool, bottom, 'MAX', 3, 2))
            bottom = pool
        layers += _inception(model, stage, bottom)
        bottom = layers[-1].top[0]
        if aux and stage in tuned_googlenet.AUX_TAPS:
            layers += _aux_head(
                model, 'loss{}'.format(
                    tuned_googlenet.AUX_TAPS.index(stage) + 1), bottom)
    layers += [_pool('pool5/7x7_s1', bottom, 'AVE', 7, 1),
               _dropout('pool5/drop_7x7_s1', 'pool5/7x7_s1', 0.4),
               _inner_product(model, 'loss3/classifier', 'pool5/7x7_s1'),
               Layer('prob', 'Softmax', ['loss3/classifier'], ['prob'],
                     {'axis': 1}, None)]
    return layers
