"""The Ctrl-C policy, in one place: a Ctrl-C at any moment prints
``interrupted`` and exits 130, leaving only complete files behind.

Three moments need their own handling: a script's imports, before anything is
written (``exit_on_early_interrupt``); a training run, whose loader processes
share the terminal's process group and whose finalizers may swallow the
KeyboardInterrupt (``run_interruptibly``, ``raise_if_interrupted``); and
blocks that must not be left half done (``sigint_deferred``). The scripts'
``report_errors`` turn the KeyboardInterrupt into the line and the code.
"""
import contextlib
import os
import signal
import sys
import threading

INTERRUPTED = 130  # 128 + SIGINT, as a shell reports a process it ended
# While run_interruptibly runs: [the main process's PID, then one entry per
# Ctrl-C received].
_received = []


def exit_on_early_interrupt():
    """Makes a Ctrl-C print ``interrupted`` and end the process at once.

    For a script's imports (a second or more), when nothing is written
    yet; the exit code is INTERRUPTED. os._exit, because an exception would
    surface inside the interrupted import as an ImportError with a
    traceback. The handler stays until another replaces it
    (run_interruptibly's, for its run).
    """
    def interrupted(signum, frame):
        print('interrupted', file=sys.stderr, flush=True)
        os._exit(INTERRUPTED)
    signal.signal(signal.SIGINT, interrupted)


def run_interruptibly(function, *args):
    """Runs ``function(*args)`` under the training run's Ctrl-C handler.

    A Ctrl-C raises KeyboardInterrupt in the main process only (loader
    processes forked before they ignore SIGINT run the handler too), and
    one that Python swallowed (raised inside a finalizer or a callback,
    where it would be printed as "Exception ignored") is remembered for
    raise_if_interrupted and for the exit code, and not printed. Afterwards
    the previous handler is back, and sys.unraisablehook is Python's own.

    Args:
        function: the run; returns an exit code.
        *args: its arguments.

    Returns:
        function's exit code, or INTERRUPTED (with ``interrupted`` printed
        once) if a Ctrl-C arrived and function did not report it itself.

    Raises:
        BaseException: whatever function raises, KeyboardInterrupt
            included, passes through once the handlers are put back.
    """
    _received[:] = [os.getpid()]
    previous = signal.signal(signal.SIGINT, _on_sigint)
    sys.unraisablehook = _unraisable
    try:
        code = function(*args)
    finally:
        signal.signal(signal.SIGINT, previous)
        sys.unraisablehook = sys.__unraisablehook__
    if len(_received) > 1 and code != INTERRUPTED:
        print('interrupted', file=sys.stderr)
        code = INTERRUPTED
    return code


def raise_if_interrupted():
    """Raises KeyboardInterrupt again if run_interruptibly saw a Ctrl-C.

    For a place the run passes often, such as each training iteration
    (extensions.stop_if_interrupted), where a Ctrl-C that Python swallowed
    surfaces after all.

    Raises:
        KeyboardInterrupt: a Ctrl-C arrived during the current run of
            run_interruptibly (or the last one, after it returned).
    """
    if len(_received) > 1:
        raise KeyboardInterrupt


def _on_sigint(signum, frame):
    """run_interruptibly's handler: records the Ctrl-C and raises
    KeyboardInterrupt in the main process; a forked process ignores it."""
    if _received and os.getpid() == _received[0]:
        _received.append(signum)
        raise KeyboardInterrupt


def _unraisable(unraisable):
    """sys.unraisablehook during run_interruptibly: every exception but a
    KeyboardInterrupt reaches Python's own hook."""
    # A swallowed Ctrl-C is in _received already, reported once at the end.
    if not issubclass(unraisable.exc_type, KeyboardInterrupt):
        sys.__unraisablehook__(unraisable)


@contextlib.contextmanager
def sigint_deferred():
    """Holds a Ctrl-C back until the block ends, then delivers it to the
    handler that was in place: for blocks that must not be left half done,
    such as starting or stopping worker processes (a process started but
    not yet recorded would outlive this one). Only the main thread can
    change handlers; elsewhere, and where Python has no handler, the
    block runs as it is.
    """
    # None: the handler is not Python's (at interpreter exit, collectors
    # run after the signal module has let go of its handlers).
    if threading.current_thread() is not threading.main_thread() or \
            signal.getsignal(signal.SIGINT) is None:
        yield
        return
    held = []
    previous = signal.signal(signal.SIGINT,
                             lambda signum, frame: held.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if held:
            signal.raise_signal(signal.SIGINT)
