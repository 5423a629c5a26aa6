"""The two kinds of failure a user is told about in one line."""


class UserError(Exception):
    """A problem with the user's input; reported as one line, no traceback.

    cli.report_errors (mpi.report_errors over ranks) prints it as
    ``error: MESSAGE`` and exits 1, so the message says what is wrong in the
    user's terms and, where it can, what to do about it.
    """


class Unreachable(UserError):
    """The server could not be reached at all, as opposed to answering badly.

    download.http_get raises it for any connection error requests reports
    (a name that does not resolve, a connection refused or timed out); its
    catchers can then suggest a way round the network, as model_store does
    for the caffemodel.
    """


def one_line(exc):
    """The first line of an exception's message, for one-line reports.

    Args:
        exc: any exception.

    Returns:
        str: the first line of its message once surrounding whitespace is
        stripped, or the exception's class name when that leaves nothing.
    """
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__
