"""compat: Chainer imported without its environment check."""
import json
import os
import subprocess
import sys

from helpers import ROOT


def test_chainers_download_lock_still_loads_on_first_use():
    code = ('import sys, googlenet_chainer.compat, chainer.dataset.download as d\n'
            'before = "asyncio" in sys.modules\n'
            'lock = d.filelock.FileLock(sys.argv[1])\n'
            'import filelock\n'
            'print(before, type(lock).__module__,'
            ' filelock.FileLock is d.filelock.FileLock)')
    out = subprocess.run([sys.executable, '-c', code, os.devnull + '.lock'],
                         capture_output=True, text=True, cwd=ROOT,
                         check=True).stdout
    assert out.split() == ['False', 'filelock._unix', 'True']



NUMPY_AND_CHAINER = """
import json, types, numpy
had = hasattr(numpy, 'sctypes')
before = dict(vars(numpy))
from googlenet_chainer.compat import chainer
import chainer.functions as F
from chainer.functions.array import as_strided
changed = [k for k, v in vars(numpy).items()
           if not isinstance(v, types.ModuleType) and before.get(k) is not v]
x = chainer.Variable(numpy.arange(6, dtype=numpy.float32))
F.sum(F.as_strided(x, (2, 2), (1, 1))).backward()  # rows [0, 1] and [1, 2]
print(json.dumps([had, changed, sorted(as_strided.index_dtype),
                  x.grad.tolist()]))
"""


def test_numpy_gains_only_sctypes_and_chainer_reads_it():
    """numpy.sctypes is put back where numpy 2 lacks it, and nothing else
    of numpy's changes; chainer/functions/array/as_strided.py reads it."""
    had, changed, itemsizes, grad = json.loads(subprocess.run(
        [sys.executable, '-c', NUMPY_AND_CHAINER], capture_output=True,
        text=True, cwd=ROOT, check=True).stdout)
    assert changed == ([] if had else ['sctypes'])
    assert itemsizes == [1, 2, 4, 8]
    assert grad == [1, 2, 1, 0, 0, 0]
