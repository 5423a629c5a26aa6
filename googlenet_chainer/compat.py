"""Imports Chainer 7.8.1 on numpy 2, without its import-time environment
check.

Every module of this project imports ``chainer`` through this one, before
anything else does::

    from googlenet_chainer.compat import chainer

``chainer/__init__.py`` runs ``chainer._environment_check.check()``, which
imports ``numpy.distutils`` (removed from Python 3.12) and ``pkg_resources``
(removed from setuptools 70) only to warn about Apple's Accelerate BLAS on
macOS and about versions of optional packages (CuPy, iDeep) this project does
not use; it also costs about 0.1 s of every start-up. Registering an empty
stand-in for that module before Chainer's first import skips the check and
nothing else.

``numpy.sctypes``, removed in numpy 2.0, is read at import by
``chainer/functions/array/as_strided.py`` (its ``index_dtype`` and the
float check of its backward): numpy 1.26's table is put back under that
name when numpy lacks it. It is the one name removed by numpy 2.0 to 2.4
that Chainer's code reads (a search of its sources for the others found
none); with it Chainer runs on numpy 2 (Python 3.10 to 3.13) as on numpy
1.26.

Where CuPy 14 is installed, the two warnings Chainer's import prints about
cuDNN and NCCL are not shown (see below): scripts print one line on bad
input, and these are about nothing this project uses.

``chainer.dataset.download`` imports filelock, which imports asyncio: 40 ms
of every start-up (a fifth of Chainer's own import) for a lock that only
Chainer's dataset downloads take. A stand-in registered under filelock's
name imports the real module when one of its names is first used.
(importlib.util.LazyLoader does not defer here: on Python 3.11 the import
statement itself reads the module's __spec__, which loads it.)
"""
import importlib.machinery
import importlib.util
import sys
import types
import warnings

import numpy


class _Deferred(types.ModuleType):
    """Stands for module ``name`` until one of its names is used."""

    def __getattr__(self, attr):
        """Imports the real module at the first use of one of its names,
        puts it in sys.modules in the stand-in's place, and hands on the
        name."""
        # Only names the stand-in lacks come here: all of the module's.
        real = self.__dict__.get('_module')
        if real is None:
            # The import machinery's own steps, the entry in sys.modules
            # replaced, not removed (someone may be iterating over it).
            spec = importlib.machinery.PathFinder.find_spec(self.__name__)
            real = importlib.util.module_from_spec(spec)
            sys.modules[self.__name__] = real
            spec.loader.exec_module(real)
            self._module = real
        return getattr(real, attr)


# numpy 1.26's numpy.sctypes, for chainer/functions/array/as_strided.py.
_SCTYPES = {
    'int': [numpy.int8, numpy.int16, numpy.int32, numpy.int64],
    'uint': [numpy.uint8, numpy.uint16, numpy.uint32, numpy.uint64],
    'float': [numpy.float16, numpy.float32, numpy.float64, numpy.longdouble],
    'complex': [numpy.complex64, numpy.complex128, numpy.clongdouble],
    'others': [bool, object, bytes, str, numpy.void],
}


if 'chainer' not in sys.modules:
    if not hasattr(numpy, 'sctypes'):
        numpy.sctypes = _SCTYPES
    _skipped = types.ModuleType('chainer._environment_check')
    _skipped.check = lambda: None
    sys.modules['chainer._environment_check'] = _skipped
    if 'filelock' not in sys.modules:
        sys.modules['filelock'] = _Deferred('filelock')

with warnings.catch_warnings():
    # Where CuPy 14 is installed, Chainer's import prints two warnings on
    # every run, CPU or GPU, about what this project does not use:
    # chainer/backends/cuda.py's "cuDNN is not enabled" (CuPy 14 has no
    # cuDNN, so its advice, to reinstall CuPy after cuDNN, cannot be
    # followed; convolutions run on cuBLAS) and CuPy's "nccl library could
    # not be loaded", set off by the import of cupy.cuda.nccl in
    # chainer/training/updaters/multiprocess_parallel_updater.py (ChainerMN's
    # pure_nccl communicator still refuses to start without NCCL, saying
    # so). Each is given once, at this import, and only here ignored.
    warnings.filterwarnings('ignore', 'cuDNN is not enabled')
    warnings.filterwarnings('ignore', r'\s*nccl library could not be loaded')
    import chainer  # noqa: E402

__all__ = ['chainer']
