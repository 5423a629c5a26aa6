"""Decoding ahead: images decode and resize on every core while the network
runs."""
import concurrent.futures
import os
import threading


def usable_cores():
    """How many cores this process may run on.

    Returns:
        int: the size of its CPU affinity where the system reports one (a
        container's or taskset's limit), else the machine's core count (1
        if unknown).
    """
    if hasattr(os, 'sched_getaffinity'):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def prefetch(function, items, ahead=2, workers=1):
    """Runs function over items in threads, ahead of the caller.

    ``workers`` daemon threads work through the items ahead of the caller,
    taking one only while fewer than ``ahead`` + ``workers`` are taken and
    not yet handed over (``ahead`` results waiting while each thread works
    on one), so that decoding and resizing (Pillow and numpy release the
    GIL) overlap with what the caller does meanwhile (the forward pass), and
    with each other where one thread's decoding is slower than the forward
    pass. The threads start at once, not at the first ``next()``: the first
    images decode while the caller still loads its model. Being daemons
    they never hold up the process's exit.

    Args:
        function: item -> result, called in the threads, several at a
            time when ``workers`` > 1; whatever it raises (BaseException
            included) is kept for the caller (``future.result()`` raises
            it).
        items: an iterable, read by the threads one item at a time (under
            a lock). What it raises (a folder that cannot be read, say)
            ends the items there: the iterator raises it after handing
            over those taken before.
        ahead: items that may be taken and not yet handed over beyond one
            per thread; a value under 1 counts as 1.
        workers: how many threads; a value under 1 counts as 1.

    Returns:
        An iterator of (item, a done concurrent.futures.Future of
        function(item)), in the items' order. Its ``close()`` (or the end of
        a with block) stops the threads after their current items, whether
        or not it was iterated, as does an exception out of it (Ctrl-C).
    """
    return _Prefetched(function, iter(items), max(1, ahead), max(1, workers))


class _Prefetched:
    """prefetch's iterator and the state its threads share."""

    def __init__(self, function, items, ahead, workers):
        self._function = function
        self._items = items
        self._taking = threading.Lock()
        # One slot per item taken and not yet handed to the caller.
        self._slots = threading.Semaphore(ahead + workers)
        self._arrived = threading.Condition()
        self._finished = {}
        self._taken = 0
        self._total = None
        self._error = None
        self._stop = threading.Event()
        self._generator = self._in_order()
        for _ in range(workers):
            threading.Thread(target=self._work, name='prefetch',
                             daemon=True).start()

    def _work(self):
        """A thread's loop: takes the next item while a slot is free and
        files its future under the item's index."""
        while not self._stop.is_set():
            # Polled: a closed iterator releases no more slots.
            if not self._slots.acquire(timeout=0.1):
                continue
            with self._taking:
                if self._total is not None:
                    return
                index = self._taken
                try:
                    item = next(self._items)
                except BaseException as e:
                    with self._arrived:
                        self._total = index
                        if not isinstance(e, StopIteration):
                            self._error = e
                        self._arrived.notify_all()
                    return
                self._taken += 1
            future = concurrent.futures.Future()
            try:
                future.set_result(self._function(item))
            except BaseException as e:  # the caller decides what it means
                future.set_exception(e)
            with self._arrived:
                self._finished[index] = (item, future)
                self._arrived.notify_all()

    def _in_order(self):
        """The finished entries in the items' order, each freeing its
        slot."""
        index = 0
        while True:
            with self._arrived:
                # Polled: Ctrl-C's signal may reach a prefetching thread,
                # and a main thread in an untimed wait would never see it.
                while index not in self._finished and index != self._total:
                    self._arrived.wait(timeout=0.1)
                if index == self._total:
                    if self._error is not None:
                        raise self._error
                    return
                entry = self._finished.pop(index)
            self._slots.release()
            index += 1
            yield entry

    def __iter__(self):
        return self

    def __next__(self):
        try:
            return next(self._generator)
        except BaseException:
            self._stop.set()
            raise

    def close(self):
        """Stops the threads after their current items."""
        self._stop.set()
        self._generator.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
