"""What googlenet_predict.py writes: the table, JSON lines, the CSV, the
pool5 features and probabilities files, and when an existing file may be
replaced."""
import csv
import io
import json
import os
import sys
import zipfile

import numpy

from googlenet_chainer.console import shown
from googlenet_chainer.errors import UserError
from googlenet_chainer.files import (atomic_write, check_output_path,
                                     check_writable, read_npy_header,
                                     save_npz, written_path)
from googlenet_chainer.inputs import ImageURL
from googlenet_chainer.labels import one_per_line


class Output:
    """Prints each input's result, or its error, as it comes.

    A table (or one JSON object per line with --json) on stdout, errors on
    stderr; with a CSV path, also one row per input, written (atomically)
    at the end. Names are shown() so undecodable bytes in file names cannot
    crash a strict UTF-8 terminal. ``failed`` counts the errors.

    Args:
        as_json: print JSON lines instead of the table (--json).
        csv_path: None, a CSV file to write at close (--csv), or '-' to
            print the CSV rows on stdout at close instead of the table.
        top: the predictions per input the CSV has columns for.
    """

    def __init__(self, as_json, csv_path, top):
        self.as_json = as_json
        self.csv_path = csv_path
        self.rows = [csv_header(top)]
        self.failed = 0

    def result(self, name, predictions):
        """Prints one input's predictions (inference.top_predictions'
        list, best first), unless the CSV goes to stdout, and keeps its CSV
        row."""
        name = shown(name)
        if self.as_json:
            print(json.dumps({'input': name, 'predictions': predictions},
                             allow_nan=False))
        elif self.csv_path != '-':
            print(name)
            width = max(3, len(str(len(predictions))))
            for rank, p in enumerate(predictions, 1):
                print('{:{}d} {:6.2f}% {}'.format(
                    rank, width, 100 * p['probability'], label(p)))
        self.rows.append([name, ''] + rank_values(predictions))

    def error(self, name, error):
        """Prints why an input failed, on stderr (and as a JSON line with
        --json), counts it in ``failed`` and keeps its CSV row."""
        name = shown(name)
        self.failed += 1
        print('error: {}: {}'.format(name, error), file=sys.stderr)
        if self.as_json:
            print(json.dumps({'input': name, 'error': str(error)}))
        # As many fields as the header, as strict CSV readers want.
        self.rows.append([name, str(error)] + [''] * (len(self.rows[0]) - 2))

    def close(self):
        """Writes the CSV file atomically, or prints its rows for '-';
        nothing without a CSV path."""
        if self.csv_path is None:
            return
        text = io.StringIO()
        csv.writer(text).writerows(self.rows)
        if self.csv_path == '-':
            sys.stdout.write(text.getvalue())
            return
        with atomic_write(self.csv_path) as f:
            f.write(text.getvalue().encode('utf-8'))


def label(prediction):
    """A prediction's class as the table prints it.

    Args:
        prediction: one of inference.top_predictions' dicts.

    Returns:
        str: the class id, then the name where it differs (a
        synset_words.txt line: ``n01440764 tench, Tinca tinca``).
    """
    if prediction['class_id'] == prediction['name']:
        return prediction['name']
    return '{} {}'.format(prediction['class_id'], prediction['name'])


def csv_header(top):
    """The CSV's first row: input, error, then rank_columns(top)."""
    return ['input', 'error'] + rank_columns(top)


def rank_columns(top):
    """The CSV columns of an input's classes by rank.

    Prediction's CSV and evaluation's predictions.csv share them.

    Args:
        top: the ranks.

    Returns:
        [str]: for each rank K from 1 to top, its class's index_K,
        class_id_K and name_K, then probability_K (rank_values fills
        them).
    """
    return ['{}_{}'.format(field, rank) for rank in range(1, top + 1)
            for field in ('index', 'class_id', 'name', 'probability')]


def rank_values(predictions):
    """The values of rank_columns for an input's classes.

    Args:
        predictions: inference.top_predictions' list, best first.

    Returns:
        list: four values per prediction, the probability with all its
        digits (repr).
    """
    return [value for p in predictions
            for value in (p['index'], p['class_id'], p['name'],
                          repr(p['probability']))]


def is_results_csv(path):
    """Whether path is a CSV of results, as Output writes it.

    CSV_KIND's test: what --csv may replace.

    Args:
        path: an existing, readable file.

    Returns:
        True when path begins with the fields every version of Output's
        header begins with (``input,error,``), whatever the columns of
        the classes after them.
    """
    start = b'input,error,'
    with open(path, 'rb') as f:
        return f.read(len(start)) == start


def npy_shape(path):
    """The shape of a 2-D float32 array in a .npy or .npz file.

    Reads only the .npy header (in a .npz, that of ``features``, which
    must be there with ``inputs`` alone, as save_features writes it).

    Args:
        path: any file; read as a .npz when its name ends in .npz (any
            case), else as a .npy.

    Returns:
        (rows, columns), or None for any other file, an unreadable one
        included.
    """
    try:
        if path.lower().endswith('.npz'):
            with zipfile.ZipFile(path) as archive:
                if sorted(archive.namelist()) != ['features.npy',
                                                  'inputs.npy']:
                    return None
                f = archive.open('features.npy')
        else:
            f = open(path, 'rb')
        with f:
            header = read_npy_header(f)
    except (OSError, ValueError, zipfile.BadZipFile):
        return None
    if header is None:
        return None
    shape, _, dtype = header
    return shape if len(shape) == 2 and dtype == numpy.float32 else None


def features_rows(path):
    """The number of rows of a features file, as save_features writes it.

    Args:
        path: any file (npy_shape).

    Returns:
        N of an N x 1024 float32 array, or None for any other file.
    """
    shape = npy_shape(path)
    return shape[0] if shape is not None and shape[1] == 1024 else None


def probabilities_rows(path):
    """The number of rows of a probabilities file, as save_rows writes it
    for --probabilities.

    Args:
        path: any file (npy_shape).

    Returns:
        N of an N x classes float32 .npy whose first row is a probability
        distribution (non-negative, summing to 1 within 1e-3, far above
        float32 rounding), or None for any other file: a features .npy
        (pool5 rows sum to far more) included.
    """
    shape = npy_shape(path) if path.lower().endswith('.npy') else None
    if not shape or not shape[0]:
        return None
    try:
        first = numpy.load(path, mmap_mode='r')[0].astype(numpy.float64)
    except (OSError, ValueError):
        return None
    if (first >= 0).all() and abs(first.sum() - 1) < 1e-3:
        return shape[0]
    return None


def lists_rows_of(path, rows):
    """Whether path holds the names save_rows wrote beside a .npy.

    The test of the .txt beside a --features or --probabilities .npy
    before it is replaced: a list file of the same name (Caffe's train.txt
    beside train.npy) is kept.

    Args:
        path: the existing, readable .txt.
        rows: the rows of the .npy it goes with (features_rows',
            probabilities_rows'); None where that is not this project's.

    Returns:
        True when rows is a number and path holds a line per row.
    """
    if rows is None:
        return False
    with open(path, 'rb') as f:
        return f.read().count(b'\n') == rows


# check_output_path's kinds: an existing output file is replaced only if
# it is what that option writes.
CSV_KIND = (is_results_csv, 'a CSV of results this project wrote')
# (option, its file's rows (None: not its kind), what the file is).
ROW_FILES = (('--features', features_rows, 'features file'),
             ('--probabilities', probabilities_rows, 'probabilities file'))


def check_row_file_path(option, path):
    """Refuses a --features file name that ends in neither .npz nor .npy,
    and a --probabilities one that does not end in .npy.

    Args:
        option: '--features' or '--probabilities'.
        path: its value; the ending's case does not matter.

    Raises:
        UserError: the name has another ending.
    """
    endings = ('.npz', '.npy') if option == '--features' else ('.npy',)
    if not path.lower().endswith(endings):
        raise UserError('{} {}: the file name must end in {}'.format(
            option, path, ' or '.join(endings)))


def names_listing(path):
    """The .txt that holds the input names of the .npy at path.

    It lies beside the file itself, a symlink's target (which atomic_write
    replaces), so the two always go together.

    Args:
        path: the .npy (--features, --probabilities).

    Returns:
        The written file's path with .txt for its ending.
    """
    return os.path.splitext(written_path(path))[0] + '.txt'


def save_rows(path, names, rows):
    """Writes a .npy of one row per input, with their names beside it.

    The array goes to path and the names, one per line, to the .txt
    beside it (names_listing), each atomically, in input order.

    Args:
        path: the .npy (--features, --probabilities).
        names: the N input names, in order.
        rows: N arrays of 1 x width (or any arrays whose rows joined make
            the N x width array), in the same order; saved as float32.

    Raises:
        UserError: a name holds a line break (before either file is
            written).
    """
    listing = names_listing(path)
    # The file names' own bytes, so each line opens its file again; a name
    # with a line break is refused before either file is written.
    text = one_per_line(names, 'input', listing).encode('utf-8',
                                                        'surrogateescape')
    with atomic_write(path) as f:
        numpy.save(f, numpy.concatenate(rows).astype(numpy.float32))
    with atomic_write(listing) as f:
        f.write(text)


def save_features(path, names, vectors):
    """Writes the pool5 vectors of the inputs, with their names.

    FILE.npz holds ``features`` (N x 1024 float32) and ``inputs`` (the N
    input names); FILE.npy holds the array, with the names one per line in
    FILE.txt beside it (save_rows). Written atomically, in input order.

    Args:
        path: --features' file, ending in .npz or .npy.
        names: the N input names, in order.
        vectors: N arrays of 1 x 1024 (or any arrays whose rows joined
            make the N x 1024 array), in the same order.

    Raises:
        UserError: for a .npy, a name holds a line break (before either
            file is written).
    """
    if not path.lower().endswith('.npz'):
        save_rows(path, names, vectors)
        return
    with atomic_write(path) as f:
        save_npz(f, {'features': numpy.concatenate(vectors).astype(
            numpy.float32), 'inputs': numpy.array(names, dtype=str)})


def check_outputs(args, paths, items):
    """Refuses, before any work, the outputs prediction must not write.

    A --csv, --features or --probabilities file (or the .txt beside a
    .npy) is refused that is one of the inputs, the files found in input
    folders included, lies inside an input folder, is the model or another
    output, is not a regular file, is an existing file of another kind
    (CSV_KIND, ROW_FILES), or whose folder is missing or cannot be
    written; and an input whose name the .txt beside a .npy could not hold
    on one line (save_rows checks again what it writes).

    Args:
        args: prediction's parsed command line (``csv``, ``features``,
            ``probabilities``, ``model``).
        paths: the files and folders given as inputs.
        items: expand_inputs's (name, source) pairs.

    Raises:
        UserError: one of the outputs is refused (naming its option), or
            an input's name holds a line break where a .txt is to list it.
    """
    inputs = list(paths) + [source for _, source in items
                            if isinstance(source, str) and
                            not isinstance(source, ImageURL)]
    inputs += [args.model] if args.model else []
    outputs = [('--csv', args.csv, CSV_KIND)] if args.csv not in (
        None, '-') else []
    for option, rows, what in ROW_FILES:
        path = getattr(args, option[2:])
        if not path:
            continue
        check_row_file_path(option, path)
        outputs.append((option, path, (
            lambda p, rows=rows: rows(p) is not None,
            'a {} this project wrote'.format(what))))
        if path.lower().endswith('.npy'):
            listing = names_listing(path)
            outputs.append((option, listing, (
                lambda p, path=path, rows=rows: lists_rows_of(p, rows(path)),
                'the names of the {} {}'.format(what, shown(path)))))
            one_per_line([name for name, _ in items], 'input', listing)
    for option, path, kind in outputs:
        check_output_path(path, inputs, option, kind=kind)
        check_writable(os.path.dirname(os.path.abspath(path)), option)
        inputs.append(path)
