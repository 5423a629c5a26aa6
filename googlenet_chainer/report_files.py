"""The files training and evaluation keep a report in: report.json,
report.txt, the confusion figures, predictions.csv and report.html."""
import collections
import csv
import io
import json
import os

import numpy

from googlenet_chainer.console import decoded, shown
from googlenet_chainer.errors import UserError
from googlenet_chainer.files import atomic_write
from googlenet_chainer.inference import top_predictions
from googlenet_chainer.labels import class_fields
from googlenet_chainer.page import write_page
from googlenet_chainer.plots import plot_confusion, plot_pairs
from googlenet_chainer.reports import (GRID_LIMIT, confident_mistakes,
                                       most_confused)
from googlenet_chainer.results import rank_columns, rank_values

# The mistakes report.html shows as thumbnails, and the classes per image
# predictions.csv lists.
MISTAKES_SHOWN = 48
PREDICTIONS_TOP = 5
FILES = ('report.json', 'report.txt', 'confusion.png',
         'confusion_normalized.png', 'predictions.csv', 'report.html')

Scored = collections.namedtuple('Scored',
                                'probs pairs class_names max_pixels')
Scored.__doc__ = """What a report scored, image by image.

Attributes:
    probs: float32 N x classes, a row per image.
    pairs: the N (path, label) scored, in probs' order.
    class_names: the model's, in class order.
    max_pixels: images.open_image's limit, for the page's thumbnails.
"""


def report_files_in(folder):
    """The report files (FILES) a folder holds already.

    Args:
        folder: any path; it need not exist.

    Returns:
        [name] in FILES' order.
    """
    return [name for name in FILES
            if os.path.lexists(os.path.join(folder, name))]


def check_replaceable(folder, option):
    """Refuses a folder whose report files are not an earlier report's:
    a page or a table of the user's own under one of FILES' names would
    be replaced.

    Args:
        folder: the output folder (--out).
        option: its name in the message.

    Raises:
        UserError: folder holds one of FILES and no report.json of this
            project's (a JSON object with its classes, confusion and
            accuracy), naming the first such file.
    """
    present = report_files_in(folder)
    if not present:
        return
    try:
        with open(os.path.join(folder, 'report.json')) as f:
            ours = {'classes', 'confusion', 'accuracy'} <= set(json.load(f))
    except (OSError, ValueError, TypeError):
        ours = False
    if not ours:
        raise UserError('{} {} holds {}, and no report of this project\'s '
                        'beside it: it is kept; give another folder'.format(
                            option, shown(folder), present[0]))


def write_report_files(folder, report, text, scored, what, curves=()):
    """Keeps a report in folder (FILES), each file written atomically.

    report.json holds the dict and report.txt ``text``; confusion.png draws
    the matrix with its counts and confusion_normalized.png each row as
    shares of its images, or for more than GRID_LIMIT classes the most
    confused pairs by images and by share; predictions.csv has a row per
    image (predictions_rows); report.html shows it all (page.write_page).

    Args:
        folder: an existing folder.
        report: reports.evaluation_report's dict, or one that extends it
            (training's best epoch, 'model', 'data').
        text: the report as printed.
        scored: the Scored the report was made of.
        what: the set scored, as the titles name it: 'validation', 'test'.
        curves: [(caption, PNG path)] of figures the page shows first.

    Raises:
        UserError: a file cannot be written (files.atomic_write).
    """
    with atomic_write(os.path.join(folder, 'report.json'), 'w') as f:
        json.dump(report, f, indent=1)
    with atomic_write(os.path.join(folder, 'report.txt'), 'w') as f:
        f.write(text + '\n')
    names = [row['class'] for row in report['classes']]
    title = '{} confusion matrix'.format(what)
    for normalized, name in ((False, 'confusion.png'),
                             (True, 'confusion_normalized.png')):
        path = os.path.join(folder, name)
        if len(names) <= GRID_LIMIT:
            plot_confusion(report['confusion'], names, path, normalized,
                           title)
        else:
            plot_pairs(most_confused(report['confusion'], names, by=(
                'share' if normalized else 'images')), names, path,
                normalized, title)
    with atomic_write(os.path.join(folder, 'predictions.csv')) as f:
        buffer = io.StringIO()
        csv.writer(buffer).writerows(predictions_rows(scored))
        f.write(buffer.getvalue().encode('utf-8'))
    shown_mistakes, inputs = mistakes(scored, MISTAKES_SHOWN)
    write_page(os.path.join(folder, 'report.html'), '{} report: {} on the '
               '{} set'.format('Training' if what == 'validation' else
                               'Evaluation', os.path.basename(
                                   report.get('model', 'the model')), what),
               summary(report, what), report,
               {'curves': curves, 'mistakes': shown_mistakes,
                'folder': inputs, 'grid': len(names) <= GRID_LIMIT},
               scored.max_pixels)


def predictions_rows(scored, top=PREDICTIONS_TOP):
    """predictions.csv: a row per image, in scoring order.

    Args:
        scored: a Scored.
        top: the classes per image, by rank (at most the classes).

    Returns:
        [[str or number]]: the header (input; the true class's
        true_index, true_class_id, true_name; the predicted class's
        predicted_index, predicted_class_id, predicted_name; correct,
        True or False; then results.rank_columns), then a row per image:
        its path as shown, class ids and names as labels.class_fields
        splits them.
    """
    fields = class_fields([decoded(name) for name in scored.class_names])
    top = min(top, len(fields))
    rows = [['input'] + ['{}_{}'.format(which, field)
                         for which in ('true', 'predicted')
                         for field in ('index', 'class_id', 'name')]
            + ['correct'] + rank_columns(top)]
    for (path, label), probs in zip(scored.pairs, scored.probs):
        ranked = top_predictions(probs, fields, top)
        predicted = ranked[0]['index']
        rows.append([shown(path), label, *fields[label], predicted,
                     *fields[predicted], predicted == label]
                    + rank_values(ranked))
    return rows


def mistakes(scored, n):
    """The page's most confident mistakes (reports.confident_mistakes).

    Args:
        scored: a Scored.
        n: the most mistakes.

    Returns:
        (page.mistakes_html's list, most confident first; the folder
        their names are relative to, as shown: the scored files' deepest
        common folder, '' if they have none).
    """
    probs = scored.probs
    labels = numpy.array([label for _, label in scored.pairs], numpy.int64)
    predicted = probs.argmax(axis=1) if len(probs) else labels
    wrong = predicted != labels
    pairs = collections.Counter(zip(labels[wrong].tolist(),
                                    predicted[wrong].tolist()))
    names = [decoded(name) for name in scored.class_names]
    try:
        folder = os.path.commonpath([os.path.dirname(path)
                                     for path, _ in scored.pairs])
    except ValueError:  # absolute and relative paths, or none
        folder = ''
    chosen = []
    for i in confident_mistakes(probs, labels, n):
        true, guess = int(labels[i]), int(predicted[i])
        path = scored.pairs[i][0]
        chosen.append({'path': path,
                       'input': shown(os.path.relpath(path, folder)
                                      if folder else path),
                       'true': names[true], 'predicted': names[guess],
                       'probability': float(probs[i, guess]),
                       'true_probability': float(probs[i, true]),
                       'pair_images': pairs[true, guess]})
    return chosen, shown(folder)


def summary(report, what):
    """The page's summary table.

    Args:
        report: write_report_files' report.
        what: the set scored ('validation', 'test').

    Returns:
        [(what, value)]: the model and data (if the report names them),
        the images, the top-1 and top-K accuracies, the best epoch
        (training's), ten crops (--oversample) and the files left out.
    """
    rows = [(key, report[key]) for key in ('model', 'data') if key in report]
    n = report['images']
    rows.append(('{} images'.format(what), n))
    for k in sorted({1, report['top_k']}):
        accuracy = report['top{}'.format(k)]
        rows.append(('top-{} accuracy'.format(k), '{:.1%} ({} of {})'.format(
            accuracy, round(accuracy * n), n)))
    if 'best_epoch' in report:
        rows.append(('best epoch', '{} (validation accuracy {:.1%})'.format(
            report['best_epoch'], report['best_validation_accuracy'])))
    if report.get('oversample'):
        rows.append(('crops', 'Caffe\'s ten, averaged (--oversample)'))
    if report.get('unreadable'):
        rows.append(('left out', '{} file{}, listed at the end'.format(
            len(report['unreadable']),
            '' if len(report['unreadable']) == 1 else 's')))
    return rows
