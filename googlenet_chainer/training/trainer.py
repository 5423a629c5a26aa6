"""The Trainer of a run: optimizer, updater, schedule and extensions."""
import math
import os
import sys

import numpy

from googlenet_chainer.compat import chainer
from chainer import training
from chainer.training import extensions

from googlenet_chainer.devices import get_device
from googlenet_chainer.inference import Predictor
from googlenet_chainer.mpi import Single
from googlenet_chainer.training.data import (ImageDataset,
                                             balanced_class_weight)
from googlenet_chainer.training.extensions import (
    EarlyStopping, ExactEvaluator, KeepSnapshots, LearningRate, PlotLog,
    SaveBest, StopOnNonFinite, stop_if_interrupted)
from googlenet_chainer.training.feature_cache import (
    CachedFeatures, cache_summary, cached_features, feature_shapes)
from googlenet_chainer.training.loader import make_iterator
from googlenet_chainer.training.optimizers import (
    Schedule, learning_rate, make_optimizer, schedule_attr)
from googlenet_chainer.training.sampling import SeededOrder, Shard
from googlenet_chainer.training.snapshots import (SNAPSHOT, resume,
                                                  snapshot_writer)
from googlenet_chainer.training.views import view_count


class PlainText:
    """A stream that drops PrintReport's erase-to-end code (ESC [J).

    PrintReport writes it before each row to clear ProgressBar's lines:
    with no bar there is nothing to erase, and a log file gets plain text.

    Args:
        stream: where the text goes (sys.stdout).
    """

    def __init__(self, stream):
        self.stream = stream

    def write(self, text):
        self.stream.write(text.replace('\033[J', ''))

    def flush(self):
        self.stream.flush()


class SeededUpdater(chainer.training.updaters.StandardUpdater):
    """StandardUpdater that seeds dropout by the iteration.

    Before each update it seeds numpy's global generator, which dropout
    draws from, with the run's seed (and rank, under MPI) and the
    iteration, so an interrupted and resumed run drops the units an
    uninterrupted one would.

    Args:
        *args, **kwargs: StandardUpdater's (iterator, optimizer, device).
        seed: the run's --seed.
        rank: this process's MPI rank; None for a run of one process.
    """

    def __init__(self, *args, seed, rank=None, **kwargs):
        super().__init__(*args, **kwargs)
        # Under MPI each rank drops its own units (rank None: one process).
        self.seed = [seed] if rank is None else [seed, rank]

    def update_core(self):
        numpy.random.seed(self.seed + [self.iteration])
        super().update_core()


def set_up_model(args, model, plan, comm=Single()):
    """Readies the starting model for the run, on its device.

    The aux heads on or off, the label smoothing, the device (each rank's
    own GPU under MPI), and with --class-weight balanced the loss's class
    weights, printed.

    Args:
        args: the options (--aux-heads, --label-smoothing, --device,
            --class-weight).
        model: the starting model, on the CPU.
        plan: the run's plan.Plan.
        comm: mpi.Single or Distributed.

    Returns:
        The Chainer device the model is on.

    Raises:
        UserError: --device is not a device spec, or needs CuPy, which is
            not installed (devices.get_device).
    """
    model.aux_heads = args.aux_heads == 'on'
    model.label_smoothing = args.label_smoothing
    device = get_device(args.device, comm)
    model.to_device(device)
    if args.class_weight == 'balanced':
        weight = balanced_class_weight([label for _, label in plan.pairs],
                                       model.n_classes)
        print('class weights: ' + ', '.join(
            '{} {:.3f}'.format(name, w)
            for name, w in zip(plan.class_names, weight)))
        model.class_weight = device.send(weight)
    return device


def training_sets(args, plan, model, device, comm=Single()):
    """The datasets a run trains and validates on.

    Images (a random crop and mirror for training, the centre crop for
    validation), or with --cache-features what the frozen trunk makes of
    them (feature_cache: training draws one of each image's --cache-views
    views each epoch, validation reads the centre crop), which this call
    computes if need be.

    Args:
        args: train_googlenet.py's options.
        plan: the run's plan.Plan.
        model: the model, on device.
        device: set_up_model's.
        comm: mpi.Single or Distributed; each rank computes its share of
            the feature cache.

    Returns:
        (training set, validation set), Chainer datasets of (inputs...,
        label) examples.

    Raises:
        UserError: the feature cache cannot be computed
            (feature_cache.cached_features).
    """
    if not args.cache_features:
        return (ImageDataset(plan.pairs, True, args.seed, args.max_pixels),
                ImageDataset(plan.val_pairs, False, args.seed,
                             args.max_pixels))
    aux = args.aux_heads == 'on'
    if not comm.rank:
        print(cache_summary(model.freeze_until, aux, args.cache_views,
                            (len(plan.pairs), len(plan.val_pairs))))

    def cached(pairs, views, name, train):
        features = cached_features(
            Predictor(model, device, crops=view_count(views)),
            [(path, plan.digests[path]) for path, _ in pairs],
            os.path.join(args.out, 'features', name + '.npy'),
            args.val_batchsize, args.loaderjob, args.loader_timeout,
            args.max_pixels, not args.no_progress, aux, comm, views,
            args.seed)
        return CachedFeatures(features, [label for _, label in pairs],
                              feature_shapes(model.freeze_until, aux),
                              train, args.seed)
    return (cached(plan.pairs, args.cache_views, 'train', True),
            cached(plan.val_pairs, '1', 'val', False))


def build_trainer(args, plan, model, train_set, val_set, device,
                  comm=Single()):
    """The Trainer of a run, resumed from plan.snapshot if there is one.

    Under MPI (comm.size > 1) each rank trains on its shard of train_set
    and validates on its share of val_set, gradients are averaged over the
    ranks (ChainerMN's multi-node optimizer, heads only: zero_fill=False
    skips the frozen trunk, which has no gradients) and so is validation
    (ExactEvaluator); only rank 0 saves, logs, plots and prints.

    Args:
        args: train_googlenet.py's options.
        plan: the run's plan.Plan.
        model, device: the model and its device (set_up_model).
        train_set, val_set: training_sets'.
        comm: mpi.Single or Distributed.

    Returns:
        the chainer.training.Trainer, ready to run.

    Raises:
        UserError: the snapshot cannot be loaded (snapshots.resume).
    """
    if comm.size > 1:
        from chainermn.datasets import scatter_index
        train_set = Shard(train_set, *scatter_index(
            len(train_set), comm.chainermn))
        # Each image once: ExactEvaluator sums over unequal shards.
        val_set = Shard(val_set, *scatter_index(
            len(val_set), comm.chainermn, force_equal_length=False))
    optimizer = make_optimizer(model, args.optimizer, args.lr, args.momentum,
                               args.weight_decay)
    if comm.size > 1:
        import chainermn
        optimizer = chainermn.create_multi_node_optimizer(
            optimizer, comm.chainermn, zero_fill=False)
    loaderjob = 0 if args.cache_features else args.loaderjob
    train_iter = make_iterator(train_set, plan.batchsize, loaderjob,
                               args.loader_timeout, SeededOrder(args.seed))
    val_iter = make_iterator(val_set, args.val_batchsize, loaderjob,
                             args.loader_timeout, repeat=False)
    updater = SeededUpdater(train_iter, optimizer, device=device,
                            seed=args.seed,
                            rank=comm.rank if comm.size > 1 else None)
    early = EarlyStopping(args.patience, args.epoch) if args.patience \
        else None
    trainer = training.Trainer(
        updater, early.stop if early else (args.epoch, 'epoch'), args.out)
    _extend(trainer, args, plan, model, val_iter, device, early, comm,
            len(train_set) / plan.batchsize)
    if plan.snapshot:
        resume(trainer, plan.snapshot)
    if comm.size > 1 and optimizer.is_changed(model):
        # ChainerMN's optimizer spends its first update on broadcasting
        # rank 0's weights instead: done here, every update updates, and a
        # resumed run goes on as an uninterrupted one.
        comm.chainermn.bcast_data(model)
    return trainer


def _extend(trainer, args, plan, model, val_iter, device, early, comm,
            per_epoch):
    """The run's extensions, rank 0's writers only on rank 0; per_epoch:
    the updates of an epoch (of this rank's shard), fractional where the
    last batch of an epoch takes the next one's first examples."""
    epoch = (1, 'epoch')
    trainer.extend(StopOnNonFinite('main/loss', training.PRIORITY_WRITER
                                   + 1), name='finite_loss')
    trainer.extend(stop_if_interrupted)
    trainer.extend(ExactEvaluator(val_iter, model, device, comm),
                   name='validation', trigger=epoch)
    trainer.extend(StopOnNonFinite('validation/main/loss',
                                   training.PRIORITY_EDITOR + 1),
                   name='finite_validation_loss', trigger=epoch)
    if early:
        trainer.extend(early)
    schedule = Schedule(args.lr_policy, int(math.ceil(args.epoch * per_epoch)),
                        int(math.ceil(args.warmup * per_epoch)), args.gamma,
                        args.lr_step, args.power)
    trainer.extend(LearningRate(schedule,
                                *schedule_attr(args.optimizer, args.lr)))
    trainer.extend(extensions.observe_value('lr', lambda trainer: (
        learning_rate(trainer.updater.get_optimizer('main')))))
    if comm.rank:
        return  # rank 0 writes and prints for the run
    trainer.extend(SaveBest(model, plan.output, plan.class_names),
                   trigger=training.triggers.MaxValueTrigger(
                       'validation/main/accuracy', trigger=epoch))
    trainer.extend(extensions.snapshot(
        savefun=snapshot_writer(model, plan.config), filename=SNAPSHOT),
        trigger=args.snapshot_interval)
    trainer.extend(KeepSnapshots(args.keep_snapshots),
                   trigger=args.snapshot_interval)
    trainer.extend(extensions.LogReport(trigger=epoch))
    trainer.extend(PlotLog())
    progress_bar = not args.no_progress and sys.stdout.isatty()
    trainer.extend(extensions.PrintReport(
        ['epoch', 'iteration', 'lr', 'main/loss', 'main/loss1',
         'main/loss2', 'main/loss3', 'main/accuracy',
         'validation/main/loss', 'validation/main/accuracy',
         'elapsed_time'],
        out=sys.stdout if progress_bar else PlainText(sys.stdout)))
    if progress_bar:  # no \r in logs
        trainer.extend(extensions.ProgressBar(update_interval=1))
