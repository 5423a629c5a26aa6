"""What reaches the terminal: names made printable, and progress bars."""
import re
import sys
import unicodedata

# What shown() escapes: backslashes (so that its escapes have one reading),
# the control characters (C0, DEL, C1), the line and paragraph separators
# (str.splitlines breaks lines at them) and lone surrogates (a file name's
# undecodable bytes, as os.fsdecode holds them).
_UNSAFE = re.compile('[\\\\\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]')
_NAMED = {'\\': '\\\\', '\n': '\\n', '\r': '\\r', '\t': '\\t'}
# Characters no name may hold: the control characters and separators.
CONTROL = re.compile('[\x00-\x1f\x7f-\x9f\u2028\u2029]')
# Where str.splitlines (and so many readers of a names file) ends a line.
LINE_BREAK = re.compile('[\n\r\x0b\x0c\x1c-\x1e\x85\u2028\u2029]')


def _escape(match):
    """shown()'s escape of one character that _UNSAFE matched."""
    char = match.group()
    code = ord(char)
    if char in _NAMED:
        return _NAMED[char]
    if 0xdc80 <= code <= 0xdcff:  # surrogateescape's form of a byte
        return '\\x{:02x}'.format(code - 0xdc00)
    if code < 0x80:
        return '\\x{:02x}'.format(code)
    # \u, not \x: a C1 control stays distinct from the undecodable byte
    # of the same value.
    return '\\u{:04x}'.format(code)


def shown(text):
    """Text safe to print or store, on one line whatever it holds.

    A file name's bytes that are not UTF-8 (held by Python as surrogates)
    appear as backslash escapes (\\xe9), control characters as \\n, \\r,
    \\t, \\x1b (C1 ones and U+2028/9 as \\u0085), and a backslash as \\\\,
    so that different texts stay different once shown.

    Args:
        text: str, such as a path from os.fsdecode or os.scandir.

    Returns:
        str: text with those characters escaped, the rest as it is.
    """
    return _UNSAFE.sub(_escape, text)


def printable_streams():
    """Makes stdout and stderr escape what their encoding cannot write.

    A valid name the terminal's encoding lacks (\u732b on an ASCII or
    Latin-1 terminal) would otherwise end a script with a
    UnicodeEncodeError traceback halfway through its output; it is
    written as backslashreplace escapes it instead. A stream that already
    has an error handler of its own, or is not a text file Python opened
    (a test's io.StringIO), is left as it is.
    """
    for stream in (sys.stdout, sys.stderr):
        if getattr(stream, 'errors', None) == 'strict' and hasattr(
                stream, 'reconfigure'):
            stream.reconfigure(errors='backslashreplace')


def decoded(name):
    """A file name as text, the form class names take from folder names.

    Args:
        name: str, a file name as os.fsdecode gives it (bytes that are not
            UTF-8 as surrogateescape's lone surrogates).

    Returns:
        str: bytes that are not UTF-8 as in shown() (\\xe9), the rest as it
        is, backslashes included (a folder a\\b is class a\\b), in
        Unicode's composed form (same_name).
    """
    return same_name(name.encode('utf-8', 'surrogateescape').decode(
        'utf-8', 'backslashreplace'))


def same_name(text):
    """text in Unicode's composed normal form (NFC): a name typed on one
    system and listed on another is one name, though macOS writes file
    names decomposed (an e and a combining accent for é) and most other
    systems composed."""
    return unicodedata.normalize('NFC', text)


def controls_in(text):
    """The control characters text holds, as shown() writes them.

    A name with one cannot be printed or kept one per line.

    Args:
        text: str, such as a class name.

    Returns:
        str: each distinct character of CONTROL in text, sorted, escaped
        as shown() escapes it, joined by spaces; '' if there are none.
    """
    return ' '.join(shown(c) for c in sorted(set(CONTROL.findall(text))))


def progress(iterable, description, enabled=True, total=None):
    """iterable with a tqdm bar on stderr (count, rate, time left).

    No bar when not enabled or when stderr is not a terminal, so logs get
    no control codes. The bar counts in images (tqdm's unit).

    Args:
        iterable: what to go through, or None for a bar advanced by hand
            with its update().
        description: the bar's label.
        enabled: False for no bar even on a terminal (--no-progress).
        total: the count the bar runs to, where iterable has no len()
            or is None.

    Returns:
        A tqdm: iterate it as iterable; it is also a context manager that
        closes the bar.
    """
    # Imported here: tqdm takes 60 ms of every start-up (its version
    # lookup through importlib.metadata), and prediction shows no bar.
    from tqdm import tqdm
    return tqdm(iterable, desc=description, total=total, unit='image',
                file=sys.stderr, disable=None if enabled else True)


def first_names(names, n=10):
    """Up to n names joined, and how many more.

    A 1000-class model's list would fill a screen.

    Args:
        names: a sized iterable of str, in the order to show.
        n: how many to name.

    Returns:
        str: ``'a, b, c'``, or ``'a, b, c, and 7 more'``.
    """
    more = len(names) - n
    return ', '.join(list(names)[:n]) + (
        ', and {} more'.format(more) if more > 0 else '')
