"""Synthetic bvlc_googlenet caffemodels in Caffe's real binary format.

Names and shapes come from chainer.links.GoogLeNet and BVLC's layer names, not
from this project's converter, so the tests check the converter against an
independent description of the file.
"""
import os

import numpy

from googlenet_chainer.compat import chainer  # noqa: F401 (before chainer.links)
import chainer.links as L
from chainer.links.model.vision import googlenet as chainer_googlenet

import caffe_pb2

_V1 = caffe_pb2.V1LayerParameter


def caffe_layer_shapes(n_classes=1000):
    """[(caffe name, 'conv' or 'fc', W shape)] in the order of the prototxt."""
    net = L.GoogLeNet(pretrained_model=None)
    layers = [('conv1/7x7_s2', net.conv1), ('conv2/3x3_reduce',
              net.conv2_reduce), ('conv2/3x3', net.conv2)]
    branches = (('1x1', 'conv1'), ('3x3_reduce', 'proj3'), ('3x3', 'conv3'),
                ('5x5_reduce', 'proj5'), ('5x5', 'conv5'),
                ('pool_proj', 'projp'))
    for stage in ('3a', '3b', '4a', '4b', '4c', '4d', '4e', '5a', '5b'):
        module = getattr(net, 'inc' + stage)
        layers += [('inception_{}/{}'.format(stage, caffe), getattr(module, link))
                   for caffe, link in branches]
    for head in ('loss1', 'loss2'):
        layers += [(head + '/conv', getattr(net, head + '_conv')),
                   (head + '/fc', getattr(net, head + '_fc1')),
                   (head + '/classifier', getattr(net, head + '_fc2'))]
    layers.append(('loss3/classifier', net.loss3_fc))
    shapes = []
    for name, link in layers:
        shape = link.W.shape
        if name.endswith('classifier'):
            shape = (n_classes, shape[1])
        shapes.append((name, 'conv' if len(shape) == 4 else 'fc', shape))
    return shapes


def random_weights(seed=0, n_classes=1000):
    """{caffe name: (W, b)} float32 with a fan-in scale that keeps
    activations finite through the whole network."""
    rng = numpy.random.RandomState(seed)
    weights = {}
    for name, _, shape in caffe_layer_shapes(n_classes):
        fan_in = int(numpy.prod(shape[1:]))
        w = rng.standard_normal(shape).astype(numpy.float32)
        w *= numpy.float32(numpy.sqrt(2.0 / fan_in))
        if name == 'conv1/7x7_s2':
            # Inputs span about +-128, not +-1: keeps the features O(1),
            # as the pretrained network's are.
            w *= numpy.float32(1 / 64)
        b = (rng.standard_normal(shape[0]) * 0.1).astype(numpy.float32)
        weights[name] = (w, b)
    return weights


def _set_blob(blob, array, legacy_shape):
    if legacy_shape is None:
        blob.shape.dim.extend(array.shape)
    else:
        blob.num, blob.channels, blob.height, blob.width = legacy_shape
    blob.data.extend(array.ravel())


def _legacy_shapes(kind, w):
    if kind == 'conv':
        return w.shape, (1, 1, 1, w.shape[0])
    return (1, 1) + w.shape, (1, 1, 1, w.shape[0])


# Layers without blobs that a real training net also stores.
_PLAIN = [('data', 'Data', _V1.DATA), ('conv1/relu_7x7', 'ReLU', _V1.RELU),
          ('pool1/3x3_s2', 'Pooling', _V1.POOLING),
          ('pool1/norm1', 'LRN', _V1.LRN),
          ('inception_3a/output', 'Concat', _V1.CONCAT),
          ('loss3/loss3', 'SoftmaxWithLoss', _V1.SOFTMAX_LOSS)]


def write_caffemodel(path, weights, fmt='v1', n_classes=1000, skip=()):
    """Writes weights as a caffemodel: 'v1' (``layers``, enum types, legacy
    blob dims) or 'v2' (``layer``, type strings, BlobShape)."""
    net = caffe_pb2.NetParameter(name='GoogleNet')
    for name, text, enum in _PLAIN:
        layer = net.layers.add() if fmt == 'v1' else net.layer.add()
        layer.name = name
        layer.type = enum if fmt == 'v1' else text
        if text == 'Pooling':
            layer.pooling_param.kernel_size = 3
            layer.pooling_param.stride = 2
        elif text == 'LRN':
            layer.lrn_param.local_size = 5
            layer.lrn_param.alpha = 1e-4
    for name, kind, _ in caffe_layer_shapes(n_classes):
        if name in skip:
            continue
        w, b = weights[name]
        if fmt == 'v1':
            layer = net.layers.add()
            layer.type = _V1.CONVOLUTION if kind == 'conv' else _V1.INNER_PRODUCT
            w_shape, b_shape = _legacy_shapes(kind, w)
        else:
            layer = net.layer.add()
            layer.type = 'Convolution' if kind == 'conv' else 'InnerProduct'
            w_shape = b_shape = None
        layer.name = name
        if kind == 'conv':
            param = layer.convolution_param
            param.num_output = w.shape[0]
            param.kernel_size.append(w.shape[2])
            param.pad.append(w.shape[2] // 2)
            param.stride.append(2 if name == 'conv1/7x7_s2' else 1)
        else:
            layer.inner_product_param.num_output = w.shape[0]
        _set_blob(layer.blobs.add(), w, w_shape)
        _set_blob(layer.blobs.add(), b, b_shape)
    with open(path, 'wb') as f:
        f.write(net.SerializeToString())


class _Blob:
    def __init__(self, array):
        self.array = array


class _CaffeLayer:
    def __init__(self, w, b):
        self.W, self.b = _Blob(w), _Blob(b)


def chainer_port(weights):
    """chainer.links.GoogLeNet holding weights, copied by Chainer's own
    transfer code (an independent check of our layer mapping)."""
    net = L.GoogLeNet(pretrained_model=None)
    chainer_googlenet._transfer_googlenet(
        {name: _CaffeLayer(w, b) for name, (w, b) in weights.items()}, net)
    return net


def converted_model(folder, n_classes):
    """A model of n_classes converted from a seeded caffemodel written in
    folder (both kept there), as the benchmarks start; returns its path."""
    from googlenet_chainer.caffemodel import convert
    caffemodel = os.path.join(folder, 'bvlc_googlenet.caffemodel')
    write_caffemodel(caffemodel, random_weights(0))
    model = os.path.join(folder, 'tuned_googlenet.model')
    convert(caffemodel, model, n_classes=n_classes, log=lambda line: None)
    return model
