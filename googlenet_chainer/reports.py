"""Scores of a model on labelled images, as the reports of training and
evaluation hold them, and their text."""
import numpy

from googlenet_chainer.console import decoded, shown

# The most classes whose confusion matrix is drawn and printed as a grid:
# beyond, a grid's cells and names are too small to read, and the most
# confused pairs say what it would.
GRID_LIMIT = 30
# The most confused pairs a report lists.
PAIRS_SHOWN = 30


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
        per row (support: the row's images), 'macro_avg' and
        'weighted_avg' (averages), 'accuracy': the diagonal's share of the
        images (0.0 without any), 'images': their count, 'confusion': the
        matrix as lists of ints, 'most_confused': most_confused's pairs}.
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
    macro, weighted = averages(classes, (predicted + actual) > 0)
    return {'classes': classes, 'macro_avg': macro, 'weighted_avg': weighted,
            'accuracy': float(numpy.trace(confusion) / total) if total
            else 0.0,
            'images': total,
            'confusion': confusion.astype(int).tolist(),
            'most_confused': most_confused(confusion, class_names)}


def averages(classes, seen):
    """The macro and weighted averages of per-class scores.

    As scikit-learn's classification_report: the macro average is the
    plain mean over the classes that are true or predicted at least once
    (its default labels), the weighted one weights each class by its
    support; the support of both is the images'.

    Args:
        classes: class_report's rows.
        seen: a bool per row, whether its class is true or predicted.

    Returns:
        (macro, weighted): {'precision', 'recall', 'f1', 'support'} each;
        scores 0.0 where no class is seen.
    """
    rows = [row for row, is_seen in zip(classes, seen) if is_seen]
    support = sum(row['support'] for row in rows)
    keys = ('precision', 'recall', 'f1')
    macro = {key: float(numpy.mean([row[key] for row in rows])) if rows
             else 0.0 for key in keys}
    weighted = {key: sum(row[key] * row['support'] for row in rows)
                / support if support else 0.0 for key in keys}
    macro['support'] = weighted['support'] = support
    return macro, weighted


def most_confused(confusion, class_names, n=PAIRS_SHOWN, by='images'):
    """The pairs of classes most often confused, most first.

    Args:
        confusion: square image counts, rows the true class, columns the
            predicted one.
        class_names: one per row, in row order.
        n: the most pairs returned.
        by: 'images' ranks by the images so classified, 'share' by their
            share of the true class's images; ties go to the other, then
            to the lower true and predicted class.

    Returns:
        [{'true', 'predicted': class names, 'images': int, 'share':
        float}]: the off-diagonal cells that hold images, at most n.
    """
    confusion = numpy.asarray(confusion)
    off = confusion.copy()
    numpy.fill_diagonal(off, 0)
    true, predicted = numpy.nonzero(off)
    images = off[true, predicted]
    share = images / confusion.sum(axis=1)[true]
    keys = (-images, -share) if by == 'images' else (-share, -images)
    order = numpy.lexsort((predicted, true) + keys[::-1])[:n]
    return [{'true': class_names[true[i]],
             'predicted': class_names[predicted[i]],
             'images': int(images[i]), 'share': float(share[i])}
            for i in order]


def format_report(report):
    """class_report's dict as the table training prints and keeps.

    Args:
        report: class_report's dict; with 'best_epoch' and
            'best_validation_accuracy' (training's), a line on them.

    Returns:
        str: per class precision, recall, F1 and support, their macro and
        weighted averages, the accuracy, the best epoch if given, then the
        confusion matrix (format_confusion); no final line break.
    """
    row = '{precision:9.3f} {recall:9.3f} {f1:9.3f} {support:7d}  {}'.format
    lines = ['{:>9s} {:>9s} {:>9s} {:>7s}  class'.format(
        'precision', 'recall', 'f1', 'support')]
    lines += [row(r['class'], **r) for r in report['classes']]
    lines += [row('macro avg', **report['macro_avg']),
              row('weighted avg', **report['weighted_avg'])]
    lines.append('accuracy {:.3f} on {} images'.format(report['accuracy'],
                                                       report['images']))
    if 'best_epoch' in report:
        lines.append('best epoch {} (validation accuracy {:.3f})'.format(
            report['best_epoch'], report['best_validation_accuracy']))
    return '\n'.join(lines + format_confusion(report))


def format_confusion(report):
    """The lines of a report's confusion matrix.

    Up to GRID_LIMIT classes the matrix, each row followed by its class;
    beyond, its most confused pairs (class_report's), which a grid of so
    many columns would hide.

    Args:
        report: class_report's dict.

    Returns:
        [str]: a heading, then a line per row or pair.
    """
    names = [r['class'] for r in report['classes']]
    if len(names) > GRID_LIMIT:
        pairs = report['most_confused']
        return ['most confused pairs of the {} classes (images, share of '
                'the true class\'s, true -> predicted):'.format(
                    len(names))] + [
            '{:7d} {:6.1%}  {} -> {}'.format(p['images'], p['share'],
                                             p['true'], p['predicted'])
            for p in pairs] + ([] if pairs else ['  none: no image was '
                                                  'misclassified'])
    lines = ['confusion matrix (rows: true, columns: predicted):']
    confusion = numpy.array(report['confusion'])
    width = max(5, len(str(confusion.max())) + 1)
    for row, name in zip(confusion, names):
        lines.append(''.join('{:{}d}'.format(v, width) for v in row)
                     + '  ' + name)
    return lines


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


def confident_mistakes(probs, labels, n):
    """The misclassified images whose wrong class was the most probable.

    Args:
        probs: float N x classes, a row per image.
        labels: the N true class indices.
        n: the most images returned.

    Returns:
        intp: the rows of at most n images whose top-1 class (ties to the
        lower index, as top_k) is not their label, by the probability of
        that class, highest first (ties in row order).
    """
    predicted = probs.argmax(axis=1)
    wrong = numpy.flatnonzero(predicted != numpy.asarray(labels))
    confidence = probs[wrong, predicted[wrong]]
    return wrong[numpy.argsort(-confidence, kind='stable')[:n]]


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
