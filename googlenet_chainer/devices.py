"""Chainer devices from the command line's spelling."""
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
        UserError: spec is not a device spec, or names a GPU and CuPy is
            not installed.
    """
    if isinstance(spec, int):
        spec = '@numpy' if spec < 0 else '@cupy:{}'.format(spec)
    if comm is not None and comm.size > 1 and spec.startswith('@cupy'):
        spec = '@cupy:{}'.format(comm.chainermn.intra_rank)
    if spec.startswith('@cupy') and not chainer.backends.cuda.available:
        raise UserError('device {} needs CuPy, which is not installed; use '
                        '@numpy (the CPU)'.format(spec))
    try:
        device = chainer.get_device(spec)
    except Exception as e:
        raise UserError('not a Chainer device: {!r} ({}; e.g. @numpy or '
                        '@cupy:0)'.format(spec, one_line(e)))
    device.use()
    return device
