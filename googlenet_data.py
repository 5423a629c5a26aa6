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

from googlenet_io import UserError, atomic_write, list_images, open_image


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
