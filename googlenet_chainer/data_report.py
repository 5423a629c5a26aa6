"""The data report: what a run's data set holds, what was left out and why,
and what will not train well, printed before any training."""
import os

import numpy

from googlenet_chainer.console import shown

# A class this many times rarer than the commonest is worth a warning.
RARE_RATIO = 3


def print_report(name, pairs, class_names, unreadable, skipped=None):
    """Prints a set's images per class and what was left out of it.

    Each class's count (a class without images shows 0 and gets a line of
    its own), the entries left out, counted by reason, and each file that
    cannot be used (unreadable, or refused as open_image refuses) by path.

    Args:
        name: the set, e.g. 'training set'; its first word names the
            images in the line of a class without any.
        pairs: the set's [(path, label)].
        class_names: every class, in label order.
        unreadable: 'PATH: why' of each file that cannot be used.
        skipped: None, or Data.skipped.
    """
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


def data_warnings(train, val, class_names, batchsize, digests=None,
                  reweighted=False):
    """Lines on what will not train well, each saying what the run does.

    Single-image classes, a training set smaller than the batch, a
    training image in two classes or in both sets, classes RARE_RATIO
    times rarer than the commonest.

    Args:
        train, val: the training and validation [(path, label)].
        class_names: every class, in label order.
        batchsize: images per training step (--batchsize).
        digests: None, or {path: sha1 of the file}: images are then the
            same when their content is (a copy in another folder);
            otherwise when they are one file (links followed).
        reweighted: the loss is weighted by class (--class-weight
            balanced), which the rare-class lines then say.

    Returns:
        [str], one warning per problem found (empty if none).
    """
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
    lines += _repeated(train, val, digests)
    return lines + _rare(counts, class_names, reweighted)


def _repeated(train, val, digests):
    """Warnings of an image in two classes (it teaches both) or in both
    sets (it inflates validation), by content or by file."""
    def same(path):
        return digests[path] if digests else os.path.realpath(path)
    how = 'the same content' if digests else 'by file, links followed'
    labels_of, first = {}, {}
    for path, label in train:
        labels_of.setdefault(same(path), set()).add(label)
        first.setdefault(same(path), path)
    mixed = sorted(first[key] for key, labels in labels_of.items()
                   if len(labels) > 1)
    lines = []
    if mixed:
        lines.append('{} image{} in more than one class ({}), e.g. {}: each '
                     'counts in every class it is in; check the folders or '
                     'the list'.format(
                         len(mixed), ' is' if len(mixed) == 1 else 's are',
                         how, shown(mixed[0])))
    shared = [path for path, _ in val if same(path) in labels_of]
    if shared:
        lines.append('{} validation image{} also in the training set{}, e.g. '
                     '{}: the validation accuracy overstates what the model '
                     'does on new images'.format(
                         len(shared), ' is' if len(shared) == 1 else 's are',
                         ' (the same content)' if digests else '',
                         shown(shared[0])))
    return lines


def _rare(counts, class_names, reweighted):
    """Warnings of classes RARE_RATIO times rarer than the commonest."""
    common = counts.max()
    return ['class {} has {} training image{}, {:.0f}x fewer than the '
            'commonest ({}): {}; watch its recall in the per-class '
            'report'.format(
                class_names[label], count, '' if count == 1 else 's',
                common / count, common,
                'its loss is weighted up (--class-weight balanced)'
                if reweighted else 'the run does not re-weight classes')
            for label, count in enumerate(counts)
            if 0 < count and count * RARE_RATIO <= common]
