"""Labelled image data and the reports on it, shared by training and evaluation.

A data set is a folder of class folders (the folder names are the class
names) or a list file of ``path label`` lines (Caffe's train.txt/val.txt
format). Classes come from the training data; any other data set (validation,
test) is mapped onto them by name, so a folder that lacks a class, or lists
them in another order, cannot shift the labels.
"""
import json
import os
import re

import numpy

from googlenet_io import (UserError, atomic_write, list_images, open_image,
                          preprocess, read_labels, shown, ten_crops)

SYNSET_WORDS = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                            'synset_words.txt')


def model_class_names(n_classes, label_file=None, stored=None):
    """Names for a model's classes: a label file, the names the training
    run stored with the model, or synset_words.txt for ImageNet's 1000."""
    if label_file:
        labels = read_labels(label_file)
        if len(labels) != n_classes:
            raise UserError('{} has {} labels but the model has {} classes'
                            .format(label_file, len(labels), n_classes))
        return labels
    if stored is not None:
        return stored
    if n_classes == 1000:
        return read_labels(SYNSET_WORDS)
    return ['class {}'.format(i) for i in range(n_classes)]


def matching_names(class_names):
    """The names class folders are matched against: ImageNet's wnids when
    the names are synset_words.txt lines (``n01440764 tench, ...``), so a
    1000-class model matches ILSVRC's folders; otherwise the names."""
    wnids = [name.split(None, 1)[0] for name in class_names]
    if all(re.fullmatch(r'n\d{8}', wnid) for wnid in wnids) and (
            len(set(wnids)) == len(wnids)):
        return wnids
    return list(class_names)


def read_folder(root, class_names=None):
    """[(path, label)] and the class names of a folder of class folders.

    Without ``class_names`` the sorted folder names are the classes. With
    them (the training set's), each folder is labelled by its name's index
    there; a folder whose name is not a class is a UserError naming it, and
    classes without a folder simply have no images.
    """
    folders = sorted(name for name in os.listdir(root)
                     if os.path.isdir(os.path.join(root, name)))
    if class_names is None:
        class_names = folders
    index = {name: i for i, name in enumerate(class_names)}
    pairs = []
    for name in folders:
        if name not in index:
            raise UserError('{}: folder {!r} is not one of the {} training '
                            'classes ({})'.format(root, name,
                                                  len(class_names),
                                                  ', '.join(class_names)))
        images = list_images(os.path.join(root, name))
        if not images:
            raise UserError('class folder {} has no images'.format(
                os.path.join(root, name)))
        pairs += [(path, index[name]) for path in images]
    return pairs, list(class_names)


def read_list(path, root):
    """[(path, label)] from a ``path label`` list file; paths against root."""
    pairs = []
    with open(path, encoding='utf-8') as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            fields = line.rsplit(None, 1)
            if len(fields) != 2 or not re.fullmatch(r'-?\d+', fields[1]):
                raise UserError('{} line {}: expected "path label", got {!r}'
                                .format(path, number, line.strip()))
            image = os.path.join(root, fields[0])
            if not os.path.isfile(image):
                raise UserError('{} line {}: no such file {}'.format(
                    path, number, image))
            pairs.append((image, int(fields[1])))
    if not pairs:
        raise UserError('{} lists no images'.format(path))
    return pairs, None


def read_dataset(data, root, class_names=None):
    """[(path, label)] and class names (None for a list file) of DATA.

    ``class_names`` maps a folder's class folders onto known classes by
    name (see read_folder); a list file's labels are class indices already.
    """
    if not os.path.exists(data):
        raise UserError('no such dataset: {}'.format(data))
    if os.path.isdir(data):
        return read_folder(data, class_names)
    return read_list(data, root if root is not None else os.path.dirname(
        os.path.abspath(data)))


def check_labels(pairs, n_classes, source):
    labels = {label for _, label in pairs}
    bad = sorted(label for label in labels if not 0 <= label < n_classes)
    if bad:
        raise UserError('{}: label {} is out of range for a model of {} '
                        'classes (0..{})'.format(source, bad[0], n_classes,
                                                 n_classes - 1))


def stratified_split(pairs, ratio, seed):
    """Holds out ``ratio`` of each class (at least one image of any class
    with two or more), reproducibly for a seed."""
    rng = numpy.random.RandomState(seed)
    train, val = [], []
    for label in sorted({label for _, label in pairs}):
        members = [p for p in pairs if p[1] == label]
        order = rng.permutation(len(members))
        n_val = int(round(len(members) * ratio))
        if len(members) > 1 and ratio > 0:
            n_val = min(max(n_val, 1), len(members) - 1)
        val += [members[i] for i in order[:n_val]]
        train += [members[i] for i in order[n_val:]]
    return train, val


def drop_unreadable(pairs):
    """Decodes every image once; returns the readable pairs and a report."""
    good, bad = [], []
    for path, label in pairs:
        try:
            open_image(path)
        except UserError as e:
            bad.append('{}: {}'.format(path, e))
        else:
            good.append((path, label))
    return good, bad


def print_report(name, pairs, class_names, unreadable):
    """The images per class of a set; a class without images shows 0."""
    counts = numpy.bincount([label for _, label in pairs],
                            minlength=len(class_names))
    print('{}: {} images'.format(name, len(pairs)))
    for label, count in enumerate(counts):
        print('  {:5d}  {}'.format(count, class_names[label]))
    missing = [class_names[i] for i, count in enumerate(counts) if not count]
    if missing:
        print('  no {} images of: {}'.format(name.split()[0],
                                             ', '.join(missing)))
    for line in unreadable:
        print('  skipped unreadable {}'.format(line))


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


def per_class_report(confusion, class_names):
    """The printed table of a confusion matrix (see class_report)."""
    return format_report(class_report(confusion, class_names))


def write_report(report, json_path, text_path):
    """Keeps a class_report dict as JSON and as its table, atomically."""
    with atomic_write(json_path, 'w') as f:
        json.dump(report, f, indent=1)
    with atomic_write(text_path, 'w') as f:
        f.write(format_report(report) + '\n')


def plot_confusion(confusion, class_names, path, normalized=False,
                   title='confusion matrix'):
    """Draws the matrix with its counts in the cells, written atomically.

    ``normalized`` colours each row by its share of the row's images (the
    recall on the diagonal) and writes the shares; a row without images
    stays 0."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    confusion = numpy.asarray(confusion)
    if normalized:
        rows = confusion.sum(axis=1, keepdims=True)
        values = confusion / numpy.maximum(rows, 1)
        labels = numpy.vectorize('{:.2f}'.format)(values)
        top = 1.0
    else:
        values, labels = confusion, confusion.astype(str)
        top = max(int(confusion.max()), 1)
    size = max(4, 0.5 * len(class_names) + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(values, cmap='Blues', vmin=0, vmax=top)
    ax.set_xticks(range(len(class_names)), class_names, rotation=90)
    ax.set_yticks(range(len(class_names)), class_names)
    ax.set_xlabel('predicted')
    ax.set_ylabel('true')
    ax.set_title('{} ({} images{})'.format(
        title, int(confusion.sum()),
        ', rows normalised' if normalized else ''))
    for (i, j), v in numpy.ndenumerate(values):
        ax.text(j, i, labels[i, j], ha='center', va='center',
                color='white' if v > top / 2 else 'black')
    fig.tight_layout()
    with atomic_write(path) as f:
        fig.savefig(f, format='png')
    plt.close(fig)


# --- evaluation -------------------------------------------------------------

def predict_dataset(model, pairs, batchsize, oversample=False,
                    progress=None):
    """Class probabilities of each readable image of pairs, in order.

    Each image gets Caffe's reference input (the centre 224 crop), or with
    ``oversample`` its ten crops, whose probabilities are averaged as
    Caffe's classify.py does; batches of ``batchsize`` images go through
    ``model.predict`` (the fast inference path). Returns (probabilities
    float32 N x classes, the readable pairs, ['path: reason'] of the rest).
    ``progress`` (a tqdm-like callable or None) wraps the image loop.
    """
    crops = 10 if oversample else 1
    kept, bad, batch, results = [], [], [], []

    def flush():
        if batch:
            probs = model.predict(numpy.concatenate(batch))
            results.append(probs.reshape(len(batch), crops, -1).mean(axis=1))
            batch.clear()

    for path, label in (progress(pairs) if progress else pairs):
        try:
            image = open_image(path)
        except UserError as e:
            bad.append('{}: {}'.format(path, e))
            continue
        batch.append(ten_crops(image) if oversample
                     else preprocess(image)[None])
        kept.append((path, label))
        if len(batch) == batchsize:
            flush()
    flush()
    probs = (numpy.concatenate(results) if results
             else numpy.zeros((0, model.n_classes), numpy.float32))
    return probs, kept, bad


def top_k(probs, k):
    """Indices of the k most probable classes per row, most probable first;
    ties go to the lower class index."""
    return numpy.argsort(-probs, axis=1, kind='stable')[:, :k]


def evaluation_report(probs, pairs, class_names, k=5, subset=None):
    """Scores of probabilities (N x classes) against pairs' labels.

    Returns class_report's dict over the classes in ``subset`` (default: all;
    a model of many classes shows those that are true or predicted, which
    keeps every row and column sum) plus 'top1', 'top5' (top-k with k =
    min(k, classes)) and 'misclassified': each input whose top-1 is wrong,
    with its true class and its k best predictions. Names and paths are
    ``shown``: undecodable bytes of a file name appear escaped.
    """
    class_names = [shown(name) for name in class_names]
    labels = numpy.array([label for _, label in pairs], dtype=numpy.int64)
    n_classes = probs.shape[1]
    k = min(k, n_classes)
    best = top_k(probs, k)
    predicted = best[:, 0] if len(best) else labels
    confusion = numpy.zeros((n_classes, n_classes), numpy.int64)
    numpy.add.at(confusion, (labels, predicted), 1)
    if subset is None:
        subset = (range(n_classes) if n_classes <= 100 else
                 sorted(set(labels.tolist()) | set(predicted.tolist())))
    subset = list(subset)
    report = class_report(confusion[numpy.ix_(subset, subset)],
                          [class_names[i] for i in subset])
    count = len(labels)
    report['top1'] = float((predicted == labels).mean()) if count else 0.0
    report['top5'] = (float((best == labels[:, None]).any(axis=1).mean())
                      if count else 0.0)
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
    n = report['images']
    lines = ['top-1 accuracy {:.4f} ({} of {} images)'.format(
        report['top1'], round(report['top1'] * n), n),
        'top-{} accuracy {:.4f} ({} of {} images)'.format(
            report['top_k'], report['top5'], round(report['top5'] * n), n),
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
