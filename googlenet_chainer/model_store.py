"""Where the pretrained files live: BVLC's caffemodel and the 1000-class model
converted from it, in Chainer's model folder, fetched and made once.

The folder is $CHAINER_DATASET_ROOT/pfnet/chainer/models
(~/.chainer/dataset/... unless set), where chainer.links.GoogLeNet keeps its
own downloads.
"""
import os
import sys

from googlenet_chainer.caffemodel import convert
from googlenet_chainer.compat import chainer
from googlenet_chainer.download import check_sha1, download_file
from googlenet_chainer.errors import Unreachable, UserError
from googlenet_chainer.files import make_once

CAFFEMODEL_URL = ('http://dl.caffe.berkeleyvision.org/'
                  'bvlc_googlenet.caffemodel')
CAFFEMODEL_SHA1 = '405fc5acd08a3bb12de8ee5e23a96bec22f08204'
CAFFEMODEL_NAME = 'bvlc_googlenet.caffemodel'
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
    """The model a --model option names, or the default one.

    Args:
        path: --model's value, None for the default.

    Returns:
        path, or default_model() when it is None.

    Raises:
        UserError: path is None and the default model is not there yet
            (the message says what makes it).
    """
    if path is not None:
        return path
    path = default_model()
    if not os.path.exists(path):
        raise UserError('no model at {}, the default: googlenet_predict.py '
                        'makes it on its first run; or pass --model'.format(
                            path))
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


def resolve_source(url=None, sha1=None):
    """The download URL and sha1: option, then environment, then BVLC's.

    A malformed sha1 is refused (naming where it came from) before anything
    is downloaded.

    Args:
        url: --url's value, or None: then GOOGLENET_CAFFEMODEL_URL, else
            CAFFEMODEL_URL.
        sha1: --sha1's value, or None: then GOOGLENET_CAFFEMODEL_SHA1, else
            CAFFEMODEL_SHA1.

    Returns:
        (url, sha1), the sha1 in lower case.

    Raises:
        UserError: the sha1 chosen is not 40 hexadecimal digits.
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
    """Downloads the caffemodel to path unless it is there.

    The download resumes a broken-off one and is verified by its sha1;
    path's lock is held, so that concurrent runs download once.

    Args:
        path: where the caffemodel is, or is to be.
        url: None, or the URL to download (resolve_source).
        sha1: None, or the sha1 it must have (resolve_source).

    Raises:
        UserError: a malformed sha1, or a download that failed (when the
            server cannot be reached, the ways out are in the message).
    """
    url, sha1 = resolve_source(url, sha1)
    make_once(path, lambda: _download(url, path, sha1), 'downloaded')


def _download(url, path, sha1):
    """download_file, its failures told as UserErrors that say what to do
    instead."""
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


def ensure_model(path, caffemodel):
    """Creates the 1000-class model from the caffemodel when it is missing.

    Holds path's lock, so that a second first run waits for the first and
    then uses its model. The caffemodel is downloaded first if it is not
    there (ensure_caffemodel, from the URL and sha1 of the environment or
    BVLC's).

    Args:
        path: the model file (default_model).
        caffemodel: the caffemodel's path.

    Raises:
        UserError: the download or the conversion failed, or the
            caffemodel's loss3/classifier cannot be copied (naming the
            layer): prediction would print a random classifier's guesses
            as ImageNet labels.
    """
    def make():
        print('no model at {}: converting {}'.format(path, caffemodel),
              file=sys.stderr)
        ensure_caffemodel(caffemodel)
        convert(caffemodel, path, n_classes=1000,
                required_heads=PREDICTION_HEADS, log=lambda line: None)
    make_once(path, make)
