"""What googlenet_predict.py writes: the table, JSON lines, the CSV and the
pool5 features files, and when an existing file may be replaced."""
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
        """Prints one input's predictions (top_predictions' list, best
        first), unless the CSV goes to stdout, and keeps its CSV row."""
        name = shown(name)
        if self.as_json:
            print(json.dumps({'input': name, 'predictions': predictions},
                             allow_nan=False))
        elif self.csv_path != '-':
            print(name)
            width = max(3, len(str(len(predictions))))
            for rank, p in enumerate(predictions, 1):
                print('{:{}d} {:6.2f}% {}'.format(
                    rank, width, 100 * p['probability'], p['label']))
        self.rows.append([name, ''] + [
            value for p in predictions
            for value in (p['label'], repr(p['probability']))])

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


def csv_header(top):
    """The CSV's first row: input, error, then label_K and probability_K
    for each rank K from 1 to top."""
    return ['input', 'error'] + ['{}_{}'.format(field, rank)
                                 for rank in range(1, top + 1)
                                 for field in ('label', 'probability')]


def is_results_csv(path):
    """Whether path is a CSV of results, as Output writes it.

    CSV_KIND's test: what --csv may replace.

    Args:
        path: an existing, readable file.

    Returns:
        True when path begins with the header Output writes (that of one
        rank: every --top begins so).
    """
    start = ','.join(csv_header(1)).encode()
    with open(path, 'rb') as f:
        return f.read(len(start)) == start


def features_rows(path):
    """The number of rows of a features file, as save_features writes it.

    Reads only the .npy header (in a .npz, that of ``features``).

    Args:
        path: any file; read as a .npz when its name ends in .npz (any
            case), else as a .npy.

    Returns:
        N of an N x 1024 float32 array (a .npz must hold ``features`` and
        ``inputs`` alone), or None for any other file, an unreadable one
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
    if len(shape) != 2 or shape[1] != 1024 or dtype != numpy.float32:
        return None
    return shape[0]


def lists_rows_of(path, npy):
    """Whether path holds the names save_features wrote beside npy.

    The test of the .txt beside a --features .npy before it is replaced:
    a list file of the same name (Caffe's train.txt beside train.npy) is
    kept.

    Args:
        path: the existing, readable .txt.
        npy: the features file it goes with.

    Returns:
        True when npy is a features file (features_rows) and path holds a
        line per row of it.
    """
    rows = features_rows(npy)
    if rows is None:
        return False
    with open(path, 'rb') as f:
        return f.read().count(b'\n') == rows


# check_output_path's kinds: an existing output file is replaced only if
# it is what that option writes.
CSV_KIND = (is_results_csv, 'a CSV of results this project wrote')
FEATURES_KIND = (lambda path: features_rows(path) is not None,
                 'a features file this project wrote')


def check_features_path(path):
    """Refuses a --features file name that ends in neither .npz nor .npy.

    Args:
        path: --features' value; the ending's case does not matter.

    Raises:
        UserError: the name has another ending.
    """
    if not path.lower().endswith(('.npz', '.npy')):
        raise UserError('--features {}: the file name must end in .npz or '
                        '.npy'.format(path))


def feature_listing(path):
    """The .txt that holds the names of the features .npy at path.

    It lies beside the file itself, a symlink's target (which atomic_write
    replaces), so the two always go together.

    Args:
        path: the .npy (--features).

    Returns:
        The written file's path with .txt for its ending.
    """
    return os.path.splitext(written_path(path))[0] + '.txt'


def save_features(path, names, vectors):
    """Writes the pool5 vectors of the inputs, with their names.

    FILE.npz holds ``features`` (N x 1024 float32) and ``inputs`` (the N
    input names); FILE.npy holds the array, with the names one per line in
    FILE.txt beside it (feature_listing). Written atomically, in input
    order.

    Args:
        path: --features' file, ending in .npz or .npy.
        names: the N input names, in order.
        vectors: N arrays of 1 x 1024 (or any arrays whose rows joined
            make the N x 1024 array), in the same order.

    Raises:
        UserError: for a .npy, a name holds a line break (before either
            file is written).
    """
    vectors = numpy.concatenate(vectors).astype(numpy.float32)
    if path.lower().endswith('.npz'):
        with atomic_write(path) as f:
            save_npz(f, {'features': vectors,
                         'inputs': numpy.array(names, dtype=str)})
        return
    listing = feature_listing(path)
    # The file names' own bytes, so each line opens its file again; a name
    # with a line break is refused before either file is written.
    text = one_per_line(names, 'input', listing).encode('utf-8',
                                                        'surrogateescape')
    with atomic_write(path) as f:
        numpy.save(f, vectors)
    with atomic_write(listing) as f:
        f.write(text)


def check_outputs(args, paths, items):
    """Refuses, before any work, the outputs prediction must not write.

    A --csv or --features file (or the .txt beside a .npy) is refused that
    is one of the inputs, the files found in input folders included, lies
    inside an input folder, is the model or the other output, is not a
    regular file, is an existing file of another kind (CSV_KIND,
    FEATURES_KIND), or whose folder is missing or cannot be written; and
    an input whose name the .txt beside a .npy could not hold on one line
    (save_features checks again what it writes).

    Args:
        args: prediction's parsed command line (``csv``, ``features``,
            ``model``).
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
    if args.features:
        check_features_path(args.features)
        outputs.append(('--features', args.features, FEATURES_KIND))
        if args.features.lower().endswith('.npy'):
            listing = feature_listing(args.features)
            outputs.append(('--features', listing, (
                lambda path: lists_rows_of(path, args.features),
                'the names of the features file {}'.format(
                    shown(args.features)))))
            one_per_line([name for name, _ in items], 'input', listing)
    for option, path, kind in outputs:
        check_output_path(path, inputs, option, kind=kind)
        check_writable(os.path.dirname(os.path.abspath(path)), option)
        inputs.append(path)
