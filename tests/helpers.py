"""What several test files share: a script's main run and what it said, and
a few small things made in a line or two."""
import base64
import contextlib
import hashlib
import html.parser
import importlib.util
import io
import json
import os

import numpy
import pytest

import googlenet_predict
import train_googlenet
from googlenet_chainer.compat import chainer
from googlenet_chainer.errors import one_line
from image_fixtures import QUIET

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The converter's log, silenced.
SILENT = dict(log=lambda line: None)
# The classes of the five_class_model fixture (conftest).
FIVE = ['ant', 'bee', 'cat', 'dog', 'eel']


def predict(capsys, *argv):
    """(exit code, stdout, stderr) of googlenet_predict.main(argv)."""
    code = googlenet_predict.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


SAMPLE_PHOTO = os.path.join(ROOT, 'sample_images', 'cat.png')
# The sample photo's probabilities under the model_1000 fixture's weights,
# made under numpy 1.26 by tools/reference_probabilities.py.
REFERENCE = os.path.join(ROOT, 'tests', 'reference_probabilities.json')
# googlenet_predict.py's options for each set of probabilities REFERENCE
# holds.
CROPS = {'centre': [], 'oversample': ['--oversample']}


def photo_probabilities(model_path, *options):
    """The sample photo's 1000 probabilities as googlenet_predict.py --json
    prints them (--top 1000: every class), in class-index order."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = googlenet_predict.main(['--model', model_path, '--json',
                                       '--top', '1000', SAMPLE_PHOTO,
                                       *options])
    assert code == 0
    [line] = out.getvalue().splitlines()
    probs = numpy.zeros(1000)
    for p in json.loads(line)['predictions']:
        probs[p['index']] = p['probability']
    return probs


def _gpu_missing():
    """Why CuPy sees no GPU here ('' where it sees one)."""
    if importlib.util.find_spec('cupy') is None:
        return 'CuPy is not installed'
    cuda = chainer.backends.cuda
    if not cuda.available:
        return 'Chainer could not import CuPy'
    try:
        count = cuda.cupy.cuda.runtime.getDeviceCount()
    except Exception as e:  # CuPy's CUDARuntimeError: no driver
        return 'CuPy sees no GPU ({})'.format(one_line(e))
    return '' if count else 'CuPy sees no GPU'


GPU_MISSING = _gpu_missing()
# Marks a test that runs on a GPU: skipped, saying why, where CuPy sees
# none (pytest -m gpu runs these alone).
needs_gpu = [pytest.mark.gpu, pytest.mark.skipif(
    bool(GPU_MISSING), reason='needs a GPU that CuPy sees: ' + GPU_MISSING)]
# Marks a test of the refusal of a GPU device without CuPy.
without_cupy = pytest.mark.skipif(
    importlib.util.find_spec('cupy') is not None,
    reason='CuPy is installed here: the refusal without it cannot be seen')


def run_training(*argv):
    """train_googlenet.main's exit code, quiet and in one process."""
    return train_googlenet.main(list(argv) + QUIET)


def one_error_line(capsys):
    """stderr, asserted to be a single error line."""
    err = capsys.readouterr().err
    assert err.startswith('error: ') and err.count('\n') == 1, err
    return err


def refused(capsys, main, *argv):
    """main(argv)'s single error line, asserted to come with exit code 1."""
    code = main(list(argv))
    out, err = capsys.readouterr()
    assert code == 1, (out, err)
    assert err.startswith('error: ') and err.count('\n') == 1, err
    return err


def sha1_of(path):
    with open(path, 'rb') as f:
        return hashlib.sha1(f.read()).hexdigest()


def children(pid):
    """The PIDs of a process's children, from /proc."""
    kids = []
    for task in os.listdir('/proc/{}/task'.format(pid)):
        with contextlib.suppress(OSError), open(
                '/proc/{}/task/{}/children'.format(pid, task)) as f:
            kids += [int(k) for k in f.read().split()]
    return kids


def params(model):
    """{name: array} of a model's parameters."""
    return {name: p.array for name, p in model.namedparams()}


def edited_caffemodel(source, path, edit):
    """source's caffemodel (BlobShape format) with edit(net) applied,
    written to path (a pathlib.Path)."""
    import caffe_pb2
    net = caffe_pb2.NetParameter()
    with open(source, 'rb') as f:
        net.ParseFromString(f.read())
    edit(net)
    path.write_bytes(net.SerializeToString())
    return path


def drop_classifier(net):
    """An edit for edited_caffemodel: no loss3/classifier."""
    kept = [layer for layer in net.layer if layer.name != 'loss3/classifier']
    del net.layer[:]
    net.layer.extend(kept)


class Page(html.parser.HTMLParser):
    """report.html read back: its tags, image sources, the inputs of its
    mistakes in order, and its text (entities decoded)."""

    def __init__(self, path):
        super().__init__()
        self.tags, self.images, self.mistakes, self.text = [], [], [], []
        with open(path, encoding='utf-8') as f:
            self.feed(f.read())
        self.close()
        self.text = ' '.join(self.text)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.tags.append(tag)
        if tag == 'img':
            self.images.append(attrs['src'])
        if tag == 'figure' and attrs.get('class') == 'mistake':
            self.mistakes.append(attrs['data-input'])

    def handle_data(self, data):
        self.text.append(data)

    def inline_images(self):
        """Each image's bytes; asserts that every one is inline and that
        nothing else refers outside the page."""
        found = []
        for src in self.images:
            head, _, data = src.partition(';base64,')
            assert head in ('data:image/png', 'data:image/jpeg'), src[:40]
            found.append(base64.b64decode(data))
        assert not {'script', 'link', 'iframe', 'object'} & set(self.tags)
        return found
