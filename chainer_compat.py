"""Imports Chainer 7.8.1 without its import-time environment check.

Every module of this project imports ``chainer`` through this one, before
anything else does::

    from chainer_compat import chainer

``chainer/__init__.py`` runs ``chainer._environment_check.check()``, which
imports ``numpy.distutils`` (removed from Python 3.12) and ``pkg_resources``
(removed from setuptools 70) only to warn about Apple's Accelerate BLAS on
macOS and about versions of optional packages (CuPy, iDeep) this project does
not use; it also costs about 0.1 s of every start-up. Registering an empty
stand-in for that module before Chainer's first import skips the check and
nothing else: Chainer then imports on Python 3.10 to 3.12 with numpy 1.26.
"""
import sys
import types

if 'chainer' not in sys.modules:
    _skipped = types.ModuleType('chainer._environment_check')
    _skipped.check = lambda: None
    sys.modules['chainer._environment_check'] = _skipped

import chainer  # noqa: E402

__all__ = ['chainer']
