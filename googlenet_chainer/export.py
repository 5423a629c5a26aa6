"""The deploy network written for other toolkits: Caffe and ONNX."""
import json
import os

import numpy
from google.protobuf import text_format

import caffe_pb2
from googlenet_chainer.caffe_layers import network_layers
from googlenet_chainer.console import shown
from googlenet_chainer.errors import UserError
from googlenet_chainer.files import (atomic_write, check_name_fits,
                                     check_out_folder, make_out_folder)
from googlenet_chainer.images import CENTER, CROP, MEAN_BGR, RESIZE
from googlenet_chainer.labels import one_per_line

OPSET = 13
ONNX_IR_VERSION = 7  # the oldest IR that opset 13 allows: the most readers


def caffe_net(model, aux, weights):
    """The network as a caffe_pb2.NetParameter, Caffe's own message.

    Args:
        model: a tuned_googlenet.GoogLeNet.
        aux: include the loss1 and loss2 heads (caffe_layers.network_layers).
        weights: include each parametrised layer's weights and bias as
            blobs (float32, in the links' shapes).

    Returns:
        The NetParameter named GoogleNet, in the current ``layer`` format.
    """
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
    """The files export_caffe writes into folder, in its order:
    deploy.prototxt, STEM.caffemodel and labels.txt."""
    return [os.path.join(folder, 'deploy.prototxt'),
            os.path.join(folder, stem + '.caffemodel'),
            os.path.join(folder, 'labels.txt')]


def check_caffe_folder(folder, stem):
    """Refuses a --caffe folder whose files an export would wrongly replace.

    A folder that holds any of the files export_caffe writes is refused
    unless its deploy.prototxt is an earlier export's (PROTOTXT_MARK):
    BVLC's own model folder has a deploy.prototxt and
    bvlc_googlenet.caffemodel, a user's folder a labels.txt.

    Args:
        folder: --caffe's folder.
        stem: the name of the caffemodel to write, without .caffemodel.

    Raises:
        UserError: the folder holds such a file, is a file, or cannot be
            written (files.check_out_folder).
    """
    check_out_folder(folder, '--caffe')
    paths = caffe_paths(folder, stem)
    for path in paths:
        check_name_fits(path, '--caffe')
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
    """Writes the network for Caffe into folder, made if need be.

    FOLDER/deploy.prototxt (text format, the deploy net without weights,
    PROTOTXT_MARK first), FOLDER/STEM.caffemodel (binary, every layer with
    weights, the aux heads included) and FOLDER/labels.txt (one class per
    line), each atomically, replacing only an earlier export
    (check_caffe_folder).

    Args:
        model: a tuned_googlenet.GoogLeNet.
        folder: the output folder (--caffe).
        class_names: the class names, in class order.
        stem: the caffemodel's name, without .caffemodel.

    Returns:
        The three paths, in the order above.

    Raises:
        UserError: check_caffe_folder refuses the folder, it cannot be
            made, or a class name holds a line break.
    """
    check_caffe_folder(folder, stem)
    labels = one_per_line(class_names, 'class',
                          os.path.join(folder, 'labels.txt'))
    make_out_folder(folder, '--caffe')
    paths = caffe_paths(folder, stem)
    with atomic_write(paths[0], 'w') as f:
        f.write(PROTOTXT_MARK)
        f.write(text_format.MessageToString(caffe_net(model, False, False)))
    with atomic_write(paths[1]) as f:
        f.write(caffe_net(model, True, True).SerializeToString())
    with atomic_write(paths[2], 'w') as f:
        f.write(labels)
    return paths


def _onnx():
    """The onnx package and its numpy_helper, imported only when asked for:
    a UserError saying how to install it where it is missing."""
    try:
        import onnx
        from onnx import numpy_helper
    except ImportError:
        raise UserError('--onnx needs the onnx package: pip install -r '
                        'requirements-dev.txt')
    return onnx, numpy_helper


PRODUCER = 'googlenet_chainer'


def is_onnx_export(path):
    """Whether path holds an ONNX model this project exported.

    ONNX_KIND's test: what --onnx may replace.

    Args:
        path: any existing file.

    Returns:
        True when path loads as an ONNX model whose producer_name is
        PRODUCER; False for anything else.

    Raises:
        UserError: the onnx package is missing.
    """
    onnx, _ = _onnx()
    try:
        return onnx.load(path, load_external_data=False).producer_name == (
            PRODUCER)
    except Exception:  # not protobuf, not ONNX: not ours either way
        return False


# check_output_path's kind for --onnx: an existing file is replaced only if
# it is an earlier export.
ONNX_KIND = (is_onnx_export, 'an ONNX model this project exported')


def onnx_model(model, class_names):
    """The deploy network as an ONNX model.

    Caffe's in-place layers become fresh ONNX values named after the layer;
    Dropout, an identity at inference, is left out; InnerProduct is Flatten
    then Gemm with the weights transposed (Caffe's and Chainer's W are
    out x in).

    Args:
        model: a tuned_googlenet.GoogLeNet.
        class_names: its class names, in class order.

    Returns:
        onnx.ModelProto of opset OPSET: input ``data`` (float32 N x 3 x 224
        x 224, BGR minus the mean), output ``prob`` (N x classes); the class
        names (a JSON list) and the whole preprocessing
        (preprocessing_props) in metadata_props.

    Raises:
        UserError: the onnx package is missing.
    """
    onnx, numpy_helper = _onnx()
    helper = onnx.helper
    nodes, initializers, current = [], [], {}
    for spec in network_layers(model):
        if spec.link is not None:
            for suffix, param in (('_W', spec.link.W), ('_b', spec.link.b)):
                initializers.append(numpy_helper.from_array(
                    numpy.asarray(param.array, numpy.float32),
                    spec.name + suffix))
        if spec.type in ('Input', 'Dropout'):
            continue
        nodes += _onnx_nodes(helper, spec,
                             [current.get(b, b) for b in spec.bottom])
        current[spec.top[0]] = spec.name
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
        'N x 3 x 224 x 224 as metadata_props["preprocessing"] says. '
        'Output: class probabilities, N x classes.')
    helper.set_model_props(result, dict(
        preprocessing_props(), class_names=json.dumps(list(class_names))))
    return result


def preprocessing_props():
    """The input's whole preprocessing, as ONNX metadata_props.

    Caffe's reference preprocessing (images.preprocess): an input made
    otherwise (RGB, normalised by ImageNet's std, resized to 224 keeping
    the aspect ratio) gets wrong classes without any error, so a user of
    another toolkit needs every step.

    Returns:
        {key: str}: 'resize' (WIDTHxHEIGHT, the aspect ratio not kept),
        'resize_interpolation', 'crop' (centre, WIDTHxHEIGHT), 'crop_box'
        (left, top, right, bottom in the resized image), 'channel_order',
        'mean_bgr' (a JSON list, subtracted from 0..255 values),
        'pixel_range', 'layout', 'input_size', and 'preprocessing': the
        steps in words.
    """
    resize = '{0}x{0}'.format(RESIZE)
    return {
        'resize': resize,
        'resize_interpolation': 'bilinear',
        'crop': 'centre {0}x{0}'.format(CROP),
        'crop_box': json.dumps([CENTER, CENTER, CENTER + CROP,
                                CENTER + CROP]),
        'channel_order': 'BGR',
        'mean_bgr': json.dumps([float(v) for v in MEAN_BGR]),
        'pixel_range': '0-255',
        'layout': 'NCHW',
        'input_size': '{0}x{0}'.format(CROP),
        'preprocessing': 'decode to RGB (EXIF orientation applied, alpha '
        'dropped); resize to {} bilinearly (Pillow\'s Image.BILINEAR), the '
        'aspect ratio not kept; crop the centre {}x{} (crop_box); reorder '
        'the channels to BGR; subtract mean_bgr from the 0-255 values (no '
        'scaling to 0-1, no division by a std); transpose to CHW, float32'
        .format(resize, CROP, CROP),
    }


def _onnx_nodes(helper, spec, inputs):
    """The ONNX nodes of one Caffe layer (caffe_layers.Layer), reading
    ``inputs`` and writing a value named after the layer."""
    p, output, name = spec.params, [spec.name], spec.name
    weights = [name + '_W', name + '_b']
    if spec.type == 'Convolution':
        k, s, pad = p['kernel_size'], p['stride'], p['pad']
        return [helper.make_node(
            'Conv', inputs + weights, output, name=name,
            kernel_shape=[k, k], strides=[s, s], pads=[pad] * 4)]
    if spec.type == 'ReLU':
        return [helper.make_node('Relu', inputs, output, name=name)]
    if spec.type == 'Pooling':
        k, s, pad = p['kernel_size'], p['stride'], p['pad']
        # Caffe rounds the output size up.
        return [helper.make_node(
            'MaxPool' if p['pool'] == 'MAX' else 'AveragePool', inputs,
            output, name=name, kernel_shape=[k, k], strides=[s, s],
            pads=[pad] * 4, ceil_mode=1)]
    if spec.type == 'LRN':
        return [helper.make_node(
            'LRN', inputs, output, name=name, size=p['local_size'],
            alpha=p['alpha'], beta=p['beta'], bias=p['k'])]
    if spec.type == 'Concat':
        return [helper.make_node('Concat', inputs, output, name=name,
                                 axis=p['axis'])]
    if spec.type == 'InnerProduct':
        flat = name + '_flatten'
        return [helper.make_node('Flatten', inputs, [flat], name=flat,
                                 axis=1),
                helper.make_node('Gemm', [flat] + weights, output, name=name,
                                 transB=1)]
    if spec.type == 'Softmax':
        return [helper.make_node('Softmax', inputs, output, name=name,
                                 axis=p['axis'])]
    raise ValueError('no ONNX form for a {} layer'.format(spec.type))


def export_onnx(model, path, class_names):
    """Writes the checked ONNX model to path, atomically.

    Args:
        model: a tuned_googlenet.GoogLeNet.
        path: the .onnx file to write (--onnx).
        class_names: the class names, in class order.

    Returns:
        path.

    Raises:
        UserError: the onnx package is missing.
    """
    onnx, _ = _onnx()
    proto = onnx_model(model, class_names)
    onnx.checker.check_model(proto)
    with atomic_write(path) as f:
        f.write(proto.SerializeToString())
    return path
