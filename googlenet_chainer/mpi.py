"""Runs over several processes with ChainerMN, or in one without MPI at all.

A script is distributed when ``--communicator`` is given or when an MPI
launcher started more than one process of it (``mpiexec -n N``: MPICH and
Intel MPI set ``PMI_SIZE``, Open MPI ``OMPI_COMM_WORLD_SIZE``). Otherwise
``communicator`` returns ``Single``, and neither chainermn nor mpi4py is
imported: a plain run is the same as before MPI support existed.

Rank 0 owns the output (it prints, writes the files); the other ranks print
nothing on stdout. A UserError that rank 0 meets in work that only it does
(``on_root``) is sent to every rank, so all exit 1 with one line printed; a
UserError or crash on one rank in the middle of collective work ends every
rank (``MPI_Abort``) instead of leaving the others waiting forever.
"""
import os
import sys
import traceback

from googlenet_chainer.cli import reader_gone, report_errors as report_single
from googlenet_chainer.errors import UserError

LAUNCHER_SIZE = ('PMI_SIZE', 'OMPI_COMM_WORLD_SIZE')
# pure_nccl needs CuPy and NCCL on GPUs: not tested in this project.
COMMUNICATORS = ('naive', 'flat', 'pure_nccl')


def local_mpiexec(n):
    """The command that starts n processes on this machine alone.

    MPICH's mpiexec beside this interpreter (the mpich wheel puts it in
    .venv/bin), forking the ranks itself (no ssh) on 127.0.0.1, which needs
    no network interface but the loopback (checked inside ``unshare -n``).

    Args:
        n: how many ranks.

    Returns:
        The argv list up to the program: append the program's own argv.
    """
    return [os.path.join(os.path.dirname(sys.executable), 'mpiexec'),
            '-launcher', 'fork', '-host', '127.0.0.1', '-n', str(n)]


def launched_size(environ=None):
    """How many processes the MPI launcher started (1 without one).

    Args:
        environ: the environment to read (a mapping); None for os.environ.

    Returns:
        The int of the first of LAUNCHER_SIZE that is set to digits, else 1.
    """
    environ = os.environ if environ is None else environ
    for name in LAUNCHER_SIZE:
        if environ.get(name, '').isdigit():
            return int(environ[name])
    return 1


class Single:
    """The communicator of a run without MPI: one rank, nothing sent."""

    rank = 0
    size = 1
    chainermn = None

    def bcast(self, obj):
        """obj itself: rank 0's is the only one."""
        return obj

    def gather(self, obj):
        """[obj], as Distributed.gather gives it on rank 0."""
        return [obj]

    def barrier(self):
        pass


class Distributed:
    """A ChainerMN communicator (``.chainermn``) with object messages.

    Importing chainermn imports mpi4py, which starts MPI; ``rank`` and
    ``size`` are the communicator's.

    Args:
        name: the ChainerMN communicator, one of COMMUNICATORS.

    Raises:
        UserError: ChainerMN cannot create that communicator.
    """

    def __init__(self, name):
        try:
            import chainermn  # imports mpi4py, which starts MPI
            self.chainermn = chainermn.create_communicator(name)
        except Exception as e:
            raise UserError('cannot create the {} communicator: {}'.format(
                name, ' '.join(str(e).split())))
        self.rank = self.chainermn.rank
        self.size = self.chainermn.size

    def bcast(self, obj):
        """obj of rank 0, on every rank (pickled); others' obj is unused."""
        return self.chainermn.bcast_obj(obj if self.rank == 0 else None)

    def gather(self, obj):
        """[obj of rank 0, of rank 1, ...] on rank 0; None elsewhere."""
        return self.chainermn.gather_obj(obj)

    def barrier(self):
        self.chainermn.mpi_comm.Barrier()

    def abort(self, code):
        """Flushes stdout and stderr, then MPI_Abort with code: ends every
        rank, so none waits forever for this one."""
        sys.stdout.flush()
        sys.stderr.flush()
        self.chainermn.mpi_comm.Abort(code)


def communicator(name=None):
    """The communicator of this run: Single, or Distributed under MPI.

    Single unless name is given or a launcher started several processes
    (launched_size). Non-zero ranks get stdout sent to /dev/null: rank 0
    prints for the run.

    Args:
        name: None, or one of COMMUNICATORS (--communicator); under a
            launcher None stands for naive.

    Returns:
        Single or Distributed.

    Raises:
        UserError: the communicator cannot be created (Distributed).
    """
    if name is None and launched_size() <= 1:
        return Single()
    comm = Distributed(name or 'naive')
    if comm.rank:
        sys.stdout = open(os.devnull, 'w')
    return comm


def add_communicator_option(parser):
    """Adds --communicator: the ChainerMN communicator, or none.

    Args:
        parser: an argparse parser or argument group.
    """
    parser.add_argument(
        '--communicator', choices=COMMUNICATORS, default=None,
        help='ChainerMN communicator under mpiexec: naive (CPU), flat, or '
        'pure_nccl (GPUs; untested here) (default: naive when started by '
        'mpiexec -n N with N > 1, else no MPI at all)')


class RootFailed(UserError):
    """Rank 0 refused the run; it printed why, this rank just exits 1."""


def on_root(comm, function):
    """function() on rank 0 only; its result (pickled) on every rank.

    Args:
        comm: Single or Distributed.
        function: called without arguments, on rank 0.

    Returns:
        function's result, on every rank.

    Raises:
        UserError: function's, on rank 0, marked collective so that
            report_errors does not abort.
        RootFailed: on the other ranks when function raised UserError;
            report_errors exits 1 silently.
    """
    result = error = None
    if comm.rank == 0:
        try:
            result = function()
        except UserError as e:
            error = e
    if comm.size > 1:
        result, message = comm.bcast((result, None if error is None
                                      else str(error)))
        if message is not None and comm.rank:
            raise RootFailed(message)
    if error is not None:
        error.collective = True
        raise error
    return result


def on_root_with_model(comm, prepare, load):
    """prepare() on rank 0, which loads the model itself (its checks and
    refusals then come from rank 0 alone, once), then the model on the other
    ranks too.

    Args:
        comm: Single or Distributed.
        prepare: returns (model, shared): shared goes to every rank
            (pickled), the model stays on rank 0.
        load: load(shared) -> the model, on every rank but 0.

    Returns:
        (model, shared) on every rank.

    Raises:
        UserError: prepare's, on every rank (see on_root).
    """
    kept = []

    def root():
        model, shared = prepare()
        kept.append(model)
        return shared
    shared = on_root(comm, root)
    return (kept[0] if kept else load(shared)), shared


def shard(items, comm):
    """This rank's contiguous share of items.

    Args:
        items: a sequence (a list of inputs).
        comm: Single or Distributed.

    Returns:
        Rank r of N gets items[len * r // N : len * (r + 1) // N], so the
        shares of ranks 0, 1, ... joined are items in order.
    """
    n = len(items)
    return items[n * comm.rank // comm.size:n * (comm.rank + 1) // comm.size]


def report_errors(comm, function, *args):
    """cli.report_errors, over ranks.

    One line for a refusal that every rank shares (on_root), MPI_Abort for
    a failure of one rank while the others may be waiting for it in a
    collective call: a UserError not raised through on_root, Ctrl-C, a
    reader of stdout gone (141, quietly), or any other exception (its
    traceback printed). With one rank it is
    cli.report_errors itself.

    Args:
        comm: Single or Distributed.
        function: the work; called as function(*args).
        *args: its arguments.

    Returns:
        The exit code: function's result (0 where that is None), else 1
        for an error or 130 for Ctrl-C (after MPI_Abort, where that
        returns at all).
    """
    if comm.size == 1:
        return report_single(function, *args)
    try:
        result = function(*args)
    except RootFailed:
        return 1
    except UserError as e:
        print('error: {}'.format(e), file=sys.stderr)
        if getattr(e, 'collective', False):
            return 1
        code = 1
    except KeyboardInterrupt:
        print('interrupted', file=sys.stderr)
        code = 130
    except BrokenPipeError:
        code = reader_gone()
    except BaseException:
        traceback.print_exc()
        code = 1
    else:
        return 0 if result is None else result
    comm.abort(code)
    return code  # MPI_Abort may return before the launcher ends the rank


def run_main(function, args):
    """Runs a script's work under the communicator it asks for.

    report_errors(comm, function, args, comm) with the communicator that
    args.communicator or the launcher asks for (communicator).

    Args:
        function: the script's work, function(args, comm).
        args: the parsed command line (argparse.Namespace) with
            ``communicator`` (add_communicator_option).

    Returns:
        The exit code; 1, after one line on stderr, when the communicator
        cannot be created.
    """
    try:
        comm = communicator(args.communicator)
    except UserError as e:
        print('error: {}'.format(e), file=sys.stderr)
        return 1
    return report_errors(comm, function, args, comm)
