"""What reaches the terminal: names made printable, and progress bars."""
import re
import sys

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
    """Text safe to print or store, on one line whatever it holds, and
    different for different texts: a file name's bytes that are not UTF-8
    (held by Python as surrogates) appear as backslash escapes (\\xe9),
    control characters as \\n, \\r, \\t, \\x1b (C1 ones and U+2028/9 as
    \\u0085), and a backslash as \\\\."""
    return _UNSAFE.sub(_escape, text)


def decoded(name):
    """A file name as text, the form class names take from folder names:
    bytes that are not UTF-8 appear as in shown() (\\xe9), the rest as it
    is, backslashes included (a folder a\\b is class a\\b)."""
    return name.encode('utf-8', 'surrogateescape').decode(
        'utf-8', 'backslashreplace')


def controls_in(text):
    """The control characters text holds, as shown() writes them ('' if
    none): a name with one cannot be printed or kept one per line."""
    return ' '.join(shown(c) for c in sorted(set(CONTROL.findall(text))))


def progress(iterable, description, enabled=True, total=None):
    """iterable with a tqdm bar on stderr (count, rate, time left); none when
    not enabled or when stderr is not a terminal, so logs get no control
    codes."""
    # Imported here: tqdm takes 60 ms of every start-up (its version
    # lookup through importlib.metadata), and prediction shows no bar.
    from tqdm import tqdm
    return tqdm(iterable, desc=description, total=total, unit='image',
                file=sys.stderr, disable=None if enabled else True)


def first_names(names, n=10):
    """Up to n names joined, and how many more: a 1000-class model's list
    would fill a screen."""
    more = len(names) - n
    return ', '.join(list(names)[:n]) + (
        ', and {} more'.format(more) if more > 0 else '')
