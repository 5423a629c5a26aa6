"""mpi: the launcher's size and the one-process communicator."""
from googlenet_chainer import mpi


def test_launcher_detection_without_mpi():
    assert mpi.launched_size({}) == 1
    assert mpi.launched_size({'PMI_SIZE': '2'}) == 2
    assert mpi.launched_size({'OMPI_COMM_WORLD_SIZE': '4'}) == 4
    assert isinstance(mpi.communicator(), mpi.Single)
