"""Fine-tunes GoogLeNet's replaced heads on your own images.

    python convert_caffe_model.py --classes N
    python train_googlenet.py --train DATA [--val DATA] [--cache-features]

DATA is a folder with one sub-folder of images per class (the folder names,
sorted, are the class names) or a list file of ``path label`` lines. The trunk
is frozen up to --freeze-until; the best model by validation accuracy is saved
with its class names, so googlenet_predict.py --model prints them.
"""
import argparse
import hashlib
import os
import re
import sys

import numpy

from chainer_compat import chainer
from chainer import training
from chainer.training import extensions

import tuned_googlenet
from googlenet_data import (check_labels, data_warnings, drop_unreadable,
                            per_class_report, plot_confusion, print_report,
                            read_dataset, stratified_split)
from googlenet_io import (CENTER, CROP, DEFAULT_MAX_PIXELS, RESIZE,
                          UserError, atomic_write, crop, one_line,
                          open_image, positive_int, progress, read_labels,
                          report_errors, resized_bgr)

SNAPSHOT = 'snapshot_iter_{.updater.iteration}'
SNAPSHOT_PATTERN = re.compile(r'^snapshot_iter_(\d+)$')


class ImageDataset(chainer.dataset.DatasetMixin):
    """Caffe's input: a random 224 crop of the 256x256 image with a random
    mirror in training, the centre crop otherwise."""

    def __init__(self, pairs, train, max_pixels=DEFAULT_MAX_PIXELS):
        self.pairs = pairs
        self.train = train
        self.max_pixels = max_pixels

    def __len__(self):
        return len(self.pairs)

    def get_example(self, i):
        path, label = self.pairs[i]
        array = resized_bgr(open_image(path, self.max_pixels))
        if self.train:
            # A generator seeded from the OS: worker processes are forked
            # and would otherwise share numpy's global state.
            rng = numpy.random.default_rng()
            top, left = rng.integers(0, RESIZE - CROP + 1, size=2)
            return (crop(array, top, left, bool(rng.integers(2))),
                    numpy.int32(label))
        return crop(array), numpy.int32(label)


# --- the feature cache ------------------------------------------------------

FEATURE_SHAPES = ((512, 4, 4), (528, 4, 4), (1024, 1, 1))
FEATURE_SIZE = sum(int(numpy.prod(s)) for s in FEATURE_SHAPES)


class ViewDataset(chainer.dataset.DatasetMixin):
    """The centre crop of each image, and its mirror when views == 2."""

    def __init__(self, pairs, views, max_pixels=DEFAULT_MAX_PIXELS):
        self.pairs = pairs
        self.views = views
        self.max_pixels = max_pixels

    def __len__(self):
        return len(self.pairs)

    def get_example(self, i):
        array = resized_bgr(open_image(self.pairs[i][0], self.max_pixels))
        return numpy.stack([crop(array, CENTER, CENTER, mirror)
                            for mirror in (False, True)[:self.views]])


class CachedFeatures(chainer.dataset.DatasetMixin):
    """Trunk features per image and view; training picks a view at random."""

    def __init__(self, features, labels, train):
        self.features = features
        self.labels = labels
        self.train = train

    def __len__(self):
        return len(self.labels)

    def get_example(self, i):
        view = numpy.random.randint(self.features.shape[1]) if self.train \
            else 0
        flat = self.features[i, view]
        parts, start = [], 0
        for shape in FEATURE_SHAPES:
            size = int(numpy.prod(shape))
            parts.append(numpy.asarray(flat[start:start + size]).reshape(
                shape))
            start += size
        return tuple(parts) + (numpy.int32(self.labels[i]),)


def cache_key(model, pairs, views):
    """Changes with the frozen trunk's weights, the images, or the views."""
    digest = hashlib.sha1(str(views).encode())
    for name, param in sorted(model.namedparams()):
        if name.split('/')[1] in tuned_googlenet.TRUNK:
            digest.update(name.encode())
            digest.update(numpy.ascontiguousarray(param.array).tobytes())
    for path, label in pairs:
        stat = os.stat(path)
        digest.update(os.fsencode(os.path.abspath(path)))
        digest.update('\0{}\0{}\0{}\n'.format(
            stat.st_size, stat.st_mtime_ns, label).encode())
    return digest.hexdigest()


def cached_features(model, pairs, views, path, batchsize, device,
                    loaderjob, max_pixels=DEFAULT_MAX_PIXELS, show=True):
    """The trunk's features of every image, computed once and kept on disk.

    Reused while cache_key matches; written atomically, so an interrupted
    computation leaves no cache that looks complete.
    """
    key = cache_key(model, pairs, views)
    if os.path.exists(path):
        with numpy.load(path) as npz:
            if str(npz['key']) == key:
                return npz['features']
    print('computing trunk features of {} images ({} view{}) for {}'.format(
        len(pairs), views, 's' if views > 1 else '', path))
    features = numpy.empty((len(pairs), views, FEATURE_SIZE), numpy.float32)
    iterator = make_iterator(ViewDataset(pairs, views, max_pixels), batchsize,
                             loaderjob, repeat=False, shuffle=False)
    start = 0
    bar = progress(None, 'trunk features', show, total=len(pairs))
    with bar, chainer.no_backprop_mode(), chainer.using_config('train',
                                                                False):
        for batch in iterator:
            x = device.send(numpy.concatenate(batch))
            parts = model.features(x)
            flat = numpy.concatenate(
                [chainer.backend.CpuDevice().send(p.array).reshape(
                    len(x), -1) for p in parts], axis=1)
            features[start:start + len(batch)] = flat.reshape(
                len(batch), views, FEATURE_SIZE)
            start += len(batch)
            bar.update(len(batch))
    iterator.finalize()
    with atomic_write(path) as f:
        numpy.savez(f, key=numpy.array(key), features=features)
    return features


# --- training ---------------------------------------------------------------

def make_iterator(dataset, batchsize, loaderjob, repeat=True, shuffle=True):
    if loaderjob > 0:
        return chainer.iterators.MultiprocessIterator(
            dataset, batchsize, repeat=repeat, shuffle=shuffle,
            n_processes=loaderjob)
    return chainer.iterators.SerialIterator(dataset, batchsize,
                                            repeat=repeat, shuffle=shuffle)


def latest_snapshot(out):
    found = [(int(m.group(1)), name) for name in os.listdir(out)
             for m in [SNAPSHOT_PATTERN.match(name)] if m
             and os.path.isfile(os.path.join(out, name))] if os.path.isdir(
                 out) else []
    if not found:
        raise UserError('no snapshot to resume in {}'.format(out))
    return os.path.join(out, max(found)[1])


def snapshot_writer(model):
    """Writes snapshots uncompressed and without the frozen stages, which
    never change and come back from --model on resume: a snapshot is then
    the heads, the optimizer, the iterator and the log, written in a blink.
    """
    frozen = tuple('updater/model:main/{}/'.format(name)
                   for name in model.frozen_stages)

    def save(path, arrays):  # the snapshot extension's serialized trainer
        with open(path, 'wb') as f:
            numpy.savez(f, **{key: value for key, value in arrays.items()
                              if not key.startswith(frozen)})
    return save


def resume(trainer, path):
    """Loads a snapshot; the frozen stages it lacks stay as loaded."""
    try:
        # Pickled: a trigger's best value is None until the first evaluation.
        with numpy.load(path, allow_pickle=True) as npz:
            chainer.serializers.NpzDeserializer(npz, strict=False).load(
                trainer)
    except Exception as e:
        raise UserError('cannot resume from {}: {}'.format(path, one_line(e)))
    print('resumed from {} at iteration {}'.format(
        path, trainer.updater.iteration))


class SaveBest(training.Extension):
    """Saves the model (and class names) when validation accuracy peaks."""

    def __init__(self, model, path, class_names):
        self.model = model
        self.path = path
        self.class_names = class_names

    def __call__(self, trainer):
        tuned_googlenet.save_model(self.path, self.model, self.class_names)


def build_trainer(args, model, output, class_names, train_set, val_set):
    optimizer = tuned_googlenet.make_optimizer(
        model, lr=args.lr, momentum=args.momentum,
        weight_decay=args.weight_decay)
    loaderjob = 0 if args.cache_features else args.loaderjob
    train_iter = make_iterator(train_set, args.batchsize, loaderjob)
    val_iter = make_iterator(val_set, args.val_batchsize, loaderjob,
                             repeat=False, shuffle=False)
    device = chainer.get_device(args.device)
    updater = training.updaters.StandardUpdater(train_iter, optimizer,
                                                device=device)
    trainer = training.Trainer(updater, (args.epoch, 'epoch'), args.out)
    epoch = (1, 'epoch')
    snapshot = (args.snapshot_interval, 'iteration') if (
        args.snapshot_interval) else epoch
    trainer.extend(extensions.Evaluator(val_iter, model, device=device),
                   trigger=epoch)
    trainer.extend(SaveBest(model, output, class_names),
                   trigger=training.triggers.MaxValueTrigger(
                       'validation/main/accuracy', trigger=epoch))
    trainer.extend(extensions.snapshot(savefun=snapshot_writer(model),
                                       filename=SNAPSHOT), trigger=snapshot)
    trainer.extend(extensions.LogReport(trigger=epoch))
    trainer.extend(extensions.PlotReport(
        ['main/loss', 'validation/main/loss'], 'epoch', file_name='loss.png'))
    trainer.extend(extensions.PlotReport(
        ['main/accuracy', 'validation/main/accuracy'], 'epoch',
        file_name='accuracy.png'))
    trainer.extend(extensions.PrintReport(
        ['epoch', 'iteration', 'main/loss', 'main/loss1', 'main/loss2',
         'main/loss3', 'main/accuracy', 'validation/main/loss',
         'validation/main/accuracy', 'elapsed_time'], out=sys.stdout))
    if not args.no_progress and sys.stdout.isatty():  # no \r in logs
        trainer.extend(extensions.ProgressBar(update_interval=1))
    if args.resume:
        resume(trainer, latest_snapshot(args.out) if args.resume == 'latest'
               else args.resume)
    return trainer


def validate(model, dataset, n_classes, batchsize, device):
    """The confusion matrix (rows: true class, columns: predicted)."""
    confusion = numpy.zeros((n_classes, n_classes), numpy.int64)
    iterator = chainer.iterators.SerialIterator(dataset, batchsize,
                                                repeat=False, shuffle=False)
    for batch in iterator:
        *inputs, t = chainer.dataset.concat_examples(batch)
        with chainer.no_backprop_mode(), chainer.using_config('train',
                                                              False):
            if len(inputs) == 1:
                probs = model.predict(device.send(inputs[0]))
            else:
                probs = model.probabilities_from_pool5(
                    device.send(inputs[-1]))
        predicted = chainer.backend.CpuDevice().send(probs).argmax(axis=1)
        numpy.add.at(confusion, (t, predicted), 1)
    return confusion


def prepare_data(args, n_classes):
    """Reads, checks, splits and reports the data; returns the sets.

    The validation split is drawn from the readable images. A training set
    smaller than the batch lowers args.batchsize to its size.
    """
    if not 0 < args.val_ratio < 1:
        raise UserError('--val-ratio must lie strictly between 0 and 1, got '
                        '{:g}'.format(args.val_ratio))
    train = read_dataset(args.train, args.root)
    pairs = train.pairs
    if len({label for _, label in pairs}) < 2:
        raise UserError('{} has a single class; fine-tuning a classifier '
                        'needs at least two'.format(args.train))
    class_names = train.class_names
    if class_names is None:  # a list file: --labels, or the label numbers
        class_names = (read_labels(args.labels) if args.labels
                       else [str(i) for i in range(n_classes)])
    elif args.labels:
        raise UserError('--labels names the classes of a list file; the '
                        'classes of {} are its folder names'.format(
                            args.train))
    if len(class_names) != n_classes:
        raise UserError('{} has {} classes but the model has {}: run '
                        'convert_caffe_model.py --classes {} first'.format(
                            args.labels if train.class_names is None
                            else args.train, len(class_names), n_classes,
                            len(class_names)))
    check_labels(pairs, n_classes, args.train)
    val = read_dataset(args.val, args.root, class_names) if args.val else None
    if val is not None:
        check_labels(val.pairs, n_classes, args.val)
    show = not args.no_progress
    pairs, bad_train = drop_unreadable(pairs, args.max_pixels, show,
                                       'checking training images')
    if val is not None:
        val_pairs, bad_val = drop_unreadable(val.pairs, args.max_pixels, show,
                                             'checking validation images')
    else:
        pairs, val_pairs = stratified_split(pairs, args.val_ratio, args.seed)
        bad_val = []
    print_report('training set', pairs, class_names, bad_train,
                 train.skipped)
    print_report('validation set', val_pairs, class_names, bad_val,
                 val.skipped if val is not None else None)
    if not pairs or not val_pairs:
        raise UserError('no readable images left in the {} set'.format(
            'training' if not pairs else 'validation'))
    for line in data_warnings(pairs, val_pairs, class_names,
                              args.batchsize):
        print('warning: {}'.format(line))
    args.batchsize = min(args.batchsize, len(pairs))
    return pairs, val_pairs, class_names


class Session:
    """What a training run is made of, ready to run (tests reach inside)."""

    def __init__(self, args):
        self.args = args
        self.freeze_until = tuned_googlenet.parse_freeze_until(
            args.freeze_until)
        if args.cache_features and self.freeze_until != 'inc5b':
            raise UserError('--cache-features needs the whole trunk frozen '
                            '(--freeze-until inc5b)')
        self.model, _ = tuned_googlenet.load_model(args.model,
                                                   self.freeze_until)
        pairs, val_pairs, self.class_names = prepare_data(
            args, self.model.n_classes)
        os.makedirs(args.out, exist_ok=True)
        self.output = args.output or os.path.join(args.out,
                                                  'tuned_googlenet.model')
        self.device = chainer.get_device(args.device)
        self.model.to_device(self.device)
        if args.cache_features:
            print('--cache-features: the trunk runs once per image, so the '
                  'random 224 crop cannot apply; training picks the centre '
                  'crop or its mirror at random')
            self.train_set = self._cached(pairs, 2, 'train', True)
            self.val_set = self._cached(val_pairs, 1, 'val', False)
        else:
            self.train_set = ImageDataset(pairs, True, args.max_pixels)
            self.val_set = ImageDataset(val_pairs, False, args.max_pixels)
        self.trainer = build_trainer(args, self.model, self.output,
                                     self.class_names, self.train_set,
                                     self.val_set)

    def _cached(self, pairs, views, name, train):
        folder = os.path.join(self.args.out, 'features')
        os.makedirs(folder, exist_ok=True)
        features = cached_features(
            self.model, pairs, views, os.path.join(folder, name + '.npz'),
            self.args.val_batchsize, self.device, self.args.loaderjob,
            self.args.max_pixels, not self.args.no_progress)
        return CachedFeatures(features, [label for _, label in pairs], train)

    def run(self):
        self.trainer.run()
        best, _ = tuned_googlenet.load_model(self.output, self.freeze_until)
        best.to_device(self.device)
        confusion = validate(best, self.val_set, len(self.class_names),
                             self.args.val_batchsize, self.device)
        print(per_class_report(confusion, self.class_names))
        plot_confusion(confusion, self.class_names,
                       os.path.join(self.args.out, 'confusion.png'))
        print('best model: {}'.format(self.output))
        return confusion


def train(args):
    Session(args).run()


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--train', required=True,
                        help='folder of class folders, or a list file')
    parser.add_argument('--val', help='validation data (default: hold out '
                        '--val-ratio of --train)')
    parser.add_argument('--val-ratio', type=float, default=0.1,
                        help='share of each class held out when there is '
                        'no --val, strictly between 0 and 1 (default: '
                        '%(default)s)')
    parser.add_argument('--labels', help='class names of a list file, one '
                        'per line, in label order (default: the label '
                        'numbers)')
    parser.add_argument('--max-pixels', type=positive_int,
                        default=DEFAULT_MAX_PIXELS,
                        help='refuse images of more pixels (width x height;'
                        ' default: %(default)s)')
    parser.add_argument('--seed', type=int, default=0,
                        help='seed of the validation split')
    parser.add_argument('--root', default=None,
                        help='paths in list files are relative to this '
                        '(default: the list file\'s folder)')
    parser.add_argument('--model', default='tuned_googlenet.model',
                        help='made by convert_caffe_model.py --classes N')
    parser.add_argument('--output', default=None,
                        help='the best model (default: OUT/'
                        'tuned_googlenet.model)')
    parser.add_argument('--out', '-o', default='result',
                        help='log, plots and snapshots (default: result)')
    parser.add_argument('--batchsize', '-B', type=positive_int, default=32)
    parser.add_argument('--val-batchsize', type=positive_int, default=32)
    parser.add_argument('--epoch', '-E', type=positive_int, default=10)
    parser.add_argument('--lr', type=float, default=0.01)
    parser.add_argument('--momentum', type=float, default=0.9)
    parser.add_argument('--weight-decay', type=float, default=2e-4)
    parser.add_argument('--freeze-until', default=tuned_googlenet
                        .DEFAULT_FREEZE_UNTIL,
                        help='last frozen trunk layer, or none (default: '
                        '%(default)s: only the heads train)')
    parser.add_argument('--cache-features', action='store_true',
                        help='compute the frozen trunk once per image')
    parser.add_argument('--resume', help='a snapshot to continue from, or '
                        '"latest" for the newest in --out')
    parser.add_argument('--snapshot-interval', type=positive_int,
                        default=None, help='snapshot every N iterations '
                        '(default: every epoch)')
    parser.add_argument('--loaderjob', '-j', type=int, default=2,
                        help='image-decoding processes (0: none)')
    parser.add_argument('--device', '-d', default='@numpy',
                        help='Chainer device, e.g. @numpy or @cupy:0')
    parser.add_argument('--no-progress', action='store_true',
                        help='no progress bars (there are none when the '
                        'output is not a terminal either)')
    return parser


def main(argv=None):
    return report_errors(train, build_parser().parse_args(argv))


if __name__ == '__main__':
    sys.exit(main())
