"""devices: a GPU that cannot be used is refused in one line, whatever the
reason (the refusal without CuPy: tests/cli/test_predict.py)."""
import pytest

from googlenet_chainer import devices
from googlenet_chainer.compat import chainer
from googlenet_chainer.errors import UserError

cuda = chainer.backends.cuda


def test_cupy_that_chainer_could_not_import(tmp_path, monkeypatch):
    # An installed CuPy 14 without the CUDA libraries fails so in
    # Chainer's import (measured with cupy-cuda13x 14.2, no CUDA toolkit).
    (tmp_path / 'cupy').mkdir()
    (tmp_path / 'cupy' / '__init__.py').write_text('')
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(cuda, 'available', False)
    monkeypatch.setattr(cuda, '_resolution_error', RuntimeError(
        'Failure finding "libcublasLt.so.13": No such file\nmore'),
        raising=False)
    with pytest.raises(UserError) as e:
        devices.get_device('@cupy:0')
    assert str(e.value) == (
        'device @cupy:0 needs CuPy, which is installed but Chainer could '
        'not import it (Failure finding "libcublasLt.so.13": No such file); '
        'use @numpy (the CPU)')


class _RefusedGpu:
    """A GPU device as CuPy gives one on a host without a driver."""

    def use(self):
        raise RuntimeError('cudaErrorInsufficientDriver: CUDA driver version '
                           'is insufficient for CUDA runtime version')


def test_gpu_that_cuda_refuses(monkeypatch):
    monkeypatch.setattr(cuda, 'available', True)
    asked = []

    def from_device_id(device_id):
        asked.append(device_id)
        return _RefusedGpu()
    monkeypatch.setattr(cuda.GpuDevice, 'from_device_id', from_device_id)
    with pytest.raises(UserError) as e:
        devices.get_device(1)
    assert asked == [1]
    assert str(e.value) == (
        'device @cupy:1 cannot be used (cudaErrorInsufficientDriver: CUDA '
        'driver version is insufficient for CUDA runtime version); use '
        '@numpy (the CPU)')
