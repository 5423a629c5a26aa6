"""The run's images: read, checked, split and reported (prepare_data), and
the image dataset the trainer iterates over (ImageDataset)."""
import collections
import hashlib

import numpy

from googlenet_chainer.compat import chainer
from googlenet_chainer.data_report import data_warnings, print_report
from googlenet_chainer.datasets import (check_labels, check_root,
                                        drop_unreadable, read_dataset,
                                        stratified_split)
from googlenet_chainer.console import shown
from googlenet_chainer.errors import UserError
from googlenet_chainer.images import (CROP, DEFAULT_MAX_PIXELS, RESIZE, crop,
                                      open_image, resized_bgr)
from googlenet_chainer.labels import read_labels
from googlenet_chainer.training.sampling import example_rng
from googlenet_chainer.training.views import changed_image


RunData = collections.namedtuple(
    'RunData', 'pairs val_pairs class_names unreadable digests')
RunData.__doc__ = """A run's data as prepare_data settled it: the training
and validation [(path, label)], the class names in label order, 'PATH: why'
of each file left out, and {path: sha1 of the file} of every image kept."""


class ImageDataset(chainer.dataset.DatasetMixin):
    """Labelled images as Caffe's input, float32 3 x 224 x 224 crops.

    A random 224 crop of the 256x256 image with a random mirror in training
    (from example_rng), the centre crop otherwise; BGR, minus the mean
    (images.resized_bgr). An example is (the crop, int32 label).

    An image that cannot be read any more (changed since the data report)
    stops the run (views.changed_image): skipped, it would shrink the validation
    set under the epochs' accuracies, which are then not comparable.

    Args:
        pairs: [(path, label)].
        train: random crops and mirrors, not the centre crop.
        seed: the run's --seed, which picks the crops with the epoch and
            the example.
        max_pixels: images.open_image's limit.
    """

    def __init__(self, pairs, train, seed=0, max_pixels=DEFAULT_MAX_PIXELS):
        self.pairs = pairs
        self.train = train
        self.seed = seed
        self.max_pixels = max_pixels

    def __len__(self):
        return len(self.pairs)

    def get_example(self, index):
        rng, i = example_rng(self.seed, index, len(self.pairs))
        path, label = self.pairs[i]
        try:
            array = resized_bgr(open_image(path, self.max_pixels))
        except UserError as e:
            raise changed_image(path, e)
        if self.train:
            top, left = rng.integers(0, RESIZE - CROP + 1, size=2)
            return (crop(array, top, left, bool(rng.integers(2))),
                    numpy.int32(label))
        return crop(array), numpy.int32(label)


def data_fingerprint(parts, digests):
    """What identifies a run's images wherever they are.

    Each set's images in order, each by its content's sha1 and its label:
    no path, size or time, so a data folder moved (to a bigger disk,
    another machine) is the same data, and an image edited in place, its
    size and date kept, is not.

    Args:
        parts: the sets, each [(path, label)].
        digests: {path: sha1 of the file} of every image of them.

    Returns:
        str: a sha1 in hexadecimal.
    """
    digest = hashlib.sha1()
    for pairs in parts:
        for path, label in pairs:
            digest.update('{} {}\n'.format(digests[path], label).encode())
        digest.update(b'\1')
    return digest.hexdigest()


def balanced_class_weight(labels, n_classes):
    """scikit-learn's 'balanced' class weights (--class-weight balanced).

    images / (classes * images of the class), over the classes present; 1
    for a class without images.

    Args:
        labels: the training images' class indices.
        n_classes: the model's classes.

    Returns:
        float32 vector of n_classes weights.
    """
    counts = numpy.bincount(labels, minlength=n_classes)
    present = numpy.count_nonzero(counts)
    return numpy.where(counts > 0, len(labels) / (present * numpy.maximum(
        counts, 1)), 1.0).astype(numpy.float32)


def prepare_data(args, n_classes):
    """Reads, checks, splits and reports the run's data.

    Prints each set's report (print_report) and data_warnings' lines. The
    validation split (without --val) is drawn from the readable images. (A
    training set smaller than the batch trains in batches of its size:
    plan.plan_run.)

    Args:
        args: train_googlenet.py's options (--train, --val, --val-ratio,
            --root, --labels, --max-pixels, --seed, --batchsize,
            --no-progress).
        n_classes: the model's classes.

    Returns:
        RunData.

    Raises:
        UserError: --val-ratio is not strictly between 0 and 1, or data
            that cannot train the model, naming why (read_dataset's
            refusals, one class, a count other than the model's, --labels
            with a folder, labels out of range, a class whose every image
            is unreadable, nothing to train or validate on).
    """
    if not 0 < args.val_ratio < 1:
        raise UserError('--val-ratio must lie strictly between 0 and 1, got '
                        '{:g}'.format(args.val_ratio))
    check_root(args.root, [args.train, args.val])
    train, class_names = _training_set(args, n_classes)
    val = read_dataset(args.val, args.root, class_names) if args.val else None
    if val is not None:
        check_labels(val.pairs, n_classes, args.val)
    show, digests = not args.no_progress, {}
    pairs, bad_train = drop_unreadable(train.pairs, args.max_pixels, show,
                                       'checking training images', digests)
    if val is not None:
        val_pairs, bad_val = drop_unreadable(val.pairs, args.max_pixels, show,
                                             'checking validation images',
                                             digests)
    else:
        pairs, val_pairs = stratified_split(pairs, args.val_ratio, args.seed)
        bad_val = []
    print_report('training set', pairs, class_names, bad_train,
                 train.skipped)
    print_report('validation set', val_pairs, class_names, bad_val,
                 val.skipped if val is not None else None)
    _check_what_is_left(args, train.pairs, pairs, val_pairs, val is None,
                        class_names)
    for line in data_warnings(pairs, val_pairs, class_names, args.batchsize,
                              digests, args.class_weight == 'balanced'):
        print('warning: {}'.format(line))
    return RunData(pairs, val_pairs, class_names, bad_train + bad_val,
                   digests)


def _training_set(args, n_classes):
    """(--train's Data, its class names: the folders', --labels' or the
    label numbers), checked against the model's classes."""
    train = read_dataset(args.train, args.root)
    if len({label for _, label in train.pairs}) < 2:
        raise UserError('{} has a single class; fine-tuning a classifier '
                        'needs at least two'.format(shown(args.train)))
    class_names = train.class_names
    if class_names is None:  # a list file: --labels, or the label numbers
        class_names = (read_labels(args.labels) if args.labels
                       else [str(i) for i in range(n_classes)])
    elif args.labels:
        raise UserError('--labels names the classes of a list file; the '
                        'classes of {} are its folder names'.format(
                            shown(args.train)))
    if len(class_names) != n_classes:
        source = args.labels if train.class_names is None else args.train
        raise UserError('{} has {} classes but the model has {}: run '
                        'convert_caffe_model.py --classes {} first'.format(
                            shown(source), len(class_names), n_classes,
                            len(class_names)))
    check_labels(train.pairs, n_classes, args.train)
    return train, class_names


def _check_what_is_left(args, given, pairs, val_pairs, split, class_names):
    """Refuses a run whose readable images leave a class of ``given``
    without any (the model could never predict it, as with an empty class
    folder), or nothing to train or validate on."""
    kept = {label for _, label in pairs}
    if split:  # the validation set was split from the readable images
        kept |= {label for _, label in val_pairs}
    lost = sorted({label for _, label in given} - kept)
    if lost and pairs:
        raise UserError('class {} has images but none of them could be used '
                        '(each is listed above): the model could never '
                        'predict it; replace them, or remove the class'
                        .format(shown(class_names[lost[0]])))
    if pairs and not val_pairs and split:
        raise UserError('no class of {} has two readable images, so none can '
                        'be held out for validation: add images, or give '
                        '--val'.format(shown(args.train)))
    if not pairs or not val_pairs:
        raise UserError('no readable images left in the {} set'.format(
            'training' if not pairs else 'validation'))
