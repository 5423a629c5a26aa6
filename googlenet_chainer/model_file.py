"""A model file this project writes: the Chain's arrays, its class names, the
heads never trained; read back fast and refused when it cannot be trusted."""
import hashlib
import json
import os
import re
import struct
import zipfile
import zlib

import numpy

from googlenet_chainer.compat import chainer
from googlenet_chainer.errors import UserError, one_line
from googlenet_chainer.files import atomic_write, read_npy_header, save_npz
from tuned_googlenet import DEFAULT_FREEZE_UNTIL, GoogLeNet


# How a caffemodel, a NetParameter, begins: with its name (field 1, a
# short text), its V1 layers (field 2) or its layers (field 100), each a
# length-delimited field.
_CAFFEMODEL_START = re.compile(b'\x0a[\x01-\x7f][\x20-\x7e]|\x12|\xa2\x06')


def save_model(path, model, class_names=None, untrained=(), source=None):
    """Writes the model's parameters (and its class names) atomically.

    The names of the heads that were never trained go with them, so that
    load_model can refuse to classify with a random loss3/classifier, and
    what the weights were converted from (model_source), so that a cached
    conversion can be told from another caffemodel's.

    Args:
        path: the file to write (an uncompressed .npz, whatever its name).
        model: a tuned_googlenet.GoogLeNet.
        class_names: None, or its class names in class order.
        untrained: link names of the heads never trained (the converter's
            fresh heads, such as ``loss3_fc``).
        source: a JSON-ready dict of where the weights came from
            (caffemodel.convert's); by default the model's own ``source``,
            as load_model read it.
    """
    serializer = chainer.serializers.DictionarySerializer()
    serializer.save(model)
    arrays = dict(serializer.target)
    if class_names is not None:
        arrays['class_names'] = numpy.array(list(class_names), dtype=str)
    if untrained:
        arrays['untrained_heads'] = numpy.array(list(untrained), dtype=str)
    source = source if source is not None else getattr(model, 'source', None)
    if source is not None:
        arrays['source'] = numpy.array(json.dumps(source, sort_keys=True))
    with atomic_write(path) as f:
        save_npz(f, arrays)


def is_model_file(path):
    """Whether path is a model file, as save_model writes one.

    Reads the zip's directory only: MODEL_KIND's test of an existing output
    before it is replaced.

    Args:
        path: any file.

    Returns:
        True when path is a zip holding loss3_fc/W.npy; False for anything
        else, an unreadable file included.
    """
    return 'loss3_fc/W.npy' in _member_names(path)


def _member_names(path):
    """The names in a zip's directory; () for a file that is no zip or
    cannot be read."""
    try:
        with zipfile.ZipFile(path) as archive:
            return archive.namelist()
    except (OSError, zipfile.BadZipFile):
        return ()


# check_output_path's kind for training's --output: an existing file is
# replaced only if it is a model.
MODEL_KIND = (is_model_file, 'a model this project wrote')


def is_conversion(path):
    """Whether path is a model convert_caffe_model.py wrote: a model file
    (is_model_file) without the class names training stores.

    Args:
        path: any file.

    Returns:
        bool; False for anything unreadable.
    """
    names = _member_names(path)
    return 'loss3_fc/W.npy' in names and 'class_names.npy' not in names


# What the converter may replace: not a fine-tuned model, whose trained
# heads a conversion's fresh ones would take the place of.
CONVERSION_KIND = (is_conversion, 'an earlier conversion (a fine-tuned '
                   'model, which stores its class names, is kept)')


def read_npz(path):
    """The arrays of an .npz file, as numpy.load(path) would give them.

    A member stored uncompressed (numpy.savez, so save_model) in the .npy
    format 1.0 or 2.0, C order, is read straight into its array, one read
    each: numpy.load passes it through zipfile's buffers, 0.12 s against
    0.03 s for a 53 MB model, most of a prediction's start-up. Sizes and
    CRC-32s are checked (the CRCs 22 ms for 53 MB), so a truncated or
    damaged file is an error, as with numpy.load. Any other member sends
    the whole file through numpy.load (no pickles either way).

    Args:
        path: the .npz file.

    Returns:
        {member name without .npy: numpy array}.

    Raises:
        ValueError: a member is truncated, of the wrong size or damaged
            (bad CRC-32), or a .npy member is not one. zipfile's and
            numpy.load's own errors (BadZipFile, OSError) pass through:
            load_model makes each a UserError.
    """
    try:
        return _read_stored_npz(path)
    except _NotPlain:
        with numpy.load(path, allow_pickle=False) as npz:
            return {name: npz[name] for name in npz.files}


class _NotPlain(Exception):
    """A member that _read_stored_npz leaves to numpy.load."""


def _read_stored_npz(path):
    """read_npz's fast path: every member read straight into its array, or
    _NotPlain for the first that is not an uncompressed C-order .npy."""
    arrays = {}
    with zipfile.ZipFile(path) as archive, open(path, 'rb') as f:
        for info in archive.infolist():
            if info.compress_type != zipfile.ZIP_STORED or (
                    not info.filename.endswith('.npy')):
                raise _NotPlain(info.filename)
            # The data follows the local header (30 bytes, then the name
            # and an extra field of the lengths it gives at bytes 26-29).
            f.seek(info.header_offset)
            local = f.read(30)
            if len(local) < 30 or local[:4] != b'PK\x03\x04':
                raise ValueError('{}: broken zip header'.format(
                    info.filename))
            name_length, extra_length = struct.unpack('<HH', local[26:30])
            start = info.header_offset + 30 + name_length + extra_length
            f.seek(start)
            header = read_npy_header(f)
            if header is None:
                raise _NotPlain(info.filename)
            shape, fortran_order, dtype = header
            if fortran_order or dtype.hasobject:
                raise _NotPlain(info.filename)
            array = numpy.empty(shape, dtype)
            data = f.tell()
            if data - start + array.nbytes != info.file_size or (
                    f.readinto(array.reshape(-1).view(numpy.uint8))
                    != array.nbytes):
                raise ValueError('{}: truncated or of the wrong size'.format(
                    info.filename))
            f.seek(start)
            crc = zlib.crc32(array.reshape(-1).view(numpy.uint8),
                             zlib.crc32(f.read(data - start)))
            if crc != info.CRC:  # as zipfile checks: a damaged byte
                raise ValueError('{}: bad CRC-32, the file is damaged'
                                 .format(info.filename))
            arrays[info.filename[:-4]] = array
    return arrays


def _replace_arrays(model, npz):
    """Makes each parameter's array the file's own (no copy into the
    unfilled one); a parameter missing or of another shape or type is a
    ValueError naming it."""
    for name, param in model.namedparams():
        array = npz[name[1:]]
        if array.shape != param.shape or array.dtype != param.dtype:
            raise ValueError('{} is {} {}, not {} {}'.format(
                name, array.dtype, array.shape, param.dtype, param.shape))
        param.array = array


def load_model(path, freeze_until=DEFAULT_FREEZE_UNTIL, classify=False):
    """Reads a model file that save_model wrote.

    NaN or infinite parameters are refused: they would print ``nan``
    probabilities for every input.

    Args:
        path: the model file.
        freeze_until: the model's freeze cut, a TRUNK name or None.
        classify: the model is to predict, evaluate or export, so its
            loss3/classifier must have been trained: a random one's guesses
            would be printed as classes.

    Returns:
        (model, class names or None): a tuned_googlenet.GoogLeNet of the
        file's number of classes, its arrays the file's own, on the CPU;
        ``model.untrained_heads`` names the heads never trained.

    Raises:
        UserError: the file is missing, is not a file, is a caffemodel, a
            training snapshot or another file than a model this project
            wrote, or holds NaN or infinite parameters (naming the first
            such one); with ``classify``, also when loss3/classifier was
            never trained.
    """
    if not os.path.exists(path):
        raise UserError('model file not found: {}'.format(path))
    if not os.path.isfile(path):
        raise UserError('model file {} is a folder or a device, not a file'
                        .format(path))
    try:
        _refuse_other_kinds(path)
        npz = read_npz(path)
        n_classes = npz['loss3_fc/W'].shape[0]
        names = (list(npz['class_names']) if 'class_names' in npz else None)
        model = GoogLeNet(n_classes, freeze_until=freeze_until,
                          initialize=False)
        _replace_arrays(model, npz)
        if 'untrained_heads' in npz:
            model.untrained_heads = tuple(npz['untrained_heads'].tolist())
        model.source = _parsed_source(npz.get('source'))
    except UserError:
        raise
    except Exception as e:
        raise UserError('cannot read model file {}: not a model written by '
                        'this project ({})'.format(path, one_line(e)))
    if names is not None and len(names) != n_classes:
        raise UserError('model file {} names {} classes for its {}: not a '
                        'model written by this project'.format(
                            path, len(names), n_classes))
    _check_finite(model, path)
    if classify and 'loss3_fc' in model.untrained_heads:
        raise UserError(
            'model file {}: its loss3/classifier of {} classes was never '
            'trained (convert_caffe_model.py found none of that size in the '
            'caffemodel and left it fresh): its guesses would be random; '
            'train it with train_googlenet.py first'.format(
                path, model.n_classes))
    return model, names


def _refuse_other_kinds(path):
    """UserError if path is a caffemodel or a training snapshot
    (snapshot_writer's run_config in it), told before any array is read (a
    snapshot pickles some); zipfile's BadZipFile for another file that is
    no zip."""
    try:
        with zipfile.ZipFile(path) as archive:
            snapshot = 'run_config.npy' in archive.namelist()
    except zipfile.BadZipFile:
        if _looks_like_caffemodel(path):
            raise UserError(
                '{0} is a caffemodel (Caffe\'s weights), not a model this '
                'project wrote: convert it first with convert_caffe_model.py '
                '--caffemodel {0}, or classify with googlenet_predict.py '
                '--caffemodel {0}'.format(path))
        raise
    if snapshot:
        raise UserError(
            '{} is a training snapshot (the trained layers, the optimizer '
            'and the run\'s state), not a model: give its run\'s best '
            'model, tuned_googlenet.model in the same folder unless '
            '--output named another'.format(path))


def _looks_like_caffemodel(path):
    """Whether path, not a zip, is named or begins as a caffemodel."""
    if os.fspath(path).lower().endswith('.caffemodel'):
        return True
    with open(path, 'rb') as f:
        return bool(_CAFFEMODEL_START.match(f.read(3)))


def _check_finite(model, path):
    """UserError naming the first parameter that holds NaN or infinity."""
    for name, param in sorted(model.namedparams()):
        # min and max are NaN where any element is, infinite where one is;
        # no boolean array as large as the weights.
        array = param.array
        if array.size and not (numpy.isfinite(array.min())
                               and numpy.isfinite(array.max())):
            raise UserError('model file {} holds NaN or infinite values in '
                            '{}; convert or train it again'.format(
                                path, name))


def model_source(path):
    """What a model file's weights were converted from, read from the zip's
    ``source`` member alone (a few hundred bytes of a 53 MB file).

    Args:
        path: a model file save_model wrote.

    Returns:
        The dict save_model was given (caffemodel.convert writes the
        caffemodel's sha1, path and stat), or None: none recorded, or the
        file cannot be read as a model.
    """
    try:
        with zipfile.ZipFile(path) as archive, \
                archive.open('source.npy') as member:
            return _parsed_source(numpy.lib.format.read_array(
                member, allow_pickle=False))
    except (OSError, KeyError, ValueError, zipfile.BadZipFile):
        return None


def _parsed_source(array):
    """The dict a ``source`` array holds, or None."""
    if array is None:
        return None
    try:
        source = json.loads(str(array))
    except ValueError:
        return None
    return source if isinstance(source, dict) else None


def weights_digest(model, links):
    """The sha1 of the weights of some of a model's links, by name and
    bytes: what identifies a frozen trunk, whichever file it came from.

    Args:
        model: a tuned_googlenet.GoogLeNet.
        links: names of its top-level links (stages), e.g. its
            frozen_stages.

    Returns:
        str: a sha1 in hexadecimal.
    """
    digest = hashlib.sha1()
    for name, param in sorted(model.namedparams()):
        if name.split('/')[1] in links:
            digest.update(name.encode())
            digest.update(numpy.ascontiguousarray(param.array).tobytes())
    return digest.hexdigest()
