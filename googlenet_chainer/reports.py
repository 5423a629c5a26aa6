"""Scores of a model on labelled images and the reports training and
evaluation keep of them."""
import json
import os

import numpy

from googlenet_chainer.console import decoded, shown
from googlenet_chainer.files import atomic_write
from googlenet_chainer.plots import plot_confusion


def confusion_matrix(labels, predicted, n_classes):
    """int64 n_classes x n_classes: rows the true class, columns the
    predicted one, each cell the images so classified.

    Args:
        labels, predicted: class indices, one per image (sequences or
            integer arrays of one length).
        n_classes: the model's classes.
    """
    confusion = numpy.zeros((n_classes, n_classes), numpy.int64)
    numpy.add.at(confusion, (numpy.asarray(labels, numpy.int64),
                             numpy.asarray(predicted, numpy.int64)), 1)
    return confusion


def class_report(confusion, class_names):
    """The scores of a confusion matrix (rows: true class, columns:
    predicted), as a JSON-ready dict: per class precision, recall, F1 and
    support (true images), the accuracy, the image count and the matrix.
    A score whose denominator is 0 (a class never predicted, or without
    images) is 0, as scikit-learn's zero_division=0."""
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
    """class_report's dict as the table training prints and keeps."""
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
    """Keeps a report in folder, each file written atomically: report.json
    (the dict), report.txt (``text``), confusion.png (the matrix with its
    counts) and confusion_normalized.png (each row as shares of its images),
    both titled ``title``.

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
    """A training report's table, then the files its run left out."""
    return '\n'.join([format_report(report)] + left_out(report))


def left_out(report):
    """The lines that name the files a report's run could not use (its
    'unreadable': 'PATH: why' each), for the text beside the scores."""
    lines = report.get('unreadable') or []
    if not lines:
        return []
    return ['left out, could not be used ({} file{}):'.format(
        len(lines), '' if len(lines) == 1 else 's')] + [
            '  ' + line for line in lines]


def top_k(probs, k):
    """Indices of the k most probable classes per row, most probable first;
    ties go to the lower class index."""
    return numpy.argsort(-probs, axis=1, kind='stable')[:, :k]


def evaluation_report(probs, pairs, class_names, k=5, subset=None):
    """Scores of probabilities (N x classes) against pairs' labels.

    Returns class_report's dict over the classes in ``subset`` (default: all;
    a model of many classes shows those that are true or predicted, which
    keeps every row and column sum) plus 'top1', 'topK' (top-k accuracy,
    K = min(k, classes), also under 'top_k': 'top5' for ImageNet's 1000,
    'top3' for 3 classes) and 'misclassified': each input whose top-1 is wrong,
    with its true class and its k best predictions. Paths are ``shown``
    and class names ``decoded`` (the form training stores them in):
    undecodable bytes of a file name appear escaped.
    """
    class_names = [decoded(name) for name in class_names]
    labels = numpy.array([label for _, label in pairs], dtype=numpy.int64)
    n_classes = probs.shape[1]
    k = min(k, n_classes)
    best = top_k(probs, k)
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
    report['top{}'.format(k)] = (
        float((best == labels[:, None]).any(axis=1).mean()) if count else 0.0)
    report['top_k'] = k
    report['misclassified'] = [
        {'input': shown(path), 'true': class_names[label],
         'predictions': [{'class': class_names[j],
                          'probability': float(probs[i, j])}
                         for j in best[i]]}
        for i, (path, label) in enumerate(pairs) if predicted[i] != label]
    return report


def format_evaluation(report):
    """evaluation_report's dict as the table evaluation prints."""
    n, k = report['images'], report['top_k']
    lines = ['top-1 accuracy {:.4f} ({} of {} images)'.format(
        report['top1'], round(report['top1'] * n), n),
        'top-{} accuracy {:.4f} ({} of {} images)'.format(
            k, report['top{}'.format(k)],
            round(report['top{}'.format(k)] * n), n)] + left_out(report) + [
        format_report(report)]
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
    """(epoch, validation accuracy) of the log's first best epoch, the one
    SaveBest kept (MaxValueTrigger saves on a strict improvement)."""
    scored = [entry for entry in log if 'validation/main/accuracy' in entry]
    best = max(scored, key=lambda entry: entry['validation/main/accuracy'])
    return best['epoch'], best['validation/main/accuracy']
