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
    """Makes a Ctrl-C end the process at once, with ``interrupted`` and
    INTERRUPTED: for a script's imports (a second or more), when nothing is
    written yet. os._exit, because an exception would surface inside the
    interrupted import as an ImportError with a traceback."""
    def interrupted(signum, frame):
        print('interrupted', file=sys.stderr, flush=True)
        os._exit(INTERRUPTED)
    signal.signal(signal.SIGINT, interrupted)


def run_interruptibly(function, *args):
    """Runs ``function(*args)``, which returns an exit code, with the
    training run's handler: a Ctrl-C raises KeyboardInterrupt in the main
    process only (loader processes forked before they ignore SIGINT run the
    handler too), and one that Python swallowed (raised inside a finalizer
    or a callback, printed as "Exception ignored") is remembered.

    Returns:
        function's exit code, or INTERRUPTED (with ``interrupted`` printed
        once) if a Ctrl-C arrived and function did not report it itself.
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
    """Raises KeyboardInterrupt again if a Ctrl-C arrived during
    run_interruptibly (one that Python swallowed, say): for a place the
    run passes often, such as each training iteration."""
    if len(_received) > 1:
        raise KeyboardInterrupt


def _on_sigint(signum, frame):
    if _received and os.getpid() == _received[0]:
        _received.append(signum)
        raise KeyboardInterrupt


def _unraisable(unraisable):
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
