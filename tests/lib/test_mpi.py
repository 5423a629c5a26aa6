"""mpi: the launcher's size, the one-process communicator, how ranks end."""
from googlenet_chainer import mpi


def test_launcher_detection_without_mpi():
    assert mpi.launched_size({}) == 1
    assert mpi.launched_size({'PMI_SIZE': '2'}) == 2
    assert mpi.launched_size({'OMPI_COMM_WORLD_SIZE': '4'}) == 4
    assert isinstance(mpi.communicator(), mpi.Single)


class TwoRanks:
    """Rank 0 of two; abort records its code instead of ending MPI."""
    rank, size = 0, 2

    def __init__(self):
        self.aborted = None

    def abort(self, code):
        self.aborted = code


def test_a_reader_gone_under_mpi_ends_every_rank_quietly(capfd):
    def work():
        raise BrokenPipeError(32, 'Broken pipe')

    comm = TwoRanks()
    assert mpi.report_errors(comm, work) == 141
    assert comm.aborted == 141
    assert capfd.readouterr().err == ''


def test_a_ctrl_c_under_mpi_ends_every_rank_with_one_line(capfd):
    def work():
        raise KeyboardInterrupt

    comm = TwoRanks()
    assert mpi.report_errors(comm, work) == 130
    assert comm.aborted == 130
    assert capfd.readouterr().err == 'interrupted\n'
