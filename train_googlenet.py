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

import chainer
from chainer import training
from chainer.training import extensions

import tuned_googlenet
from googlenet_io import (CENTER, CROP, RESIZE, UserError, atomic_write,
                          crop, list_images, one_line, open_image,
                          positive_int, report_errors, resized_bgr)

SNAPSHOT = 'snapshot_iter_{.updater.iteration}'
SNAPSHOT_PATTERN = re.compile(r'^snapshot_iter_(\d+)$')


# --- data -------------------------------------------------------------------

def read_folder(root):
    """[(path, label)] and class names from a folder of class folders."""
    classes = sorted(name for name in os.listdir(root)
                     if os.path.isdir(os.path.join(root, name)))
    pairs = []
    for label, name in enumerate(classes):
        images = list_images(os.path.join(root, name))
        if not images:
            raise UserError('class folder {} has no images'.format(
                os.path.join(root, name)))
        pairs += [(path, label) for path in images]
    return pairs, classes


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


def read_dataset(data, root):
    if not os.path.exists(data):
        raise UserError('no such dataset: {}'.format(data))
    if os.path.isdir(data):
        return read_folder(data)
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
    counts = numpy.bincount([label for _, label in pairs],
                            minlength=len(class_names))
    print('{}: {} images'.format(name, len(pairs)))
    for label, count in enumerate(counts):
        print('  {:5d}  {}'.format(count, class_names[label]))
    for line in unreadable:
        print('  skipped unreadable {}'.format(line))


class ImageDataset(chainer.dataset.DatasetMixin):
    """Caffe's input: a random 224 crop of the 256x256 image with a random
    mirror in training, the centre crop otherwise."""

    def __init__(self, pairs, train):
        self.pairs = pairs
        self.train = train

    def __len__(self):
        return len(self.pairs)

    def get_example(self, i):
        path, label = self.pairs[i]
        array = resized_bgr(open_image(path))
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

    def __init__(self, pairs, views):
        self.pairs = pairs
        self.views = views

    def __len__(self):
        return len(self.pairs)

    def get_example(self, i):
        array = resized_bgr(open_image(self.pairs[i][0]))
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
        digest.update('{}\0{}\0{}\0{}\n'.format(
            os.path.abspath(path), stat.st_size, stat.st_mtime_ns,
            label).encode())
    return digest.hexdigest()


def cached_features(model, pairs, views, path, batchsize, device,
                    loaderjob):
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
    iterator = make_iterator(ViewDataset(pairs, views), batchsize, loaderjob,
                             repeat=False, shuffle=False)
    start = 0
    with chainer.no_backprop_mode(), chainer.using_config('train', False):
        for batch in iterator:
            x = device.send(numpy.concatenate(batch))
            parts = model.features(x)
            flat = numpy.concatenate(
                [chainer.backend.CpuDevice().send(p.array).reshape(
                    len(x), -1) for p in parts], axis=1)
            features[start:start + len(batch)] = flat.reshape(
                len(batch), views, FEATURE_SIZE)
            start += len(batch)
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
    if not args.no_progress:
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


def per_class_report(confusion, class_names):
    lines = ['{:>9s} {:>9s} {:>7s}  class'.format('precision', 'recall',
                                                  'images')]
    predicted = confusion.sum(axis=0)
    actual = confusion.sum(axis=1)
    for i, name in enumerate(class_names):
        precision = confusion[i, i] / predicted[i] if predicted[i] else 0.0
        recall = confusion[i, i] / actual[i] if actual[i] else 0.0
        lines.append('{:9.3f} {:9.3f} {:7d}  {}'.format(
            precision, recall, actual[i], name))
    total = confusion.sum()
    lines.append('accuracy {:.3f} on {} images'.format(
        numpy.trace(confusion) / total if total else 0.0, total))
    lines.append('confusion matrix (rows: true, columns: predicted):')
    width = max(5, len(str(confusion.max())) + 1)
    for i, row in enumerate(confusion):
        lines.append(''.join('{:{}d}'.format(v, width) for v in row)
                     + '  ' + class_names[i])
    return '\n'.join(lines)


def plot_confusion(confusion, class_names, path):
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    size = max(4, 0.5 * len(class_names) + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(confusion, cmap='Blues')
    ax.set_xticks(range(len(class_names)), class_names, rotation=90)
    ax.set_yticks(range(len(class_names)), class_names)
    ax.set_xlabel('predicted')
    ax.set_ylabel('true')
    for (i, j), v in numpy.ndenumerate(confusion):
        ax.text(j, i, str(v), ha='center', va='center',
                color='white' if v > confusion.max() / 2 else 'black')
    fig.tight_layout()
    with atomic_write(path) as f:
        fig.savefig(f, format='png')
    plt.close(fig)


def prepare_data(args, n_classes):
    """Reads, checks, splits and reports the data; returns the sets."""
    pairs, class_names = read_dataset(args.train, args.root)
    if args.val:
        val_pairs, _ = read_dataset(args.val, args.root)
    else:
        pairs, val_pairs = stratified_split(pairs, args.val_ratio, args.seed)
    if len({label for _, label in pairs}) < 2:
        raise UserError('{} has a single class; fine-tuning a classifier '
                        'needs at least two'.format(args.train))
    if class_names is None:  # a list file: labels are the names
        class_names = [str(i) for i in range(n_classes)]
    elif len(class_names) != n_classes:
        raise UserError('{} has {} classes but the model has {}: run '
                        'convert_caffe_model.py --classes {} first'.format(
                            args.train, len(class_names), n_classes,
                            len(class_names)))
    check_labels(pairs, n_classes, args.train)
    check_labels(val_pairs, n_classes, args.val or args.train)
    pairs, bad_train = drop_unreadable(pairs)
    val_pairs, bad_val = drop_unreadable(val_pairs)
    print_report('training set', pairs, class_names, bad_train)
    print_report('validation set', val_pairs, class_names, bad_val)
    if not pairs or not val_pairs:
        raise UserError('no readable images left in the {} set'.format(
            'training' if not pairs else 'validation'))
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
            self.train_set = ImageDataset(pairs, train=True)
            self.val_set = ImageDataset(val_pairs, train=False)
        self.trainer = build_trainer(args, self.model, self.output,
                                     self.class_names, self.train_set,
                                     self.val_set)

    def _cached(self, pairs, views, name, train):
        folder = os.path.join(self.args.out, 'features')
        os.makedirs(folder, exist_ok=True)
        features = cached_features(
            self.model, pairs, views, os.path.join(folder, name + '.npz'),
            self.args.val_batchsize, self.device, self.args.loaderjob)
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
    parser.add_argument('--val-ratio', type=float, default=0.1)
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
                        help='no progress bar (for logs)')
    return parser


def main(argv=None):
    return report_errors(train, build_parser().parse_args(argv))


if __name__ == '__main__':
    sys.exit(main())
