"""The two kinds of failure a user is told about in one line."""

class UserError(Exception):
    """A problem with the user's input; reported as one line, no traceback."""


class Unreachable(UserError):
    """The server could not be reached at all (as opposed to answering badly)."""


def one_line(exc):
    """The first line of an exception's message, for one-line reports."""
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__
