"""Training's image loader: examples decoded in worker processes, one batch
ahead, that survive a worker's death."""
import concurrent.futures.process
import contextlib
import ctypes
import errno
import multiprocessing
import os
import pickle
import shutil
import signal
import sys
import tempfile
import time

from googlenet_chainer.compat import chainer
from googlenet_chainer.errors import UserError
from googlenet_chainer.files import remove_stale_temporaries
from googlenet_chainer.locks import try_lock
from googlenet_chainer.interrupts import sigint_deferred


def make_iterator(dataset, batchsize, loaderjob, loader_timeout, order=None,
                  repeat=True):
    """An iterator over a dataset, reading in worker processes or this one.

    Args:
        dataset: a Chainer dataset.
        batchsize: examples per batch.
        loaderjob: worker processes (a LoaderIterator); 0 reads in this
            process (Chainer's SerialIterator).
        loader_timeout: seconds a LoaderIterator waits for a batch.
        order: a SeededOrder, or None for the dataset's order.
        repeat: epoch after epoch (training), or a single pass.

    Returns:
        a LoaderIterator or a SerialIterator.
    """
    shuffle = None if order is not None else False
    if loaderjob > 0:
        return LoaderIterator(dataset, batchsize, loaderjob, loader_timeout,
                              repeat=repeat, shuffle=shuffle,
                              order_sampler=order)
    return chainer.iterators.SerialIterator(
        dataset, batchsize, repeat=repeat, shuffle=shuffle,
        order_sampler=order)


_worker = {}
SPOOL_PREFIX = 'googlenet-loader.'
PR_SET_PDEATHSIG = 1  # linux/prctl.h


def _start_worker(dataset, spool, parent):
    """Each worker's start: ignores Ctrl-C, dies with its parent, keeps
    the dataset and the spool folder for _load_example."""
    # Ctrl-C reaches the whole process group; the main process reports it
    # and stops the workers.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # A run killed outright (kill -9) would leave its workers waiting on
    # their task queue forever: on Linux they get SIGKILL when it dies.
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # it died before prctl
        os._exit(0)
    _worker.update(dataset=dataset, spool=spool)


def _load_example(index):
    """Pickles example index into a new file of the spool folder; its path.

    A file, not the result itself, crosses the executor's pipe: a path is
    one write, which a pipe makes at once, where a worker killed halfway
    through sending a 600 KB example leaves half a message and the
    executor's reading thread waiting for the rest forever.
    """
    example = _worker['dataset'][index]
    fd, path = tempfile.mkstemp(dir=_worker['spool'])
    with open(fd, 'wb') as f:
        pickle.dump(example, f, pickle.HIGHEST_PROTOCOL)
    return path


def _read_spooled(path):
    """The example a worker spooled in path, the file removed."""
    with open(path, 'rb') as f:
        example = pickle.load(f)
    os.unlink(path)
    return example


def _discard(future):
    """Removes the file of a dropped example once its worker is done."""
    if not future.cancelled() and future.exception() is None:
        with contextlib.suppress(OSError):
            os.unlink(future.result())


# Examples pass through memory where the system offers it.
SHM = '/dev/shm'


def make_spool(in_memory=True):
    """A new folder for the examples in passage from the workers, locked
    while it is in use (locks.is_stale tells it from a dead run's).

    Those of loaders whose run is gone are removed first.

    Args:
        in_memory: in SHM where there is one to write in; else (or when
            SHM is full) in the temporary folder.

    Returns:
        (the folder's path, SPOOL_PREFIX + 'PID.*.tmp'; a descriptor of it
        holding its lock, for the caller to close).
    """
    parent = SHM if in_memory and os.access(SHM, os.W_OK) \
        else tempfile.gettempdir()
    remove_stale_temporaries(parent, SPOOL_PREFIX)
    spool = tempfile.mkdtemp(suffix='.tmp', dir=parent, prefix='{}{}.'.format(
        SPOOL_PREFIX, os.getpid()))
    fd = os.open(spool, os.O_RDONLY)
    try_lock(fd)
    return spool, fd


class LoaderIterator(chainer.iterators.SerialIterator):
    """SerialIterator reading its examples in worker processes, a batch ahead.

    The workers are a concurrent.futures.ProcessPoolExecutor, which notices
    a worker that dies (the out-of-memory killer's SIGKILL, a crash) and
    fails its futures with BrokenProcessPool, where multiprocessing.Pool,
    and so Chainer's MultiprocessIterator, waits forever on the task-queue
    lock the dead worker held. A worker's death costs a warning and a fresh
    set of workers that reload the batch; a second death on the same batch,
    or a batch not read within timeout seconds, raises a one-line UserError.
    The batches, and the state kept in snapshots, are SerialIterator's: the
    batch read ahead is drawn from a copy of the state and dropped on reset
    or resume.

    Args:
        dataset: a Chainer dataset, inherited by the workers (fork).
        batch_size: examples per batch.
        n_processes: worker processes (--loaderjob), started at the first
            batch.
        timeout: seconds to wait for a batch (--loader-timeout).
        **kwargs: SerialIterator's repeat, shuffle and order_sampler.
    """

    def __init__(self, dataset, batch_size, n_processes, timeout, **kwargs):
        self.n_processes = n_processes
        self.timeout = timeout
        self._executor = None
        self._spool = self._spool_fd = None
        self._ahead = None  # (state after the batch, indices, futures)
        super().__init__(dataset, batch_size, **kwargs)

    def __next__(self):
        """The next batch (a list of examples); starts reading the one
        after.

        Raises:
            StopIteration: a single pass (repeat=False) is over.
            UserError: a worker died twice on this batch, or the batch was
                not read within timeout seconds.
        """
        if self._ahead is None:
            self._ahead = self._submit(self._state)
        state, indices, futures = self._ahead
        if indices is None:
            raise StopIteration
        batch = self._collect(indices, futures)
        self._previous_epoch_detail = self.epoch_detail
        self._state = state
        self._ahead = self._submit(state)
        return batch

    next = __next__

    def _submit(self, state):
        """(the state after the next batch, its indices or None at the end,
        the futures reading them)."""
        state, indices = chainer.iterators._statemachine \
            .iterator_statemachine(state, self.batch_size, self.repeat,
                                   self.order_sampler, len(self.dataset))
        futures = None if indices is None else self._start(indices)
        return state, indices, futures

    def _start(self, indices):
        """Futures of the examples' files; None when the workers died."""
        # The workers start at the first submit.
        with sigint_deferred():
            if self._executor is None:
                if self._spool is None:
                    self._spool, self._spool_fd = make_spool()
                self._executor = concurrent.futures.ProcessPoolExecutor(
                    self.n_processes, multiprocessing.get_context('fork'),
                    _start_worker, (self.dataset, self._spool, os.getpid()))
            try:
                return [self._executor.submit(_load_example, int(i))
                        for i in indices]
            except concurrent.futures.process.BrokenProcessPool:
                return None

    def _collect(self, indices, futures):
        """The batch's examples; a dead worker costs a fresh set of workers
        that read it again, a second death or the timeout a UserError."""
        deaths = 0
        while True:
            deadline = time.monotonic() + self.timeout
            try:
                if futures is None:
                    raise concurrent.futures.process.BrokenProcessPool
                return [_read_spooled(future.result(max(
                    0, deadline - time.monotonic()))) for future in futures]
            except concurrent.futures.process.BrokenProcessPool:
                cause = self._stop(broken=True)
                deaths += 1
                if deaths == 2:
                    raise UserError(
                        'a loader process died twice reading the same batch '
                        '({}): continue with --resume latest, with fewer '
                        '--loaderjob or --loaderjob 0'.format(cause))
                print('warning: a loader process died ({}); reading the '
                      'batch again with new ones'.format(cause),
                      file=sys.stderr, flush=True)
                futures = self._start(indices)
            except concurrent.futures.TimeoutError:
                self._stop()
                raise UserError(
                    'the loader processes gave no batch in {} s '
                    '(--loader-timeout; one may be stuck on an image on a '
                    'slow disk): continue with --resume latest, with a '
                    'larger --loader-timeout or --loaderjob 0'.format(
                        self.timeout))
            # After TimeoutError, an OSError itself since Python 3.11.
            except OSError as e:  # a worker could not spool an example
                self._stop()
                self._spool_elsewhere(e)
                futures = self._start(indices)

    def _spool_elsewhere(self, error):
        """After a failure to write the spool: a full SHM (Docker gives it
        64 MB) moves it to the temporary folder, with a warning; any other
        failure is a UserError naming the spool, not the run's folder."""
        if error.errno != errno.ENOSPC or not self._spool.startswith(
                SHM + os.sep):
            raise UserError('the loader processes cannot write their '
                            'examples in {}: {}'.format(
                                self._spool, error.strerror or error))
        print('warning: {} is full ({}; a container gets 64 MB by default): '
              'the loader\'s examples pass through {} instead'.format(
                  SHM, error.strerror, tempfile.gettempdir()),
              file=sys.stderr, flush=True)
        self._remove_spool()
        self._spool, self._spool_fd = make_spool(in_memory=False)

    def _remove_spool(self):
        """Removes the spool folder and lets go of its lock."""
        if self._spool:
            shutil.rmtree(self._spool, ignore_errors=True)
            os.close(self._spool_fd)
            self._spool = self._spool_fd = None

    def _stop(self, broken=False):
        """Ends the workers (a broken pool ends its own; the others are
        killed, as one may be stuck) and says how one of them died."""
        with sigint_deferred():
            return self._end_workers(broken)

    def _end_workers(self, broken):
        """_stop's work, which it runs with Ctrl-C held back."""
        executor, self._executor = self._executor, None
        if executor is None:
            return 'not started'
        # No public way before Python 3.14's kill_workers(); shutdown()
        # alone would wait for a stuck worker.
        processes = list((executor._processes or {}).values())
        for process in () if broken else processes:
            process.kill()
        executor.shutdown(wait=True, cancel_futures=True)
        for process in processes:
            process.join()
        # A broken pool sends its surviving workers SIGTERM.
        codes = [p.exitcode for p in processes
                 if p.exitcode not in (0, -signal.SIGTERM)]
        if not codes:
            return 'it vanished'
        if codes[0] == -signal.SIGKILL:
            return 'killed by SIGKILL, as the out-of-memory killer does'
        if codes[0] < 0:
            return 'killed by {}'.format(signal.Signals(-codes[0]).name)
        return 'exit status {}'.format(codes[0])

    def _drop_ahead(self):
        """Cancels the batch read ahead; the files of its examples go as
        their workers finish them."""
        ahead, self._ahead = getattr(self, '_ahead', None), None
        for future in (ahead[2] or []) if ahead else []:
            future.cancel()
            future.add_done_callback(_discard)

    def reset(self):
        """SerialIterator's reset, the batch read ahead dropped."""
        self._drop_ahead()
        super().reset()

    def serialize(self, serializer):
        super().serialize(serializer)
        if isinstance(serializer, chainer.serializer.Deserializer):
            self._drop_ahead()

    def finalize(self):
        """Ends the workers and removes the spool folder.

        The batch read ahead is dropped first.
        """
        self._drop_ahead()
        self._stop()
        self._remove_spool()
