"""Scores of a model on labelled images and the reports training and
evaluation keep of them."""
import json
import os

import numpy

from googlenet_chainer.console import decoded, shown
from googlenet_chainer.files import atomic_write
from googlenet_chainer.plots import plot_confusion


def confusion_matrix(labels, predicted, n_classes):
    """Counts the images of each pair of true and predicted classes.

    Args:
        labels, predicted: class indices, one per image (sequences or
            integer arrays of one length).
        n_classes: the model's classes.

    Returns:
        int64 n_classes x n_classes: rows the true class, columns the
        predicted one, each cell the images so classified.
    """
    confusion = numpy.zeros((n_classes, n_classes), numpy.int64)
    numpy.add.at(confusion, (numpy.asarray(labels, numpy.int64),
                             numpy.asarray(predicted, numpy.int64)), 1)
    return confusion


def class_report(confusion, class_names):
    """The scores of a confusion matrix, as a JSON-ready dict.

    A score whose denominator is 0 (a class never predicted, or without
    images) is 0, as scikit-learn's zero_division=0.

    Args:
        confusion: square image counts (an array or nested lists), rows
            the true class, columns the predicted one.
        class_names: one per row, in row order.

    Returns:
        {'classes': one {'class', 'precision', 'recall', 'f1', 'support'}
        per row (support: the row's images), 'accuracy': the diagonal's
        share of the images (0.0 without any), 'images': their count,
        'confusion': the matrix as lists of ints}.
    """
    confusion = numpy.asarray(confusion)
    predicted = confusion.sum(axis=0)
    actual = confusion.sum(axis=1)
    classes = []
    for i, name in enumerate(class_names):
        hits = confusion[i, i]
        precision = hits / predicted[i] if predicted[i] else 0.0
        recall = hits / actual[i] if actual[i] else 0.0
        f1 = (2 * precision * recall / (precision + recall)
              if precision + recall else 0.0)
        classes.append({'class': name, 'precision': float(precision),
                        'recall': float(recall), 'f1': float(f1),
                        'support': int(actual[i])})
    total = int(confusion.sum())
    return {'classes': classes,
            'accuracy': float(numpy.trace(confusion) / total) if total
            else 0.0,
            'images': total,
            'confusion': confusion.astype(int).tolist()}


def format_report(report):
    """class_report's dict as the table training prints and keeps.

    Args:
        report: class_report's dict; with 'best_epoch' and
            'best_validation_accuracy' (training's), a line on them.

    Returns:
        str: per class precision, recall, F1 and support, the accuracy,
        the best epoch if given, then the confusion matrix, each row
        followed by its class; no final line break.
    """
    lines = ['{:>9s} {:>9s} {:>9s} {:>7s}  class'.format(
        'precision', 'recall', 'f1', 'support')]
    for row in report['classes']:
        lines.append('{precision:9.3f} {recall:9.3f} {f1:9.3f} '
                     '{support:7d}  {class}'.format(**row))
    lines.append('accuracy {:.3f} on {} images'.format(report['accuracy'],
                                                       report['images']))
    if 'best_epoch' in report:
        lines.append('best epoch {} (validation accuracy {:.3f})'.format(
            report['best_epoch'], report['best_validation_accuracy']))
    lines.append('confusion matrix (rows: true, columns: predicted):')
    confusion = numpy.array(report['confusion'])
    width = max(5, len(str(confusion.max())) + 1)
    for row, name in zip(confusion, (r['class'] for r in report['classes'])):
        lines.append(''.join('{:{}d}'.format(v, width) for v in row)
                     + '  ' + name)
    return '\n'.join(lines)


def write_report_files(folder, report, text, title):
    """Keeps a report in folder, each file written atomically.

    report.json holds the dict, report.txt ``text``; confusion.png draws
    the matrix with its counts and confusion_normalized.png each row as
    shares of its images, both titled ``title``.

    Args:
        folder: an existing folder.
        report: class_report's dict, or one that extends it.
        text: the report as printed.
        title: what the matrix is of, e.g. 'validation confusion matrix'.

    Raises:
        UserError: a file cannot be written (files.atomic_write).
    """
    with atomic_write(os.path.join(folder, 'report.json'), 'w') as f:
        json.dump(report, f, indent=1)
    with atomic_write(os.path.join(folder, 'report.txt'), 'w') as f:
        f.write(text + '\n')
    names = [row['class'] for row in report['classes']]
    for normalized, name in ((False, 'confusion.png'),
                             (True, 'confusion_normalized.png')):
        plot_confusion(report['confusion'], names,
                       os.path.join(folder, name), normalized=normalized,
                       title=title)


def report_text(report):
    """A training report's table, then the files its run left out.

    Args:
        report: class_report's dict, with training's additions
            (format_report) and 'unreadable' (left_out).

    Returns:
        str: format_report's table and left_out's lines.
    """
    return '\n'.join([format_report(report)] + left_out(report))


def left_out(report):
    """The lines that name the files a report's run could not use.

    For the text beside the scores: a heading with their count, then each
    of the report's 'unreadable' lines ('PATH: why'), indented.

    Args:
        report: a report dict, with or without 'unreadable'.

    Returns:
        [str]: empty when no file was left out.
    """
    lines = report.get('unreadable') or []
    if not lines:
        return []
    return ['left out, could not be used ({} file{}):'.format(
        len(lines), '' if len(lines) == 1 else 's')] + [
            '  ' + line for line in lines]


def top_k(probs, k):
    """The k most probable classes of each row, most probable first.

    Ties go to the lower class index (a stable sort).

    Args:
        probs: N x classes probabilities.
        k: classes per row.

    Returns:
        intp N x min(k, classes): class indices.
    """
    return numpy.argsort(-probs, axis=1, kind='stable')[:, :k]


def evaluation_report(probs, pairs, class_names, k=5, subset=None):
    """Scores of probabilities against pairs' labels, as a JSON-ready dict.

    Paths are ``shown`` and class names ``decoded`` (the form training
    stores them in): undecodable bytes of a file name appear escaped.

    Args:
        probs: float N x classes, a row per pair.
        pairs: the N scored (path, label), in probs' order.
        class_names: the model's, in class order.
        k: the top-k accuracy's k, lowered to one under the number of
            classes (where it could not be below 1).
        subset: the class indices the per-class rows and the matrix show.
            Default: all; for a model of more than 100 classes, those that
            are true or predicted, which keeps every row and column sum.

    Returns:
        class_report's dict over ``subset`` plus 'top1', 'topK' (top-k
        accuracy, K = min(k, classes - 1), also under 'top_k': 'top5' for
        ImageNet's 1000, 'top2' for 3 classes; none for 2 classes, where
        'top_k' is 1) and 'misclassified': each input whose top-1 is wrong,
        {'input', 'true', 'predictions': its min(k, classes) best
        [{'class', 'probability'}]}. Accuracies are 0.0 without images.
    """
    class_names = [decoded(name) for name in class_names]
    labels = numpy.array([label for _, label in pairs], dtype=numpy.int64)
    n_classes = probs.shape[1]
    best = top_k(probs, min(k, n_classes))
    k = min(k, n_classes - 1)
    predicted = best[:, 0] if len(best) else labels
    confusion = confusion_matrix(labels, predicted, n_classes)
    if subset is None:
        subset = (range(n_classes) if n_classes <= 100 else
                  sorted(set(labels.tolist()) | set(predicted.tolist())))
    subset = list(subset)
    report = class_report(confusion[numpy.ix_(subset, subset)],
                          [class_names[i] for i in subset])
    count = len(labels)
    report['top1'] = float((predicted == labels).mean()) if count else 0.0
    report['top{}'.format(k)] = (float(
        (best[:, :k] == labels[:, None]).any(axis=1).mean()) if count
        else 0.0)
    report['top_k'] = k
    report['misclassified'] = [
        {'input': shown(path), 'true': class_names[label],
         'predictions': [{'class': class_names[j],
                          'probability': float(probs[i, j])}
                         for j in best[i]]}
        for i, (path, label) in enumerate(pairs) if predicted[i] != label]
    return report


def format_evaluation(report):
    """evaluation_report's dict as the text evaluation prints.

    Args:
        report: evaluation_report's dict, with or without 'unreadable'.

    Returns:
        str: the top-1 and top-K accuracies with their image counts, the
        files left out, format_report's table, then each misclassified
        input with its K best classes; no final line break.
    """
    n = report['images']
    lines = ['top-{} accuracy {:.4f} ({} of {} images)'.format(
        k, report['top{}'.format(k)], round(report['top{}'.format(k)] * n),
        n) for k in sorted({1, report['top_k']})]
    lines += left_out(report) + [format_report(report)]
    if report['misclassified']:
        lines.append('misclassified ({}):'.format(
            len(report['misclassified'])))
    for item in report['misclassified']:
        lines.append('  {}  true: {}'.format(item['input'], item['true']))
        lines.append('    ' + '; '.join(
            '{:.2%} {}'.format(p['probability'], p['class'])
            for p in item['predictions']))
    return '\n'.join(lines)


def best_epoch(log):
    """The log's first best epoch: the one SaveBest kept.

    The first, as MaxValueTrigger saves on a strict improvement only.

    Args:
        log: LogReport's log ([{key: value}] per epoch), with at least one
            entry of validation/main/accuracy.

    Returns:
        (epoch, its validation accuracy).
    """
    scored = [entry for entry in log if 'validation/main/accuracy' in entry]
    best = max(scored, key=lambda entry: entry['validation/main/accuracy'])
    return best['epoch'], best['validation/main/accuracy']
