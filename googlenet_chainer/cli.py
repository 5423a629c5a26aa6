"""What every script's command line shares: exit codes, types, options."""
import argparse
import math
import os
import re
import sys

from googlenet_chainer.console import printable_streams
from googlenet_chainer.errors import UserError
from googlenet_chainer.images import DEFAULT_MAX_PIXELS
from googlenet_chainer.model_store import MODEL_NAME


class ArgumentParser(argparse.ArgumentParser):
    """argparse's parser, whose usage errors are one line: the error, and
    where the options are listed, exit code 2 (argparse's, as a Unix tool's
    for a command line it cannot take), without the usage block that would
    bury the line under every option's name. Its output, --help's
    included, never fails on a character the terminal cannot show
    (console.printable_streams)."""

    def parse_known_args(self, args=None, namespace=None):
        """argparse's, once stdout and stderr escape what their encoding
        cannot write: an option's value is echoed in its error.

        Args:
            args: the arguments; None for sys.argv[1:].
            namespace: as argparse takes it.

        Returns:
            (argparse.Namespace, the arguments not taken), as argparse's.
        """
        printable_streams()
        return super().parse_known_args(args, namespace)

    def error(self, message):
        """Prints 'PROG: error: MESSAGE (PROG --help lists the options)'
        on stderr and exits 2.

        Args:
            message: argparse's words.

        Raises:
            SystemExit: always, code 2.
        """
        self.exit(2, '{0}: error: {1} ({0} --help lists the options)\n'
                  .format(self.prog, message))


def report_errors(function, *args, **kwargs):
    """Runs a script's work and turns how it ended into an exit code.

    A UserError becomes one line on stderr and exit code 1, Ctrl-C
    ``interrupted`` and 130, and a reader of stdout that went away
    (``| head``) a quiet stop with 141, as a Unix tool killed by SIGPIPE.
    Any other exception is a bug: it propagates, with its traceback. A
    character stdout's or stderr's encoding lacks is written escaped
    (console.printable_streams), never a UnicodeEncodeError.

    Args:
        function: the work; called as function(*args, **kwargs).
        *args: its positional arguments.
        **kwargs: its keyword arguments.

    Returns:
        The exit code: function's result, 0 where that is None; else 1,
        130 or 141 as above.
    """
    printable_streams()
    try:
        result = function(*args, **kwargs)
    except UserError as e:
        print('error: {}'.format(e), file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print('interrupted', file=sys.stderr)
        return 130
    except BrokenPipeError:
        return reader_gone()
    return 0 if result is None else result


def reader_gone():
    """Stops writing to a stdout whose reader went away (``| head``).

    What is still buffered would fail again when Python flushes stdout at
    exit: stdout is pointed at /dev/null (the recipe of Python's signal
    documentation).

    Returns:
        141, the exit code of a Unix tool killed by SIGPIPE.
    """
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 141


def positive_int(text):
    """An argparse type: a whole number above zero.

    Args:
        text: the option's value as given.

    Returns:
        The int.

    Raises:
        argparse.ArgumentTypeError: text is not such a number.
    """
    return _whole_in(text, lambda value: value > 0, 'a positive whole number')


def non_negative_int(text):
    """An argparse type: a whole number, zero or above (seeds, counts that
    may be none).

    Args:
        text: the option's value as given.

    Returns:
        The int.

    Raises:
        argparse.ArgumentTypeError: text is not such a number.
    """
    return _whole_in(text, lambda value: value >= 0,
                     'a whole number, zero or above')


def random_seed(text):
    """An argparse type: a seed numpy.random.seed takes, 0 to 2**32 - 1.

    Args:
        text: the option's value as given.

    Returns:
        The int.

    Raises:
        argparse.ArgumentTypeError: text is not a whole number in that
            range.
    """
    value = non_negative_int(text)
    if value >= 2 ** 32:
        raise argparse.ArgumentTypeError(
            'expected a seed from 0 to 4294967295, got {!r}'.format(text))
    return value


def positive_float(text):
    """An argparse type: a finite number above zero.

    Args:
        text: the option's value as given.

    Returns:
        The float.

    Raises:
        argparse.ArgumentTypeError: text is not such a number (NaN and
            infinity are not).
    """
    return _finite_in(text, lambda value: value > 0, 'a positive number')


def non_negative_float(text):
    """An argparse type: a finite number, zero or above.

    Args:
        text: the option's value as given.

    Returns:
        The float.

    Raises:
        argparse.ArgumentTypeError: text is not such a number (NaN and
            infinity are not).
    """
    return _finite_in(text, lambda value: value >= 0,
                      'a number, zero or above')


def unit_fraction(text):
    """An argparse type: a finite number in [0, 1) (a momentum).

    Args:
        text: the option's value as given.

    Returns:
        The float.

    Raises:
        argparse.ArgumentTypeError: text is not a number in that range.
    """
    return _finite_in(text, lambda value: 0 <= value < 1,
                      'a number from 0 up to (not including) 1')


def _whole_in(text, accept, expected):
    """int(text) if accept takes it, else the ArgumentTypeError that says
    what was ``expected``."""
    try:
        value = int(text)
    except ValueError:
        value = None
    if value is None or not accept(value):
        raise argparse.ArgumentTypeError('expected {}, got {!r}'.format(
            expected, text))
    return value


def _finite_in(text, accept, expected):
    """float(text) if it is finite and accept takes it, else the
    ArgumentTypeError that says what was ``expected``."""
    try:
        value = float(text)
    except ValueError:
        value = float('nan')
    if not (math.isfinite(value) and accept(value)):
        raise argparse.ArgumentTypeError('expected {}, got {!r}'.format(
            expected, text))
    return value


def snapshot_interval(text):
    """An argparse type: 'N' (iterations), 'N epoch' or 'N iteration', as
    Chainer's triggers take them.

    Args:
        text: the option's value as given; plurals ('2 epochs') and spaces
            around the parts are fine.

    Returns:
        (N, 'epoch' or 'iteration'): a trigger for Chainer's extensions.

    Raises:
        argparse.ArgumentTypeError: text is not of that form, or N is 0.
    """
    match = re.fullmatch(r'\s*(\d+)\s*(epochs?|iterations?)?\s*', text)
    if not match or int(match.group(1)) < 1:
        raise argparse.ArgumentTypeError(
            'expected "N epoch" or "N iteration" with N > 0, got {!r}'.format(
                text))
    unit = match.group(2) or 'iteration'
    return int(match.group(1)), unit.rstrip('s')


class SnapshotInterval(argparse.Action):
    """--snapshot-interval's action: its words as one value or two
    (``2 epoch`` or ``"2 epoch"``), read by snapshot_interval. Use with
    nargs='+'."""

    def __call__(self, parser, namespace, values, option_string=None):
        try:
            interval = snapshot_interval(' '.join(values))
        except argparse.ArgumentTypeError as e:
            parser.error('argument {}: {}'.format(option_string, e))
        setattr(namespace, self.dest, interval)


def add_model_option(parser):
    """Adds --model, as prediction, evaluation and export take it: None
    stands for the 1000-class model in Chainer's model folder
    (model_store.default_model).

    Args:
        parser: an argparse parser or argument group.
    """
    parser.add_argument('--model', default=None,
                        help='a model this project wrote (default: {} in '
                        'Chainer\'s model folder, which '
                        'googlenet_predict.py converts from BVLC\'s '
                        'caffemodel on its first run)'.format(MODEL_NAME))


def add_labels_option(parser):
    """Adds --labels, the class names of a model: a file of one per line
    (default None: those stored with the model, else synset_words.txt's
    for 1000 classes; labels.model_class_names).

    Args:
        parser: an argparse parser or argument group.
    """
    parser.add_argument('--labels', help='class names, one per line '
                        '(default: those stored with the model; '
                        'synset_words.txt for ImageNet\'s 1000 classes)')


def add_device_option(parser):
    """Adds -d/--device, a Chainer device spec, and the original's
    -g/--gpu, an int in the same ``device`` (devices.get_device takes both).

    Args:
        parser: an argparse parser or argument group.
    """
    parser.add_argument('-d', '--device', default='@numpy',
                        help='Chainer device spec, e.g. @numpy (the CPU) or '
                        '@cupy:0 (default: %(default)s)')
    parser.add_argument('-g', '--gpu', dest='device', type=int,
                        help='the original\'s option: GPU id, -1 for the '
                        'CPU; -g N is -d @cupy:N (default: --device)')


def add_max_pixels_option(parser):
    """Adds --max-pixels, the size (width x height) over which images are
    refused undecoded.

    Args:
        parser: an argparse parser or argument group.
    """
    parser.add_argument('--max-pixels', type=positive_int,
                        default=DEFAULT_MAX_PIXELS,
                        help='refuse images of more pixels (width x height;'
                        ' default: %(default)s)')


def add_progress_option(parser):
    """Adds --no-progress: no progress bars even on a terminal.

    Args:
        parser: an argparse parser or argument group.
    """
    parser.add_argument('--no-progress', action='store_true',
                        help='no progress bars (default: shown on a '
                        'terminal only, so logs get no control codes)')


def parse_arguments(parser, argv=None):
    """parser.parse_args(argv), and which options argv gives.

    argparse sets an option's default only where the namespace has no
    such attribute yet, so a second parse into a namespace whose every
    attribute is a marker leaves the marker wherever argv gives nothing,
    whatever the default: an option given with its default's value counts
    as given.

    Args:
        parser: an argparse.ArgumentParser.
        argv: the arguments; None for sys.argv[1:].

    Returns:
        argparse.Namespace: parse_args', with ``given``, the frozenset of
        the dests of the options argv gives.
    """
    args = parser.parse_args(argv)
    unset = object()
    probe = parser.parse_args(argv, argparse.Namespace(
        **{dest: unset for dest in vars(args)}))
    args.given = frozenset(dest for dest, value in vars(probe).items()
                           if value is not unset)
    return args
