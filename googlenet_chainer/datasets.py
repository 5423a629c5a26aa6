"""Labelled image data: folders of class folders and list files, read, checked
and split.

A data set is a folder of class folders (the folder names are the class
names) or a list file of ``path label`` lines (Caffe's train.txt/val.txt
format). Classes come from the training data; any other data set (validation,
test) is mapped onto them by name, so a folder that lacks a class, or lists
them in another order, cannot shift the labels.
"""
import collections
import os
import re
import unicodedata

import numpy

from googlenet_chainer.console import (controls_in, decoded, first_names,
                                       progress, same_name, shown)
from googlenet_chainer.errors import UserError
from googlenet_chainer.files import file_sha1
from googlenet_chainer.images import (DEFAULT_MAX_PIXELS, image_suffixes,
                                      is_hidden, is_image, list_images,
                                      open_image)
from googlenet_chainer.labels import matching_names, read_text_lines

Data = collections.namedtuple('Data', 'pairs class_names skipped')
Data.__doc__ = """A data set as read.

Attributes:
    pairs: [(path, label)], each label a class index.
    class_names: in label order; None for a list file, which names none.
    skipped: {reason: count} of the entries left out.
"""


def _count(skipped, reason, n=1):
    """Adds n entries left out for reason to skipped."""
    skipped[reason] = skipped.get(reason, 0) + n


def read_folder(root, class_names=None):
    """The Data of a folder of class folders.

    The visible sub-folders are the classes (dot-folders and __MACOSX are
    not), each holding its images at any depth, as torchvision's
    ImageFolder finds them. A name that is not valid UTF-8 becomes its
    console.decoded() form.

    Args:
        root: the folder.
        class_names: None, the sorted folder names being the classes; or
            the training set's, each folder then labelled by its name's
            index there (classes without a folder have no images).

    Returns:
        Data: the pairs folder by folder (in name order), each folder's
        by path; the class names given, else the folders'.

    Raises:
        UserError: root or a folder in it cannot be read, root holds no
            class folders (naming the images it holds if any), a folder's
            name has a control character or makes the same class name as
            another's, a folder is not one of ``class_names``, or a class
            folder has no images.
    """
    folders, skipped = _class_folders(root)
    names = _class_names(folders)
    if class_names is None:
        class_names = names
    index = {same_name(name): i for i, name in enumerate(class_names)}
    pairs = []
    for entry, name in zip(folders, names):
        if name not in index:
            raise UserError('{}: folder \'{}\' is not one of the {} '
                            'training classes ({})'.format(
                                shown(root), shown(entry.name),
                                len(class_names), first_names(class_names)))
        images, left_out = list_images(entry.path, recursive=True)
        for reason, n in left_out.items():
            _count(skipped, reason, n)
        if not images:
            raise UserError('class folder {} has no images'.format(
                shown(entry.path)))
        pairs += [(path, index[name]) for path in images]
    return Data(pairs, list(class_names), skipped)


def _class_folders(root):
    """(the visible sub-folders of root sorted by name, {reason: count} of
    the entries left out); a folder without any is refused."""
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
    return folders, skipped


def _class_names(folders):
    """The class name of each folder; one with a control character, or two
    that make one name, are refused."""
    names = [decoded(entry.name) for entry in folders]
    first = {}
    for entry, name in zip(folders, names):
        if controls_in(name):
            raise UserError('class folder {} has a control character in its '
                            'name ({}): rename it'.format(
                                shown(entry.path), controls_in(name)))
        # An undecodable byte and a literal backslash escape read alike,
        # as do a composed and a decomposed accent: two folders, one class
        # name, and one class left empty.
        if name in first:
            raise UserError('class folders {} and {} both make class {} '
                            '(undecodable bytes are written \\xNN, accents '
                            'composed): rename one'.format(
                                shown(first[name].path), shown(entry.path),
                                name))
        first[name] = entry
    return names


def read_list(path, root):
    """The Data of a ``path label`` list file, Caffe's train.txt format.

    UTF-8 (a byte-order mark and CRLF fine); a path may hold spaces (the
    label is the last field); blank lines are passed over. check_labels,
    not this, checks the labels against a model.

    Args:
        path: the list file.
        root: the folder its relative paths are relative to.

    Returns:
        Data: the pairs in the file's order; class names None.

    Raises:
        UserError: the file cannot be read or is not UTF-8, a line is not
            ``path label``, a listed file is missing, or it lists no images.
    """
    pairs = []
    for number, line in enumerate(read_text_lines(path, 'list file'), 1):
        if not line.strip():
            continue
        fields = line.strip().rsplit(None, 1)
        if len(fields) != 2 or not re.fullmatch(r'-?\d+', fields[1]):
            raise UserError('{} line {}: expected "path label", got {!r}'
                            .format(shown(path), number,
                                    shown(line.strip())))
        image = _as_stored(os.path.join(root, fields[0]))
        if not os.path.isfile(image):
            raise UserError('{} line {}: no such file {}'.format(
                shown(path), number, shown(image)))
        pairs.append((image, int(fields[1])))
    if not pairs:
        raise UserError('{} lists no images'.format(shown(path)))
    return Data(pairs, None, {})


def _as_stored(path):
    """path, or its composed or decomposed Unicode form where only that
    is on disk: a list written on one system names the files another one
    stored (macOS stores names decomposed)."""
    for form in (path, unicodedata.normalize('NFC', path),
                 unicodedata.normalize('NFD', path)):
        if os.path.exists(form):
            return form
    return path


def read_dataset(data, root, class_names=None):
    """The Data of a folder of class folders or of a list file.

    Args:
        data: a folder of class folders, or a list file.
        root: the folder a list file's paths are relative to (None: the
            list file's own); unused for a folder.
        class_names: None, or known classes that a folder's class folders
            are mapped onto by name (read_folder); a list file's labels
            are class indices already.

    Returns:
        Data: read_folder's or read_list's.

    Raises:
        UserError: data does not exist or is an image, or read_folder or
            read_list refuses it.
    """
    if not os.path.exists(data):
        raise UserError('no such dataset: {}'.format(shown(data)))
    if os.path.isdir(data):
        return read_folder(data, class_names)
    if is_image(data):
        raise UserError('{} is an image, not a data set: give a folder of '
                        'class folders or a list file of "path label" '
                        'lines'.format(shown(data)))
    return read_list(data, root if root is not None else os.path.dirname(
        os.path.abspath(data)))


def check_root(root, data):
    """Refuses --root where no list file would use it: given with folders
    alone, it would be passed over (a typo or a wrong path unseen).

    Args:
        root: --root, or None.
        data: the data sets given (folders or list files); None for one
            not given.

    Raises:
        UserError: root is given and every data set given is a folder.
    """
    given = [path for path in data if path is not None]
    if root is not None and given and all(map(os.path.isdir, given)):
        raise UserError('--root is the folder a list file\'s paths are '
                        'relative to, and {} {} a folder of class folders: '
                        'leave --root out'.format(
                            ' and '.join(map(shown, given)),
                            'is' if len(given) == 1 else 'are each'))


def check_labels(pairs, n_classes, source):
    """Refuses labels that are not classes of the model.

    Args:
        pairs: [(path, label)].
        n_classes: the model's classes.
        source: what the pairs were read from, named in the error.

    Raises:
        UserError: a label lies outside 0..n_classes - 1 (naming the lowest).
    """
    labels = {label for _, label in pairs}
    bad = sorted(label for label in labels if not 0 <= label < n_classes)
    if bad:
        raise UserError('{}: label {} is out of range for a model of {} '
                        'classes (0..{})'.format(shown(source), bad[0],
                                                 n_classes, n_classes - 1))


def stratified_split(pairs, ratio, seed):
    """Holds out a share of each class for validation, reproducibly.

    Each class gives ``ratio`` of its images, rounded, at least one of any
    class with two or more and never a class's last one; the same seed
    draws the same images.

    Args:
        pairs: [(path, label)].
        ratio: the share held out, 0 < ratio < 1.
        seed: seeds the draw (numpy.random.RandomState).

    Returns:
        (training pairs, validation pairs), each class by class in label
        order, a class's images in a random order.
    """
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
                    description='checking images', digests=None):
    """Decodes every image once, keeping those that decode.

    Args:
        pairs: [(path, label)].
        max_pixels: images.open_image's limit.
        show: a progress bar (on stderr, if a terminal).
        description: the progress bar's label.
        digests: None, or a dict that gets {path: sha1 of the file} of each
            readable image: what identifies it, wherever it is.

    Returns:
        (the readable pairs in order, 'PATH: why' of each of the others).
    """
    good, bad = [], []
    for path, label in progress(pairs, description, show):
        try:
            open_image(path, max_pixels)
        except UserError as e:
            bad.append('{}: {}'.format(shown(path), e))
        else:
            good.append((path, label))
            if digests is not None:
                digests[path] = file_sha1(path).hexdigest()
    return good, bad


def labelled_inputs(data, root, class_names):
    """The labelled images of a data set, in a model's class order.

    Class folders match the model's classes by name (matching_names:
    ImageNet's wnids for synset_words.txt's 1000 classes).

    Args:
        data: a folder of class folders, or a list file.
        root: the folder a list file's paths are relative to (None: its
            own folder).
        class_names: the model's class names.

    Returns:
        [(path, label)], each label an index into class_names.

    Raises:
        UserError: check_root, read_dataset or check_labels refuses it, or
            it has no images.
    """
    check_root(root, [data])
    pairs = read_dataset(data, root, matching_names(class_names)).pairs
    check_labels(pairs, len(class_names), data)
    if not pairs:
        raise UserError('{} has no images'.format(shown(data)))
    return pairs
