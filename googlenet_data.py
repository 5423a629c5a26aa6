"""Labelled image data and the reports on it, shared by training and evaluation.

A data set is a folder of class folders (the folder names are the class
names) or a list file of ``path label`` lines (Caffe's train.txt/val.txt
format). Classes come from the training data; any other data set (validation,
test) is mapped onto them by name, so a folder that lacks a class, or lists
them in another order, cannot shift the labels.
"""
import collections
import json
import os
import re

import numpy
from PIL import Image

from googlenet_io import (DEFAULT_MAX_PIXELS, UserError, atomic_write,
                          image_suffixes, is_hidden, list_images, open_image,
                          preprocess, progress, read_labels, read_text_lines,
                          shown, ten_crops, controls_in, decoded)

SYNSET_WORDS = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                            'synset_words.txt')

# A class this many times rarer than the commonest is worth a warning.
RARE_RATIO = 3

Data = collections.namedtuple('Data', 'pairs class_names skipped')
Data.__doc__ = """A data set as read: [(path, label)], the class names (None
for a list file without names) and {reason: count} of the files left out."""


def _count(skipped, reason, n=1):
    skipped[reason] = skipped.get(reason, 0) + n


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


def few(names, n=10):
    """Up to n names joined, and how many more: a 1000-class model's list
    would fill a screen."""
    more = len(names) - n
    return ', '.join(list(names)[:n]) + (
        ', and {} more'.format(more) if more > 0 else '')


def read_folder(root, class_names=None):
    """The Data of a folder of class folders.

    The visible sub-folders are the classes (dot-folders and __MACOSX are
    not), each holding its images at any depth, as torchvision's
    ImageFolder finds them. A name that is not valid UTF-8 becomes its
    decoded() form; a name with a control character, or two folders with
    one decoded() name, is a UserError naming the folders. Without
    ``class_names`` the sorted folder names are the classes; with them
    (the training set's), each folder is labelled by its name's index
    there; a folder whose name is not a class is a UserError naming it,
    and classes without a folder have no images.
    """
    try:
        entries = sorted(os.scandir(root), key=lambda e: e.name)
    except OSError as e:
        raise UserError('cannot read folder {}: {}'.format(
            shown(root), e.strerror or e))
    folders, loose, skipped = [], [], {}
    for entry in entries:
        if is_hidden(entry.name):
            _count(skipped, 'hidden')
        elif entry.is_dir():
            folders.append(entry)
        else:
            loose.append(entry.name)
    suffixes = image_suffixes()
    loose_images = [name for name in loose
                    if os.path.splitext(name)[1].lower() in suffixes]
    if not folders:
        if loose_images:
            raise UserError(
                '{} holds {} image{} but no class sub-folders: put each '
                'class\'s images in a folder named after the class'.format(
                    shown(root), len(loose_images),
                    '' if len(loose_images) == 1 else 's'))
        raise UserError('{} has no class folders (nor images)'.format(
            shown(root)))
    if loose:
        _count(skipped, 'outside the class folders', len(loose))
    names = [decoded(entry.name) for entry in folders]
    first = {}
    for entry, name in zip(folders, names):
        if controls_in(name):
            raise UserError('class folder {} has a control character in its '
                            'name ({}): rename it'.format(
                                shown(entry.path), controls_in(name)))
        # An undecodable byte and a literal backslash escape read alike:
        # two folders, one class name, and one class left empty.
        if name in first:
            raise UserError('class folders {} and {} both make class {} '
                            '(undecodable bytes are written \\xNN): rename '
                            'one'.format(shown(first[name].path),
                                         shown(entry.path), name))
        first[name] = entry
    if class_names is None:
        class_names = names
    index = {name: i for i, name in enumerate(class_names)}
    pairs = []
    for entry, name in zip(folders, names):
        if name not in index:
            raise UserError('{}: folder \'{}\' is not one of the {} '
                            'training classes ({})'.format(
                                shown(root), shown(entry.name),
                                len(class_names), few(class_names)))
        images, left_out = list_images(entry.path, recursive=True)
        for reason, n in left_out.items():
            _count(skipped, reason, n)
        if not images:
            raise UserError('class folder {} has no images'.format(
                shown(entry.path)))
        pairs += [(path, index[name]) for path in images]
    return Data(pairs, list(class_names), skipped)


def read_list(path, root):
    """The Data of a ``path label`` list file (Caffe's train.txt format:
    UTF-8, a byte-order mark and CRLF fine, paths may hold spaces), paths
    relative to root; its class names are None."""
    pairs = []
    for number, line in enumerate(read_text_lines(path, 'list file'), 1):
        if not line.strip():
            continue
        fields = line.strip().rsplit(None, 1)
        if len(fields) != 2 or not re.fullmatch(r'-?\d+', fields[1]):
            raise UserError('{} line {}: expected "path label", got {!r}'
                            .format(shown(path), number,
                                    shown(line.strip())))
        image = os.path.join(root, fields[0])
        if not os.path.isfile(image):
            raise UserError('{} line {}: no such file {}'.format(
                shown(path), number, shown(image)))
        pairs.append((image, int(fields[1])))
    if not pairs:
        raise UserError('{} lists no images'.format(shown(path)))
    return Data(pairs, None, {})


def read_dataset(data, root, class_names=None):
    """The Data of DATA, a folder of class folders or a list file.

    ``class_names`` maps a folder's class folders onto known classes by
    name (see read_folder); a list file's labels are class indices already.
    """
    if not os.path.exists(data):
        raise UserError('no such dataset: {}'.format(shown(data)))
    if os.path.isdir(data):
        return read_folder(data, class_names)
    if _is_image(data):
        raise UserError('{} is an image, not a data set: give a folder of '
                        'class folders or a list file of "path label" '
                        'lines'.format(shown(data)))
    return read_list(data, root if root is not None else os.path.dirname(
        os.path.abspath(data)))


def _is_image(path):
    """Whether Pillow recognises the file (it reads only the header)."""
    try:
        with Image.open(path):
            return True
    except Exception:  # any failure to recognise it means "not an image"
        return False


def check_labels(pairs, n_classes, source):
    labels = {label for _, label in pairs}
    bad = sorted(label for label in labels if not 0 <= label < n_classes)
    if bad:
        raise UserError('{}: label {} is out of range for a model of {} '
                        'classes (0..{})'.format(source, bad[0], n_classes,
                                                 n_classes - 1))


def stratified_split(pairs, ratio, seed):
    """Holds out ``ratio`` (0 < ratio < 1) of each class, at least one image
    of any class with two or more and never a class's last one,
    reproducibly for a seed."""
    rng = numpy.random.RandomState(seed)
    train, val = [], []
    for label in sorted({label for _, label in pairs}):
        members = [p for p in pairs if p[1] == label]
        order = rng.permutation(len(members))
        # Each class keeps an image for training: a single image stays there.
        n_val = min(max(int(round(len(members) * ratio)), 1),
                    len(members) - 1)
        val += [members[i] for i in order[:n_val]]
        train += [members[i] for i in order[n_val:]]
    return train, val


def drop_unreadable(pairs, max_pixels=DEFAULT_MAX_PIXELS, show=True,
                    description='checking images'):
    """Decodes every image once (with a progress bar when ``show``);
    returns the readable pairs and one line per unreadable file."""
    good, bad = [], []
    for path, label in progress(pairs, description, show):
        try:
            open_image(path, max_pixels)
        except UserError as e:
            bad.append('{}: {}'.format(shown(path), e))
        else:
            good.append((path, label))
    return good, bad


def print_report(name, pairs, class_names, unreadable, skipped=None):
    """The images per class of a set; a class without images shows 0; the
    files left out, counted by reason; each file that cannot be used
    (unreadable, or refused as open_image refuses) by path."""
    counts = numpy.bincount([label for _, label in pairs],
                            minlength=len(class_names))
    print('{}: {} images'.format(name, len(pairs)))
    for label, count in enumerate(counts):
        print('  {:5d}  {}'.format(count, class_names[label]))
    missing = [class_names[i] for i, count in enumerate(counts) if not count]
    for class_name in missing:
        print('  {}: 0 {} images'.format(class_name, name.split()[0]))
    if skipped:
        total = sum(skipped.values())
        print('  skipped {} entr{}: {}'.format(
            total, 'y' if total == 1 else 'ies', ', '.join(
                '{} {}'.format(n, reason)
                for reason, n in sorted(skipped.items()))))
    for line in unreadable:
        print('  left out {}'.format(line))


def data_warnings(train, val, class_names, batchsize):
    """Lines on what will not train well, each saying what the run does
    about it: single-image classes, a training set smaller than the batch,
    an image in two classes or in both sets, classes RARE_RATIO times rarer
    than the commonest."""
    lines = []
    counts = numpy.bincount([label for _, label in train],
                            minlength=len(class_names))
    val_counts = numpy.bincount([label for _, label in val],
                                minlength=len(class_names))
    for label, count in enumerate(counts):
        if count + val_counts[label] == 1:
            lines.append('class {} has a single image: it trains on it and '
                         'cannot be validated; add more'.format(
                             class_names[label]))
    if len(train) < batchsize:
        lines.append('the training set ({} images) is smaller than the '
                      'batch ({}): batches of {} are used'.format(
                          len(train), batchsize, len(train)))
    # The same file (by its real path: links count) twice: under two
    # labels it teaches both; in both sets it inflates validation.
    labels_of = {}
    for path, label in train:
        labels_of.setdefault(os.path.realpath(path), set()).add(label)
    mixed = [path for path, labels in labels_of.items() if len(labels) > 1]
    if mixed:
        lines.append('{} image{} in more than one class (by file, links '
                     'followed), e.g. {}: each counts in every class it is '
                     'in; check the folders or the list'.format(
                         len(mixed), ' is' if len(mixed) == 1 else 's are',
                         shown(sorted(mixed)[0])))
    shared = [path for path, _ in val if os.path.realpath(path) in labels_of]
    if shared:
        lines.append('{} validation image{} also in the training set, e.g. '
                     '{}: the validation accuracy overstates what the model '
                     'does on new images'.format(
                         len(shared), ' is' if len(shared) == 1 else 's are',
                         shown(shared[0])))
    common = counts.max()
    for label, count in enumerate(counts):
        if 0 < count and count * RARE_RATIO <= common:
            lines.append('class {} has {} training image{}, {:.0f}x fewer '
                         'than the commonest ({}): the run does not '
                         're-weight classes; watch its recall in the '
                         'per-class report'.format(
                             class_names[label], count,
                             '' if count == 1 else 's', common / count,
                             common))
    return lines


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
        f.write(report_text(report) + '\n')


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


def plot_confusion(confusion, class_names, path, normalized=False,
                   title='confusion matrix'):
    """Draws the matrix with its counts in the cells, written atomically.

    ``normalized`` colours each row by its share of the row's images (the
    recall on the diagonal) and writes the shares; a row without images
    stays 0."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    # Class names are text: $, _, % and backslashes are drawn as written.
    with matplotlib.rc_context({'text.parse_math': False}):
        _draw_confusion(plt, numpy.asarray(confusion), class_names, path,
                        normalized, title)


def _draw_confusion(plt, confusion, class_names, path, normalized, title):
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
    ax.set_title('{}\n({} images{})'.format(
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
