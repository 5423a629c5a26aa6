"""compat: Chainer imported without its environment check."""
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
