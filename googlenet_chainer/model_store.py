"""Where the pretrained files live: BVLC's caffemodel and the 1000-class model
converted from it, in Chainer's model folder, fetched from BVLC or a mirror
and converted once per caffemodel.

The folder is $CHAINER_DATASET_ROOT/pfnet/chainer/models
(~/.chainer/dataset/... unless set), where chainer.links.GoogLeNet keeps its
own downloads.
"""
import os
import sys

from googlenet_chainer.caffemodel import convert, file_stat
from googlenet_chainer.compat import chainer
from googlenet_chainer.download import (ChecksumMismatch, check_sha1,
                                        download_file)
from googlenet_chainer.errors import UserError
from googlenet_chainer.files import file_sha1
from googlenet_chainer.locks import file_lock, make_once
from googlenet_chainer.model_file import model_source
from googlenet_chainer.web import READ_TIMEOUT, shown_url

# BVLC's published sha1 (BVLC/caffe, models/bvlc_googlenet/readme.md): every
# source's file is checked against it, whatever server it comes from.
CAFFEMODEL_SHA1 = '405fc5acd08a3bb12de8ee5e23a96bec22f08204'
CAFFEMODEL_NAME = 'bvlc_googlenet.caffemodel'
# Where that file can be had, tried in this order after the user's own
# (GOOGLENET_CAFFEMODEL_URL, convert_caffe_model.py --url);
# GOOGLENET_CAFFEMODEL_MIRRORS, space-separated, replaces the list.
MIRRORS = (
    # BVLC's own host (the readme above); down for days at a time.
    'http://dl.caffe.berkeleyvision.org/bvlc_googlenet.caffemodel',
    # NVIDIA's copy, which dusty-nv/jetson-inference downloaded.
    'https://nvidia.box.com/shared/static/'
    'at8b1105ww1c5h7p30j5ko8qfnxrs0eg.caffemodel',
    # Apache MXNet's Caffe model zoo copy (apache/mxnet,
    # tools/caffe_converter/convert_caffe_modelzoo.py).
    'https://apache-mxnet.s3-accelerate.dualstack.amazonaws.com/caffe/'
    'models/bvlc_googlenet/bvlc_googlenet.caffemodel',
    # DeepDetect's (jolibrain) pretrained models.
    'https://www.deepdetect.com/downloads/platform/pretrained/caffe/'
    'googlenet/bvlc_googlenet.caffemodel',
)
# The 1000-class model googlenet_predict.py's first run converts from it.
MODEL_NAME = 'googlenet.model'
MODEL_DIRECTORY = 'pfnet/chainer/models'
# The links model.predict runs through beyond the trunk.
PREDICTION_HEADS = ('loss3_fc',)


def default_caffemodel():
    """Where the caffemodel is kept by default.

    Returns:
        The path of CAFFEMODEL_NAME in the folder Chainer keeps its
        downloaded models in (model_directory), created if need be.

    Raises:
        UserError: that folder cannot be created.
    """
    return os.path.join(model_directory(), CAFFEMODEL_NAME)


def default_model():
    """Where the first run's 1000-class model is kept.

    Returns:
        The path of MODEL_NAME beside the caffemodel in Chainer's model
        folder (model_directory), created if need be.

    Raises:
        UserError: that folder cannot be created.
    """
    return os.path.join(model_directory(), MODEL_NAME)


def model_or_default(path):
    """The model a --model option names, or the default one, converted
    again first if it is not the conversion of the caffemodel beside it
    (ensure_model).

    Args:
        path: --model's value, None for the default.

    Returns:
        path, or default_model() when it is None.

    Raises:
        UserError: path is None and the default model is not there yet
            (the message says what makes it), or its conversion fails.
    """
    if path is not None:
        return path
    path = default_model()
    if not os.path.exists(path):
        raise UserError('no model at {}, the default: googlenet_predict.py '
                        'makes it on its first run; or pass --model'.format(
                            path))
    ensure_model(path, default_caffemodel())
    return path


def model_directory():
    """Chainer's folder of downloaded models, created if need be.

    Returns:
        MODEL_DIRECTORY under Chainer's dataset root, where
        chainer.links.GoogLeNet keeps its own.

    Raises:
        UserError: the folder cannot be created (the message names the
            root and CHAINER_DATASET_ROOT, which moves it).
    """
    try:
        return chainer.dataset.get_dataset_directory(MODEL_DIRECTORY)
    except OSError as e:
        raise UserError('cannot create Chainer\'s model folder under {} '
                        '(set CHAINER_DATASET_ROOT): {}'.format(
                            chainer.dataset.get_dataset_root(),
                            e.strerror or e))


def sources(urls=(), sha1=None):
    """The URLs to try, in order, and the sha1 their file must have.

    Args:
        urls: the user's URLs (convert_caffe_model.py --url), tried first;
            then those of GOOGLENET_CAFFEMODEL_URL (space-separated); then,
            while the sha1 is BVLC's, MIRRORS (or
            GOOGLENET_CAFFEMODEL_MIRRORS).
        sha1: --sha1's value, or None: then GOOGLENET_CAFFEMODEL_SHA1, else
            CAFFEMODEL_SHA1.

    Returns:
        ([url, ...] without repeats, sha1 in lower case, where the sha1
        came from in words, for messages).

    Raises:
        UserError: the sha1 chosen is not 40 hexadecimal digits.
    """
    if sha1:
        sha1, origin = check_sha1(sha1, '--sha1'), 'given with --sha1'
    elif os.environ.get('GOOGLENET_CAFFEMODEL_SHA1'):
        sha1 = check_sha1(os.environ['GOOGLENET_CAFFEMODEL_SHA1'],
                          'GOOGLENET_CAFFEMODEL_SHA1')
        origin = 'set in GOOGLENET_CAFFEMODEL_SHA1'
    else:
        sha1, origin = CAFFEMODEL_SHA1, 'BVLC\'s published sha1'
    found = list(urls) + os.environ.get('GOOGLENET_CAFFEMODEL_URL',
                                        '').split()
    if sha1 == CAFFEMODEL_SHA1:
        mirrors = os.environ.get('GOOGLENET_CAFFEMODEL_MIRRORS')
        found += mirrors.split() if mirrors is not None else MIRRORS
    return list(dict.fromkeys(found)), sha1, origin


def ensure_caffemodel(path, urls=(), sha1=None, stall_timeout=READ_TIMEOUT):
    """Downloads the caffemodel to path unless it is there.

    Each source is tried in turn (sources) until one gives the file with
    the sha1; a download that broke off is resumed from the next source;
    path's lock is held, so that concurrent runs download once.

    Args:
        path: where the caffemodel is, or is to be.
        urls, sha1: as sources takes them.
        stall_timeout: seconds after which a source that sends under 1 KB
            is given up on (download.download_file).

    Raises:
        UserError: a malformed sha1, or no source gave the file (the
            message names the last source's failure, the others having
            been printed on stderr as they failed, and the ways out).
    """
    urls, sha1, origin = sources(urls, sha1)
    make_once(path, lambda: _download(urls, path, sha1, origin,
                                      stall_timeout), 'downloaded')


def _download(urls, path, sha1, origin, stall_timeout):
    """Tries each URL in turn; UserError naming every failure when none
    gives the file."""
    failures = []
    for url in urls:
        failure = _try(url, path, sha1, origin, stall_timeout)
        if failure is None:
            return
        failures.append('{}: {}'.format(shown_url(url), failure))
        if url != urls[-1]:
            print('{}; trying the next source'.format(failures[-1]),
                  file=sys.stderr)
    if len(failures) > 1:  # each printed above as it failed
        failures = ['none of the {} sources gave it (the last, {})'.format(
            len(failures), failures[-1])]
    raise UserError(
        '{}. Ways out: put a copy of {} (sha1 {}) at {}, where {}; or try '
        'another mirror of it, its URL in GOOGLENET_CAFFEMODEL_URL (and '
        'its sha1 in GOOGLENET_CAFFEMODEL_SHA1 if it is another file)'
        .format(failures[0] if failures else 'no source to download from',
                CAFFEMODEL_NAME, sha1, os.path.abspath(path),
                'every script finds it' if _is_default_caffemodel(path)
                else 'this command looks for it'))


def _is_default_caffemodel(path):
    """Whether path is default_caffemodel()'s, whose folder is not created
    to tell: a failed download into another folder leaves none behind."""
    folder = chainer.dataset.get_dataset_directory(MODEL_DIRECTORY,
                                                   create_directory=False)
    return os.path.realpath(path) == os.path.realpath(
        os.path.join(folder, CAFFEMODEL_NAME))


def _try(url, path, sha1, origin, stall_timeout):
    """Downloads path from url: None when done, else why not. A part left
    by another source that fails the sha1 once joined is tried again from
    nothing, in case the other source's bytes were the wrong ones."""
    for _ in range(2):
        resumed = os.path.exists(path + '.part')
        print('downloading {} to {}'.format(shown_url(url), path),
              file=sys.stderr)
        try:
            download_file(url, path, sha1=sha1, stall_timeout=stall_timeout)
            return None
        except ChecksumMismatch as e:
            if not resumed:
                return ('its file has sha1 {}, not {} ({}): the server sends '
                        'another file, or the expected sha1 is not this '
                        'file\'s'.format(e.actual, sha1, origin))
        except UserError as e:
            return str(e)
    return 'its file has another sha1 than {} ({})'.format(sha1, origin)


def ensure_model(path, caffemodel, given=False):
    """The 1000-class model at path, converted from caffemodel unless it is
    that caffemodel's conversion already.

    A cached conversion stands while the caffemodel in use is the one it
    was made from: the same stat (a write changes the ctime), else the same
    sha1; a model whose caffemodel is not recorded (made by an earlier
    version) is made again. Without the caffemodel (the default one, gone
    or never there), an existing model stands if it was converted from that
    path or records no caffemodel (put there by hand), and is made again
    from a download if it was converted from another (a --caffemodel of an
    earlier run), as is a missing one. path's lock is held, so that a
    second first run waits for the first and then uses its model.

    Args:
        path: the model file (default_model).
        caffemodel: the caffemodel's path.
        given: the user named caffemodel (--caffemodel): it must exist.

    Raises:
        UserError: a given caffemodel is missing, the download or the
            conversion failed, or the caffemodel's loss3/classifier cannot
            be copied (naming the layer): prediction would print a random
            classifier's guesses as ImageNet labels.
    """
    if given and not os.path.isfile(caffemodel):
        raise UserError('caffemodel not found: {}'.format(caffemodel))
    if _current(path, caffemodel) is None:
        return
    with file_lock(path):
        why = _current(path, caffemodel)
        if why is None:
            print('using {}, which another process made'.format(path),
                  file=sys.stderr)
            return
        print('{}: converting {}'.format(why, caffemodel), file=sys.stderr)
        ensure_caffemodel(caffemodel)
        convert(caffemodel, path, n_classes=1000,
                required_heads=PREDICTION_HEADS, log=lambda line: None)


def _current(path, caffemodel):
    """None when the model at path stands for the caffemodel, else why it
    must be made."""
    if not os.path.exists(path):
        return 'no model at {}'.format(path)
    source = model_source(path)
    if not os.path.exists(caffemodel):
        # Gone after its conversion (to save the space), the caffemodel
        # still stands behind the model, as does a model put there; the
        # conversion of another (--caffemodel once) does not.
        made_from = (source or {}).get('caffemodel')
        if made_from in (None, os.path.abspath(caffemodel)):
            return None
        return '{} was converted from {}, not from {}'.format(
            path, made_from, caffemodel)
    if source is None:
        return '{} records no caffemodel'.format(path)
    if source.get('stat') == file_stat(caffemodel) or source.get(
            'sha1') == file_sha1(caffemodel).hexdigest():
        return None
    return '{} was converted from another caffemodel'.format(path)
