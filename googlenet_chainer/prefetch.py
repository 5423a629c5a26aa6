"""Decoding ahead: images decode and resize on every core while the network runs."""
import concurrent.futures
import os
import threading


def usable_cores():
    """How many cores this process may run on: its CPU affinity where the
    system reports one (a container's or taskset's limit), else all."""
    if hasattr(os, 'sched_getaffinity'):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def prefetch(function, items, ahead=2, workers=1):
    """Yields (item, future of function(item)) for each item, in order.

    ``workers`` daemon threads work through the items ahead of the caller,
    at most ``ahead`` results waiting beyond those in progress, so that
    decoding and resizing (Pillow and numpy release the GIL) overlap with
    what the caller does meanwhile (the forward pass), and with each other
    where one thread's decoding is slower than the forward pass.
    ``future.result()`` returns the result or raises what function raised.
    Closing the generator early (an error, Ctrl-C) stops the threads after
    their current items; being daemons they never hold up the process's
    exit.

    The threads start at once, not at the first ``next()``: the first
    images decode while the caller still loads its model. The result is
    an iterator whose ``close()`` (or the end of a with block) stops them,
    whether or not it was iterated.
    """
    items = iter(items)
    workers = max(1, workers)
    taking = threading.Lock()
    # One slot per item taken and not yet handed to the caller.
    slots = threading.Semaphore(max(1, ahead) + workers)
    arrived = threading.Condition()
    finished = {}
    state = {'taken': 0, 'total': None}
    stop = threading.Event()

    def work():
        while not stop.is_set():
            # Polled: a closed generator releases no more slots.
            if not slots.acquire(timeout=0.1):
                continue
            with taking:
                if state['total'] is not None:
                    return
                index = state['taken']
                try:
                    item = next(items)
                except StopIteration:
                    with arrived:
                        state['total'] = index
                        arrived.notify_all()
                    return
                state['taken'] += 1
            future = concurrent.futures.Future()
            try:
                future.set_result(function(item))
            except BaseException as e:  # the caller decides what it means
                future.set_exception(e)
            with arrived:
                finished[index] = (item, future)
                arrived.notify_all()

    def in_order():
        index = 0
        while True:
            with arrived:
                # Polled: Ctrl-C's signal may reach a prefetching thread,
                # and a main thread in an untimed wait would never see it.
                while index not in finished and index != state['total']:
                    arrived.wait(timeout=0.1)
                if index == state['total']:
                    return
                entry = finished.pop(index)
            slots.release()
            index += 1
            yield entry

    for _ in range(workers):
        threading.Thread(target=work, name='prefetch', daemon=True).start()
    return _Prefetched(in_order(), stop)


class _Prefetched:
    """prefetch's iterator: close() stops its threads even before the
    first next(), which a generator's own close() would not."""

    def __init__(self, generator, stop):
        self._generator, self._stop = generator, stop

    def __iter__(self):
        return self

    def __next__(self):
        try:
            return next(self._generator)
        except BaseException:
            self._stop.set()
            raise

    def close(self):
        self._stop.set()
        self._generator.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
