"""Chainer devices from the command line's spelling."""
import importlib.util

from googlenet_chainer.compat import chainer
from googlenet_chainer.errors import UserError, one_line


def get_device(spec, comm=None):
    """The Chainer device of a command line's spec, made current.

    Under MPI (comm of more than one rank) a GPU spec means each rank's own
    GPU, the one numbered by its rank within its host (ChainerMN's
    intra_rank), whatever number the spec gives.

    Args:
        spec: a Chainer device spec (``@numpy``, ``@cupy:0``), or a GPU id
            as an int, as -g gives it: negative for the CPU.
        comm: None, or mpi's Single or Distributed.

    Returns:
        The chainer.backend.Device, after its ``use()``.

    Raises:
        UserError: spec is not a device spec, or names a GPU that cannot be
            used: CuPy is not installed, Chainer could not import it (as
            when CuPy finds no CUDA libraries), or CUDA refuses the GPU (no
            driver, no GPU of that number).
    """
    if isinstance(spec, int):
        spec = '@numpy' if spec < 0 else '@cupy:{}'.format(spec)
    if comm is not None and comm.size > 1 and spec.startswith('@cupy'):
        spec = '@cupy:{}'.format(comm.chainermn.intra_rank)
    if spec.startswith('@cupy') and not chainer.backends.cuda.available:
        raise UserError(_without_cupy(spec))
    try:
        device = chainer.get_device(spec)
    except Exception as e:
        raise UserError('not a Chainer device: {!r} ({}; e.g. @numpy or '
                        '@cupy:0)'.format(spec, one_line(e)))
    try:
        device.use()
    except Exception as e:
        # CuPy's CUDARuntimeError: the first CUDA call is here (measured
        # with CuPy 14.2 and no driver: cudaErrorInsufficientDriver).
        raise UserError('device {} cannot be used ({}); use @numpy (the '
                        'CPU)'.format(spec, one_line(e)))
    return device


def _without_cupy(spec):
    """The refusal of a GPU spec when Chainer has no CuPy: CuPy is missing,
    or Chainer's import of it failed (chainer/backends/cuda.py keeps why)."""
    if importlib.util.find_spec('cupy') is None:
        return ('device {} needs CuPy, which is not installed; use @numpy '
                '(the CPU)'.format(spec))
    return ('device {} needs CuPy, which is installed but Chainer could not '
            'import it ({}); use @numpy (the CPU)'.format(
                spec, one_line(chainer.backends.cuda._resolution_error)))
