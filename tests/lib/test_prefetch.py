"""prefetch: decoding ahead in threads."""
import threading
import time

from googlenet_chainer.errors import UserError
from googlenet_chainer.prefetch import prefetch


def wait_for(condition, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return condition()


def test_prefetch_overlaps_keeps_order_and_errors_in_place():
    started = {}

    def work(item):
        started[item] = threading.Event()
        started[item].set()
        if item == 2:
            raise UserError('bad {}'.format(item))
        return item * 10

    got = []
    for item, future in prefetch(work, range(5), ahead=2):
        if item == 0:
            # The next item is prepared while the caller still holds this.
            assert wait_for(lambda: 1 in started)
        try:
            got.append(future.result())
        except UserError as e:
            got.append(str(e))
    assert got == [0, 10, 'bad 2', 30, 40]


def test_prefetch_stays_ahead_by_at_most_its_bound_and_stops_when_closed():
    calls = []
    items = prefetch(lambda i: calls.append(i) or i, range(1000), ahead=3)
    assert next(items)[0] == 0
    assert wait_for(lambda: len(calls) >= 4)
    # Three waiting in the queue, one held by the blocked thread.
    assert not wait_for(lambda: len(calls) > 5, timeout=0.5)
    items.close()
    count = len(calls)
    assert not wait_for(lambda: len(calls) > count + 1, timeout=0.5)


def test_prefetch_with_two_workers_decodes_two_at_once_in_order():
    both = threading.Barrier(2, timeout=10)

    def work(item):
        if item < 2:
            both.wait()  # returns only when items 0 and 1 run together
        time.sleep(0.001 * (item % 3))  # finishing out of order
        if item == 4:
            raise UserError('bad 4')
        return item * 10
    got = []
    for item, future in prefetch(work, range(9), ahead=2, workers=2):
        try:
            got.append((item, future.result()))
        except UserError as e:
            got.append((item, str(e)))
    assert got == [(i, 'bad 4' if i == 4 else i * 10) for i in range(9)]


def test_prefetch_starts_before_the_first_next_and_close_stops_it():
    calls = []
    with prefetch(lambda i: calls.append(i) or i, range(1000), ahead=2):
        # The caller loads its model meanwhile.
        assert wait_for(lambda: len(calls) >= 3)
    count = len(calls)
    assert count <= 4
    assert not wait_for(lambda: len(calls) > count, timeout=0.5)


def test_items_that_raise_end_the_iteration_with_their_error():
    def items():
        yield 1
        yield 2
        raise UserError('cannot read folder x')

    got = []
    done = threading.Event()

    def consume():
        try:
            for item, future in prefetch(lambda i: i * 10, items(),
                                         workers=2):
                got.append(future.result())
        except UserError as e:
            got.append(str(e))
        done.set()

    threading.Thread(target=consume, daemon=True).start()
    assert done.wait(10), 'the iteration hung'
    assert got == [10, 20, 'cannot read folder x']
