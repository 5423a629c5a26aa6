"""bvlc_googlenet.caffemodel into the GoogLeNet Chain: what the scripts share.

Reads the old (V1, ``layers``) and the current (``layer``) caffemodel format
with this project's own caffe_pb2, maps BVLC's layer names onto the Chain's
links, copies every trunk parameter exactly and each head whose shape
matches, and fetches BVLC's file (resumable, sha1-verified, locked). The
caffemodel's default home is Chainer's model folder
($CHAINER_DATASET_ROOT/pfnet/chainer/models, ~/.chainer/dataset/... unless
set), where googlenet_predict.py keeps its model too. convert_caffe_model.py
is the command line over it.
"""
import functools
import math
import os
import stat
import sys

import numpy

from chainer_compat import chainer

import tuned_googlenet
from googlenet_io import (UserError, Unreachable, check_output_path,
                          check_sha1, download_file, make_once, one_line)

CAFFEMODEL_URL = ('http://dl.caffe.berkeleyvision.org/'
                  'bvlc_googlenet.caffemodel')
CAFFEMODEL_SHA1 = '405fc5acd08a3bb12de8ee5e23a96bec22f08204'
CAFFEMODEL_NAME = 'bvlc_googlenet.caffemodel'
# The 1000-class model googlenet_predict.py's first run converts from it.
MODEL_NAME = 'googlenet.model'
MODEL_DIRECTORY = 'pfnet/chainer/models'

_INCEPTION_BRANCHES = (('1x1', 'conv1'), ('3x3_reduce', 'proj3'),
                       ('3x3', 'conv3'), ('5x5_reduce', 'proj5'),
                       ('5x5', 'conv5'), ('pool_proj', 'projp'))


def _layer_map():
    """Caffe layer name -> link path in the Chain, trunk first."""
    names = {'conv1/7x7_s2': 'conv1', 'conv2/3x3_reduce': 'conv2_reduce',
             'conv2/3x3': 'conv2'}
    for stage in tuned_googlenet.INCEPTION:
        for caffe_branch, link in _INCEPTION_BRANCHES:
            names['inception_{}/{}'.format(stage[3:], caffe_branch)] = (
                '{}/{}'.format(stage, link))
    for head in ('loss1', 'loss2'):
        names[head + '/conv'] = head + '_conv'
        names[head + '/fc'] = head + '_fc1'
        names[head + '/classifier'] = head + '_fc2'
    names['loss3/classifier'] = 'loss3_fc'
    return names


LAYER_MAP = _layer_map()


def read_caffemodel(path):
    """Returns {layer name: [arrays]} of the layers that carry blobs.

    Arrays keep the shape the file declares: BlobShape where present, else
    the legacy (num, channels, height, width). Raises UserError for a file
    that is not a regular file, not a caffemodel, truncated, holds both
    ``layer`` and ``layers`` (Caffe's UpgradeNetAsNeeded refuses that too),
    or holds NaN or infinite values (naming the layer).
    """
    try:
        # O_NONBLOCK: opening a FIFO must not wait for a writer.
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
    # Imported here: protobuf and caffe_pb2 take 30 ms of every start-up,
    # and prediction with an existing model never reads a caffemodel.
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
    """Copies the caffemodel's blobs into model; returns what it did.

    Trunk problems are errors; a head that is missing or of another shape
    stays freshly initialised, unless it is in ``required_heads`` (link
    names), which raises UserError naming the Caffe layer. Returns
    (trunk layers copied, heads copied, heads left fresh) as lists of link
    names.
    """
    trunk, copied, fresh = [], [], []
    for caffe_name, link_path in LAYER_MAP.items():
        link = functools.reduce(getattr, link_path.split('/'), model)
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
    if arrays is None:
        return 'is missing from the caffemodel'
    if len(arrays) != 2:
        return 'has {} blobs, expected weights and bias'.format(len(arrays))
    for array, param in zip(arrays, (link.W, link.b)):
        if _fit(array, param.shape) is None:
            return 'has shape {}, the model needs {}'.format(
                array.shape, param.shape)
    return None


def default_caffemodel():
    """Where the caffemodel is kept by default: the folder Chainer keeps its
    downloaded models in (chainer.dataset.get_dataset_directory, under
    CHAINER_DATASET_ROOT, by default ~/.chainer/dataset), created if need be.
    """
    return os.path.join(model_directory(), CAFFEMODEL_NAME)


def default_model():
    """The first run's 1000-class model, beside the caffemodel in Chainer's
    model folder (see default_caffemodel)."""
    return os.path.join(model_directory(), MODEL_NAME)


def add_model_option(parser):
    """--model as evaluation and export take it: None (model_or_default)
    stands for the model googlenet_predict.py's first run makes."""
    parser.add_argument('--model', default=None,
                        help='a model this project wrote (default: {} in '
                        'Chainer\'s model folder, which '
                        'googlenet_predict.py\'s first run makes)'.format(
                            MODEL_NAME))


def model_or_default(path):
    """path, or default_model() when it is None: UserError if that one is
    not there yet, saying what makes it."""
    if path is not None:
        return path
    path = default_model()
    if not os.path.exists(path):
        raise UserError('no model at {}, the default: googlenet_predict.py '
                        'makes it on its first run; or pass --model'.format(
                            path))
    return path


def model_directory():
    """Chainer's folder of downloaded models ('pfnet/chainer/models' under
    the dataset root, where chainer.links.GoogLeNet keeps its own)."""
    try:
        return chainer.dataset.get_dataset_directory(MODEL_DIRECTORY)
    except OSError as e:
        raise UserError('cannot create Chainer\'s model folder under {} '
                        '(set CHAINER_DATASET_ROOT): {}'.format(
                            chainer.dataset.get_dataset_root(),
                            e.strerror or e))


def resolve_source(url=None, sha1=None):
    """The download URL and sha1: option, then environment, then BVLC's.

    A malformed sha1 is refused (naming where it came from) before anything
    is downloaded.
    """
    url = url or os.environ.get('GOOGLENET_CAFFEMODEL_URL') or CAFFEMODEL_URL
    if sha1:
        sha1 = check_sha1(sha1, '--sha1')
    elif os.environ.get('GOOGLENET_CAFFEMODEL_SHA1'):
        sha1 = check_sha1(os.environ['GOOGLENET_CAFFEMODEL_SHA1'],
                          'GOOGLENET_CAFFEMODEL_SHA1')
    else:
        sha1 = CAFFEMODEL_SHA1
    return url, sha1


def ensure_caffemodel(path, url=None, sha1=None):
    """Downloads the caffemodel to path unless it is there (resumable,
    verified), holding path's lock so that concurrent runs download once."""
    url, sha1 = resolve_source(url, sha1)
    make_once(path, lambda: _download(url, path, sha1), 'downloaded')


def _download(url, path, sha1):
    print('downloading {} to {}'.format(url, path), file=sys.stderr)
    try:
        download_file(url, path, sha1=sha1)
    except Unreachable as e:
        raise UserError(
            '{}. Three ways out: put a copy of bvlc_googlenet.caffemodel '
            '(sha1 {}) at {}; or pass --caffemodel PATH of a copy; or set '
            'GOOGLENET_CAFFEMODEL_URL to a mirror (and '
            'GOOGLENET_CAFFEMODEL_SHA1 to its sha1)'.format(
                e, sha1, os.path.abspath(path)))
    except UserError as e:
        raise UserError('downloading {}: {}'.format(url, e))


def convert(caffemodel, output, n_classes=None, fresh_heads=False,
            required_heads=(), log=print, seed=None):
    """Reads caffemodel, builds the Chain, copies what fits, saves output.

    Ends the log with a summary line; refuses (UserError) an output that is
    the caffemodel or not a regular file, and a required head left fresh.
    ``seed`` seeds the fresh heads' initial weights (Chainer's initializers
    draw from numpy's global generator); None leaves them to chance.
    """
    check_output_path(output, [caffemodel],
                      kind=tuned_googlenet.MODEL_KIND)
    blobs = read_caffemodel(caffemodel)
    if seed is not None:
        numpy.random.seed(seed)
    model = tuned_googlenet.GoogLeNet(n_classes)
    trunk, copied, fresh = transfer(blobs, model, fresh_heads=fresh_heads,
                                    required_heads=required_heads, log=log)
    tuned_googlenet.save_model(output, model, untrained=fresh)
    log('saved {} ({} classes): {} trunk layers copied, {} heads copied, '
        '{} heads left fresh{}'.format(
            output, model.n_classes, len(trunk), len(copied), len(fresh),
            ' ({})'.format(', '.join(fresh)) if fresh else ''))
    return model
