"""Exports a GoogLeNet model this project wrote to ONNX or to Caffe.

    python export_googlenet.py --model MODEL --onnx googlenet.onnx
    python export_googlenet.py --model MODEL --caffe caffe_export/

Both take the deploy network: input ``data``, float32 N x 3 x 224 x 224, BGR
minus the mean (104, 117, 123) as Caffe's reference preprocessing makes it;
output ``prob``, the softmax of loss3/classifier. The layers, their names and
parameters are BVLC's bvlc_googlenet deploy.prototxt's.
"""
import argparse
import collections
import json
import os
import sys

import numpy
from google.protobuf import text_format

import caffe_pb2
import googlenet_caffe
import tuned_googlenet
from googlenet_data import model_class_names
from googlenet_io import (CROP, MEAN_BGR, UserError, atomic_write,
                          check_output_path, check_writable, decoded,
                          one_per_line, report_errors, shown)

# bvlc_googlenet's deploy.prototxt. Caffe's LRN divides alpha by local_size,
# and so does ONNX's (onnx/docs/Operators.md, LRN): both take Caffe's value.
LRN = {'local_size': 5, 'alpha': 1e-4, 'beta': 0.75, 'k': 1.0}
# BVLC's deploy.prototxt declares a batch of 10 (the ten crops); Caffe and
# OpenCV reshape the input blob to whatever batch they are given.
DEPLOY_BATCH = 10
OPSET = 13
ONNX_IR_VERSION = 7  # the oldest IR that opset 13 allows: the most readers

Layer = collections.namedtuple('Layer',
                               'name type bottom top params link')
_BRANCHES = (('1x1', 'conv1'), ('3x3_reduce', 'proj3'), ('3x3', 'conv3'),
             ('5x5_reduce', 'proj5'), ('5x5', 'conv5'),
             ('pool_proj', 'projp'))


def _conv(name, bottom, link, relu_name):
    """A Convolution and its in-place ReLU, parameters read off the link."""
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
    return Layer(name, 'Pooling', [bottom], [name],
                 {'pool': method, 'kernel_size': kernel, 'stride': stride,
                  'pad': pad}, None)


def _lrn(name, bottom):
    return Layer(name, 'LRN', [bottom], [name], dict(LRN), None)


def _inner_product(name, bottom, link):
    return Layer(name, 'InnerProduct', [bottom], [name],
                 {'num_output': link.W.shape[0]}, link)


def _inception(stage, module, bottom):
    prefix = 'inception_{}/'.format(stage[3:])
    links = {branch: getattr(module, link) for branch, link in _BRANCHES}
    layers = []
    for branch in ('1x1', '3x3_reduce', '3x3', '5x5_reduce', '5x5'):
        source = {'3x3': prefix + '3x3_reduce',
                  '5x5': prefix + '5x5_reduce'}.get(branch, bottom)
        layers += _conv(prefix + branch, source, links[branch],
                        prefix + 'relu_' + branch)
    layers.append(_pool(prefix + 'pool', bottom, 'MAX', 3, 1, 1))
    layers += _conv(prefix + 'pool_proj', prefix + 'pool',
                    links['pool_proj'], prefix + 'relu_pool_proj')
    layers.append(Layer(prefix + 'output', 'Concat',
                        [prefix + b for b in ('1x1', '3x3', '5x5',
                                              'pool_proj')],
                        [prefix + 'output'], {'axis': 1}, None))
    return layers


def _aux_head(model, head, bottom):
    """loss1 or loss2 as in BVLC's train_val.prototxt, up to the classifier
    (the caffemodel keeps their weights; the deploy net has no aux heads)."""
    return ([_pool(head + '/ave_pool', bottom, 'AVE', 5, 3)]
            + _conv(head + '/conv', head + '/ave_pool',
                    getattr(model, head + '_conv'), head + '/relu_conv')
            + [_inner_product(head + '/fc', head + '/conv',
                              getattr(model, head + '_fc1')),
               Layer(head + '/relu_fc', 'ReLU', [head + '/fc'],
                     [head + '/fc'], {}, None),
               Layer(head + '/drop_fc', 'Dropout', [head + '/fc'],
                     [head + '/fc'], {'dropout_ratio': 0.7}, None),
               _inner_product(head + '/classifier', head + '/fc',
                              getattr(model, head + '_fc2'))])


def network_layers(model, aux=False):
    """GoogLeNet as Caffe layers, in the order they run: [Layer].

    Each Layer has Caffe's name, type, bottoms, tops (ReLU and Dropout in
    place, as BVLC's), the type's parameters and the Chainer link holding
    its weights (None if it has none). ``aux`` inserts the loss1 and loss2
    heads after inception_4a and inception_4d.
    """
    layers = [Layer('data', 'Input', [], ['data'],
                    {'shape': [DEPLOY_BATCH, 3, CROP, CROP]}, None)]
    layers += _conv('conv1/7x7_s2', 'data', model.conv1, 'conv1/relu_7x7')
    layers += [_pool('pool1/3x3_s2', 'conv1/7x7_s2', 'MAX', 3, 2),
               _lrn('pool1/norm1', 'pool1/3x3_s2')]
    layers += _conv('conv2/3x3_reduce', 'pool1/norm1', model.conv2_reduce,
                    'conv2/relu_3x3_reduce')
    layers += _conv('conv2/3x3', 'conv2/3x3_reduce', model.conv2,
                    'conv2/relu_3x3')
    layers += [_lrn('conv2/norm2', 'conv2/3x3'),
               _pool('pool2/3x3_s2', 'conv2/norm2', 'MAX', 3, 2)]
    bottom = 'pool2/3x3_s2'
    for stage in tuned_googlenet.INCEPTION:
        if stage in ('inc4a', 'inc5a'):
            pool = 'pool{}/3x3_s2'.format(int(stage[3]) - 1)
            layers.append(_pool(pool, bottom, 'MAX', 3, 2))
            bottom = pool
        layers += _inception(stage, getattr(model, stage), bottom)
        bottom = layers[-1].top[0]
        if aux and stage in tuned_googlenet.AUX_TAPS:
            layers += _aux_head(
                model, 'loss{}'.format(
                    tuned_googlenet.AUX_TAPS.index(stage) + 1), bottom)
    layers += [_pool('pool5/7x7_s1', bottom, 'AVE', 7, 1),
               Layer('pool5/drop_7x7_s1', 'Dropout', ['pool5/7x7_s1'],
                     ['pool5/7x7_s1'], {'dropout_ratio': 0.4}, None),
               _inner_product('loss3/classifier', 'pool5/7x7_s1',
                              model.loss3_fc),
               Layer('prob', 'Softmax', ['loss3/classifier'], ['prob'],
                     {'axis': 1}, None)]
    return layers


# --- Caffe ----------------------------------------------------------------

def caffe_net(model, aux, weights):
    """The network as a caffe_pb2.NetParameter (current ``layer`` format),
    with each parametrised layer's weights and bias as blobs if ``weights``."""
    net = caffe_pb2.NetParameter(name='GoogleNet')
    for spec in network_layers(model, aux):
        layer = net.layer.add(name=spec.name, type=spec.type)
        layer.bottom.extend(spec.bottom)
        layer.top.extend(spec.top)
        p = spec.params
        if spec.type == 'Input':
            layer.input_param.shape.add().dim.extend(p['shape'])
        elif spec.type == 'Convolution':
            c = layer.convolution_param
            c.num_output = p['num_output']
            c.kernel_size.append(p['kernel_size'])
            if p['stride'] != 1:
                c.stride.append(p['stride'])
            if p['pad']:
                c.pad.append(p['pad'])
        elif spec.type == 'Pooling':
            c = layer.pooling_param
            c.pool = caffe_pb2.PoolingParameter.PoolMethod.Value(p['pool'])
            c.kernel_size, c.stride = p['kernel_size'], p['stride']
            if p['pad']:
                c.pad = p['pad']
        elif spec.type == 'LRN':
            c = layer.lrn_param
            c.local_size, c.alpha, c.beta = (p['local_size'], p['alpha'],
                                             p['beta'])
        elif spec.type == 'Concat':
            layer.concat_param.axis = p['axis']
        elif spec.type == 'Dropout':
            layer.dropout_param.dropout_ratio = p['dropout_ratio']
        elif spec.type == 'InnerProduct':
            layer.inner_product_param.num_output = p['num_output']
        if weights and spec.link is not None:
            for param in (spec.link.W, spec.link.b):
                array = numpy.asarray(param.array, dtype=numpy.float32)
                blob = layer.blobs.add()
                blob.shape.dim.extend(array.shape)
                # A list converts about 4x faster than a numpy array.
                blob.data.extend(array.ravel().tolist())
    return net


# The first line of the deploy.prototxt export_caffe writes (a comment to
# Caffe's parser): what marks a folder as an earlier export's.
PROTOTXT_MARK = "# written by googlenet_chainer's export_googlenet.py\n"


def caffe_paths(folder, stem):
    return [os.path.join(folder, 'deploy.prototxt'),
            os.path.join(folder, stem + '.caffemodel'),
            os.path.join(folder, 'labels.txt')]


def check_caffe_folder(folder, stem):
    """Refuses (UserError) a --caffe folder that holds any of the files
    export_caffe writes unless its deploy.prototxt is an earlier export's:
    BVLC's own model folder has a deploy.prototxt and bvlc_googlenet.caffemodel,
    a user's folder a labels.txt."""
    if os.path.exists(folder) and not os.path.isdir(folder):
        raise UserError('--caffe {} is a file, not a folder'.format(
            shown(folder)))
    paths = caffe_paths(folder, stem)
    present = [path for path in paths if os.path.lexists(path)]
    if not present:
        return
    try:
        with open(paths[0], 'rb') as f:
            ours = f.read(len(PROTOTXT_MARK)) == PROTOTXT_MARK.encode()
    except OSError:
        ours = False
    if not ours:
        raise UserError('--caffe {}: {} exists and is not an earlier export '
                        'of this project (its deploy.prototxt is not '
                        'marked so): it is kept; choose another folder'
                        .format(shown(folder), shown(present[0])))


def export_caffe(model, folder, class_names, stem='googlenet'):
    """Writes FOLDER/deploy.prototxt (text format, the deploy net without
    weights, PROTOTXT_MARK first), FOLDER/STEM.caffemodel (binary, every
    layer with weights, the aux heads included) and FOLDER/labels.txt (one
    class per line), replacing only an earlier export (check_caffe_folder).
    Returns their paths."""
    check_caffe_folder(folder, stem)
    labels = one_per_line(class_names, 'class',
                          os.path.join(folder, 'labels.txt'))
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as e:
        raise UserError('cannot create {}: {}'.format(folder,
                                                      e.strerror or e))
    paths = caffe_paths(folder, stem)
    with atomic_write(paths[0], 'w') as f:
        f.write(PROTOTXT_MARK)
        f.write(text_format.MessageToString(caffe_net(model, False, False)))
    with atomic_write(paths[1]) as f:
        f.write(caffe_net(model, True, True).SerializeToString())
    with atomic_write(paths[2], 'w') as f:
        f.write(labels)
    return paths


# --- ONNX -----------------------------------------------------------------

def _onnx():
    try:
        import onnx
        from onnx import numpy_helper
    except ImportError:
        raise UserError('--onnx needs the onnx package: pip install -r '
                        'requirements-dev.txt')
    return onnx, numpy_helper


PRODUCER = 'googlenet_chainer'


def is_onnx_export(path):
    """Whether path holds an ONNX model this project exported (its
    producer_name): what --onnx may replace."""
    onnx, _ = _onnx()
    try:
        return onnx.load(path, load_external_data=False).producer_name == (
            PRODUCER)
    except Exception:  # not protobuf, not ONNX: not ours either way
        return False


def onnx_model(model, class_names):
    """The deploy network as an onnx.ModelProto (opset 13).

    Caffe's in-place layers become fresh ONNX values named after the layer;
    Dropout, an identity at inference, is left out; InnerProduct is Flatten
    then Gemm with the weights transposed (Caffe's and Chainer's W are
    out x in). The class names (JSON list), the mean and the channel order
    go into metadata_props.
    """
    onnx, numpy_helper = _onnx()
    helper = onnx.helper
    nodes, initializers, current = [], [], {}

    def value(blob):
        return current.get(blob, blob)

    for spec in network_layers(model):
        p = spec.params
        inputs = [value(b) for b in spec.bottom]
        output = spec.name
        if spec.link is not None:
            for suffix, param in (('_W', spec.link.W), ('_b', spec.link.b)):
                initializers.append(numpy_helper.from_array(
                    numpy.asarray(param.array, numpy.float32),
                    spec.name + suffix))
        weights = [spec.name + '_W', spec.name + '_b']
        if spec.type == 'Input':
            continue
        if spec.type == 'Convolution':
            k, s, pad = p['kernel_size'], p['stride'], p['pad']
            nodes.append(helper.make_node(
                'Conv', inputs + weights, [output], name=spec.name,
                kernel_shape=[k, k], strides=[s, s], pads=[pad] * 4))
        elif spec.type == 'ReLU':
            nodes.append(helper.make_node('Relu', inputs, [output],
                                          name=spec.name))
        elif spec.type == 'Pooling':
            k, s, pad = p['kernel_size'], p['stride'], p['pad']
            # Caffe rounds the output size up.
            nodes.append(helper.make_node(
                'MaxPool' if p['pool'] == 'MAX' else 'AveragePool', inputs,
                [output], name=spec.name, kernel_shape=[k, k],
                strides=[s, s], pads=[pad] * 4, ceil_mode=1))
        elif spec.type == 'LRN':
            nodes.append(helper.make_node(
                'LRN', inputs, [output], name=spec.name,
                size=p['local_size'], alpha=p['alpha'], beta=p['beta'],
                bias=p['k']))
        elif spec.type == 'Concat':
            nodes.append(helper.make_node('Concat', inputs, [output],
                                          name=spec.name, axis=p['axis']))
        elif spec.type == 'Dropout':
            continue
        elif spec.type == 'InnerProduct':
            flat = spec.name + '_flatten'
            nodes += [helper.make_node('Flatten', inputs, [flat],
                                       name=flat, axis=1),
                      helper.make_node('Gemm', [flat] + weights, [output],
                                       name=spec.name, transB=1)]
        elif spec.type == 'Softmax':
            nodes.append(helper.make_node('Softmax', inputs, [output],
                                          name=spec.name, axis=p['axis']))
        else:
            raise ValueError('no ONNX form for a {} layer'.format(spec.type))
        current[spec.top[0]] = output
    graph = helper.make_graph(
        nodes, 'googlenet',
        [helper.make_tensor_value_info('data', onnx.TensorProto.FLOAT,
                                       ['N', 3, CROP, CROP])],
        [helper.make_tensor_value_info('prob', onnx.TensorProto.FLOAT,
                                       ['N', model.n_classes])],
        initializers)
    result = helper.make_model(
        graph, producer_name=PRODUCER,
        opset_imports=[helper.make_opsetid('', OPSET)],
        ir_version=ONNX_IR_VERSION,
        doc_string='BVLC GoogLeNet, fine-tuned in Chainer. Input: float32 '
        'N x 3 x 224 x 224, BGR, minus mean_bgr (Caffe\'s reference '
        'preprocessing: resize to 256x256, centre 224 crop). Output: class '
        'probabilities, N x classes.')
    helper.set_model_props(result, {
        'class_names': json.dumps(list(class_names)),
        'mean_bgr': json.dumps([float(v) for v in MEAN_BGR]),
        'channel_order': 'BGR',
        'input_size': '{0}x{0}'.format(CROP),
    })
    return result


def export_onnx(model, path, class_names):
    """Writes the checked ONNX model to path, atomically."""
    onnx, _ = _onnx()
    proto = onnx_model(model, class_names)
    onnx.checker.check_model(proto)
    with atomic_write(path) as f:
        f.write(proto.SerializeToString())
    return path


def export(args):
    if not (args.onnx or args.caffe):
        raise UserError('nothing to do: give --onnx FILE and/or --caffe DIR')
    args.model = googlenet_caffe.model_or_default(args.model)
    if args.onnx:
        check_output_path(args.onnx, [args.model], '--onnx', kind=(
            is_onnx_export, 'an ONNX model this project exported'))
        check_writable(os.path.dirname(os.path.abspath(args.onnx)),
                       '--onnx')
    stem = os.path.splitext(os.path.basename(args.model))[0]
    if args.caffe:
        check_caffe_folder(args.caffe, stem)
        if not os.path.exists(args.caffe):  # made, its last level only
            check_writable(os.path.dirname(os.path.abspath(args.caffe)),
                           '--caffe')
    # load_model refuses a model with NaN or infinite weights.
    model, stored = tuned_googlenet.load_model(args.model, classify=True)
    names = [decoded(name) for name in
             model_class_names(model.n_classes, args.labels, stored)]
    if args.caffe:  # before anything is written (export_caffe checks too)
        one_per_line(names, 'class', os.path.join(args.caffe, 'labels.txt'))
    if args.onnx:
        print('wrote {}'.format(export_onnx(model, args.onnx, names)))
    if args.caffe:
        for path in export_caffe(model, args.caffe, names, stem):
            print('wrote {}'.format(path))


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    googlenet_caffe.add_model_option(parser)
    parser.add_argument('--labels', help='class names, one per line '
                        '(default: those stored with the model)')
    parser.add_argument('--onnx', metavar='FILE',
                        help='write the deploy network as ONNX (opset {})'
                        .format(OPSET))
    parser.add_argument('--caffe', metavar='DIR',
                        help='write deploy.prototxt, a caffemodel and '
                        'labels.txt into DIR')
    return parser


def main(argv=None):
    return report_errors(export, build_parser().parse_args(argv))


if __name__ == '__main__':
    sys.exit(main())
