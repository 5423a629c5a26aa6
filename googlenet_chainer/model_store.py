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
    """Where the caffemodel is kept by default: the folder Chainer keeps its
    downloaded models in (chainer.dataset.get_dataset_directory, under
    CHAINER_DATASET_ROOT, by default ~/.chainer/dataset), created if need be.
    """
    return os.path.join(model_directory(), CAFFEMODEL_NAME)


def default_model():
    """The first run's 1000-class model, beside the caffemodel in Chainer's
    model folder (see default_caffemodel)."""
    return os.path.join(model_directory(), MODEL_NAME)


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


def ensure_model(path, caffemodel):
    """Creates the 1000-class model from the caffemodel when it is missing.

    Holds path's lock, so that a second first run waits for the first and
    then uses its model. Refuses (UserError naming the layer) a caffemodel
    whose loss3/classifier cannot be copied: prediction would print a
    random classifier's guesses as ImageNet labels.
    """
    def make():
        print('no model at {}: converting {}'.format(path, caffemodel),
              file=sys.stderr)
        ensure_caffemodel(caffemodel)
        convert(caffemodel, path, n_classes=1000,
                required_heads=PREDICTION_HEADS, log=lambda line: None)
    make_once(path, make)
