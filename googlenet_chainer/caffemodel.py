"""Reading a caffemodel and copying its weights into the Chain.

Reads the old (V1, ``layers``) and the current (``layer``) format with this
project's own caffe_pb2, copies every trunk parameter exactly and each head
whose shape matches.
"""
import math
import os
import stat

import numpy

import tuned_googlenet
from googlenet_chainer.caffe_layers import LAYER_MAP, link_of
from googlenet_chainer.errors import UserError, one_line
from googlenet_chainer.files import check_output_path, file_sha1
from googlenet_chainer.model_file import MODEL_KIND, save_model


def read_caffemodel(path):
    """Returns {layer name: [float32 arrays]} of the layers with blobs.

    Args:
        path: a caffemodel; the arrays keep the shapes it declares
            (BlobShape, else the legacy num, channels, height, width).

    Raises:
        UserError: path is not a regular file, not a caffemodel or cut
            short, holds ``layer`` and ``layers`` both (Caffe refuses that
            too), two layers of one name with weights, or NaN or infinity.
    """
    try:  # O_NONBLOCK: opening a FIFO must not wait for a writer.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except FileNotFoundError:
        raise UserError('caffemodel not found: {}'.format(path))
    except OSError as e:
        raise UserError('cannot read {}: {}'.format(path, e.strerror or e))
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        if stat.S_ISDIR(mode):
            raise UserError('{} is a folder, not a caffemodel'.format(path))
        raise UserError('{} is not a regular file (a FIFO, device or '
                        'socket), not a caffemodel'.format(path))
    with os.fdopen(fd, 'rb') as f:
        try:
            data = f.read()
        except OSError as e:
            raise UserError('cannot read {}: {}'.format(
                path, e.strerror or e))
    if not data:
        raise UserError('{} is empty, not a caffemodel'.format(path))
    # Imported here (30 ms): prediction from a model reads no caffemodel.
    from google.protobuf.message import DecodeError
    import caffe_pb2
    net = caffe_pb2.NetParameter()
    try:
        net.ParseFromString(data)
    except (DecodeError, RuntimeError) as e:
        raise UserError('{} is not a caffemodel, or it is truncated ({})'
                        .format(path, one_line(e)))
    if len(net.layer) and len(net.layers):
        raise UserError('{} holds both layer and layers (the current and the '
                        'V1 format), as Caffe refuses too'.format(path))
    layers = net.layer if len(net.layer) else net.layers
    blobs = {}
    for layer in layers:
        if not len(layer.blobs):
            continue
        if layer.name in blobs:  # Caffe would copy the last one silently
            raise UserError('{} holds two layers named {} with weights: '
                            'which one is meant cannot be told'.format(
                                path, layer.name))
        blobs[layer.name] = [_blob_array(path, layer.name, i, blob)
                             for i, blob in enumerate(layer.blobs)]
    if not blobs:
        raise UserError('{} holds no layers with weights: not a caffemodel'
                        .format(path))
    return blobs


def _blob_array(path, layer, index, blob):
    """Blob ``index`` of a layer as a float32 array of its declared shape;
    a UserError naming the layer where the values do not fill that shape
    or are not finite."""
    if blob.HasField('shape'):
        shape = tuple(blob.shape.dim)
    else:
        shape = (blob.num, blob.channels, blob.height, blob.width)
    values = blob.data if len(blob.data) else blob.double_data
    array = numpy.array(values, dtype=numpy.float32)
    # math.prod on Python ints: numpy's int64 product wraps around, and a
    # wrapped product could even equal the number of values.
    if (any(d < 0 for d in shape) or len(shape) > 32
            or array.size != math.prod(shape)):
        raise UserError('{} is truncated or corrupt: blob {} of layer {} '
                        'holds {} values for shape {}'.format(
                            path, index, layer, array.size, shape))
    if not numpy.isfinite(array).all():
        raise UserError('{}: blob {} of layer {} holds NaN or infinite '
                        'values'.format(path, index, layer))
    return array.reshape(shape)


def _fit(array, shape):
    """The array in the parameter's shape, dropping legacy leading 1-dims."""
    while array.ndim > len(shape) and array.shape[0] == 1:
        array = array[0]
    return array if array.shape == tuple(shape) else None


def transfer(blobs, model, fresh_heads=False, required_heads=(),
             log=print):
    """Copies the caffemodel's blobs into model, layer by layer.

    Every trunk layer must fit exactly; a head that is missing or of
    another shape stays freshly initialised, unless it is required. Legacy
    leading 1-dimensions (a V1 bias of 1 x 1 x 1 x N) are dropped to fit.

    Args:
        blobs: read_caffemodel's {layer name: [arrays]}.
        model: a tuned_googlenet.GoogLeNet, its parameters initialised.
        fresh_heads: leave every head fresh, even where the pretrained one
            fits (--fresh-heads); required_heads is not checked then.
        required_heads: link names of heads that must be copied.
        log: called with one line per layer of LAYER_MAP, saying what was
            done with it.

    Returns:
        (trunk layers copied, heads copied, heads left fresh), each a list
        of link names.

    Raises:
        UserError: a trunk layer, or a required head, is missing from the
            caffemodel or cannot be copied (naming the Caffe layer and
            why).
    """
    trunk, copied, fresh = [], [], []
    for caffe_name, link_path in LAYER_MAP.items():
        link = link_of(model, caffe_name)
        is_head = link_path in tuned_googlenet.HEADS
        if is_head and fresh_heads:
            log('{:22s} -> {:14s} left fresh (--fresh-heads)'.format(
                caffe_name, link_path))
            fresh.append(link_path)
            continue
        arrays = blobs.get(caffe_name)
        problem = _mismatch(arrays, link)
        if problem and not is_head:
            raise UserError('trunk layer {} {}'.format(caffe_name, problem))
        if problem and link_path in required_heads:
            raise UserError('head layer {} {}, so it cannot be copied; '
                            'a {}-class model for prediction needs it'.format(
                                caffe_name, problem, model.n_classes))
        if problem:
            log('{:22s} -> {:14s} left fresh: {}'.format(
                caffe_name, link_path, problem))
            fresh.append(link_path)
            continue
        link.W.array[...] = _fit(arrays[0], link.W.shape)
        link.b.array[...] = _fit(arrays[1], link.b.shape)
        log('{:22s} -> {:14s} copied W{} b{}'.format(
            caffe_name, link_path, link.W.shape, link.b.shape))
        (copied if is_head else trunk).append(link_path)
    return trunk, copied, fresh


def _mismatch(arrays, link):
    """Why arrays (a layer's blobs, or None) cannot be copied into link's W
    and b, or None when they can."""
    if arrays is None:
        return 'is missing from the caffemodel'
    if len(arrays) != 2:
        return 'has {} blobs, expected weights and bias'.format(len(arrays))
    for array, param in zip(arrays, (link.W, link.b)):
        if _fit(array, param.shape) is None:
            return 'has shape {}, the model needs {}'.format(
                array.shape, param.shape)
    return None


def convert(caffemodel, output, n_classes=None, fresh_heads=False,
            required_heads=(), log=print, seed=0):
    """Reads caffemodel, builds the Chain, copies what fits, saves output.

    The heads left fresh are saved as untrained (save_model), so that a
    model whose loss3/classifier was never trained is not used to
    classify.

    Args:
        caffemodel: the caffemodel's path.
        output: the model file to write.
        n_classes: classes of the replaced heads; None for N_CLASSES.
        fresh_heads: leave every head fresh (transfer).
        required_heads: link names of heads that must be copied (transfer).
        log: called with each line of the report: one per layer, then a
            summary line.
        seed: the seed of the fresh heads' initial weights (Chainer's
            initializers draw from numpy's global generator, which this
            seeds), so that the same command makes the same model; None
            leaves them to chance.

    Returns:
        The tuned_googlenet.GoogLeNet that was saved.

    Raises:
        UserError: output is the caffemodel, is not a regular file, or is
            an existing file that is not a model this project wrote; the
            caffemodel cannot be read (read_caffemodel); n_classes is out
            of range; or a trunk layer or required head cannot be copied
            (transfer).
    """
    check_output_path(output, [caffemodel],
                      kind=MODEL_KIND)
    blobs = read_caffemodel(caffemodel)
    if seed is not None:
        numpy.random.seed(seed)
    model = tuned_googlenet.GoogLeNet(n_classes)
    trunk, copied, fresh = transfer(blobs, model, fresh_heads=fresh_heads,
                                    required_heads=required_heads, log=log)
    save_model(output, model, untrained=fresh,
               source=caffemodel_fingerprint(caffemodel))
    log('saved {} ({} classes): {} trunk layers copied, {} heads copied, '
        '{} heads left fresh{}'.format(
            output, model.n_classes, len(trunk), len(copied), len(fresh),
            ' ({})'.format(', '.join(fresh)) if fresh else ''))
    return model


def caffemodel_fingerprint(path):
    """What identifies a caffemodel's content, for a model converted from it
    (model_file.save_model's ``source``).

    Args:
        path: the caffemodel.

    Returns:
        {'caffemodel': its absolute path, 'sha1': its content's sha1,
        'stat': [device, inode, size, mtime_ns, ctime_ns]}: while the stat
        is the same the content is (a write changes the ctime, which no
        user can set), so a check needs no hashing.
    """
    return {'caffemodel': os.path.abspath(path),
            'sha1': file_sha1(path).hexdigest(), 'stat': file_stat(path)}


def file_stat(path):
    """[device, inode, size, mtime_ns, ctime_ns] of path."""
    info = os.stat(path)
    return [info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns,
            info.st_ctime_ns]
