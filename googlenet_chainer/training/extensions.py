"""The Chainer extensions of a training run, each replacing or adding to
Chainer's own for a reason its docstring names."""
import collections
import math
import os

import numpy

from googlenet_chainer.compat import chainer
from chainer import training
from chainer.training import extensions

from googlenet_chainer import plots
from googlenet_chainer.errors import UserError
from googlenet_chainer.interrupts import raise_if_interrupted
from googlenet_chainer.model_file import save_model
from googlenet_chainer.reports import best_epoch
from googlenet_chainer.training.snapshots import snapshot_files


class SaveBest(training.Extension):
    """Saves the model (and class names) when validation accuracy peaks.

    Its trigger, a MaxValueTrigger on validation/main/accuracy
    (trainer._extend), says when. The file names the heads still untrained
    (model_file.save_model): none when the aux heads train, else the
    starting model's untrained heads but loss3_fc.

    Args:
        model: the GoogLeNet being trained.
        path: the best model's file (--output).
        class_names: kept in the file, in label order.
    """

    def __init__(self, model, path, class_names):
        self.model = model
        self.path = path
        self.class_names = class_names

    def __call__(self, trainer):
        model = self.model
        # Trained now: loss3, and the aux heads unless --aux-heads off.
        untrained = [name for name in model.untrained_heads
                     if name != 'loss3_fc' and not model.aux_heads]
        save_model(self.path, model, self.class_names, untrained)


class KeepSnapshots(training.Extension):
    """Deletes all but the newest N snapshots, newest by iteration.

    Not the snapshot extension's n_retains: it ranks by modification time,
    then by name, and on a file system with coarse timestamps deletes
    snapshot_iter_10 before snapshot_iter_9.

    Args:
        n: the snapshots kept (--keep-snapshots).
    """

    priority = -200  # after the snapshot (priority -100) is written

    def __init__(self, n):
        self.n = n

    def __call__(self, trainer):
        for _, path in snapshot_files(trainer.out)[:-self.n]:
            os.unlink(path)


def as_float(value):
    """A reported value as a Python float.

    Args:
        value: a Variable or an array of one element, on any device, or a
            number.

    Returns:
        float.
    """
    return float(chainer.backend.CpuDevice().send(chainer.as_array(value)))


def observed(trainer, key):
    """The value reported under key in this iteration, as a float.

    Args:
        trainer: the Trainer.
        key: a reported key, e.g. 'validation/main/accuracy'.

    Returns:
        float, or None if nothing was reported under key.
    """
    value = trainer.observation.get(key)
    return None if value is None else as_float(value)


class EarlyStopping(training.Extension):
    """--patience N: the run stops after N evaluations without improvement.

    Once validation accuracy has not improved for N evaluations, what
    Chainer's EarlyStoppingTrigger does. Chainer's trigger counts at the
    next turn of the training loop, after that iteration's snapshot is
    written, so a run resumed from it missed one evaluation and stopped an
    epoch late. This extension counts right after the Evaluator (its
    priority is below the Evaluator's, above the snapshot's -100), so
    snapshots keep best and count; the run's stop trigger, ``stop``, reads
    only them and the epoch.

    Args:
        patience: evaluations without improvement that end the run.
        max_epoch: the epoch the run ends at in any case (--epoch).
    """
    trigger = (1, 'epoch')
    priority = training.PRIORITY_EDITOR
    monitor = 'validation/main/accuracy'

    def __init__(self, patience, max_epoch):
        self.patience = patience
        self.max_epoch = max_epoch
        self.best = -math.inf
        self.count = 0

    def __call__(self, trainer):
        value = observed(trainer, self.monitor)
        if value is None:
            return
        if value > self.best:
            self.best, self.count = value, 0
        else:
            self.count += 1

    def stop(self, trainer):
        """The run's stop trigger: max_epoch reached or patience spent.

        Args:
            trainer: the Trainer.

        Returns:
            bool: True once the epoch reaches max_epoch or patience
            evaluations in a row have not improved.
        """
        return trainer.updater.epoch_detail >= self.max_epoch or \
            self.count >= self.patience

    def serialize(self, serializer):
        self.best = float(serializer('best', self.best))
        self.count = int(serializer('count', self.count))


class ExactEvaluator(extensions.Evaluator):
    """The validation set's loss and accuracy over its images.

    Chainer's Evaluator averages its batches' means, so a short last batch
    weighs as much as a full one, and ChainerMN's averages the ranks' means
    over shards padded to equal length with repeated images. This one
    weights each batch's values by its images and sums them over the ranks
    (comm: mpi.Single or Distributed), so validation/main/accuracy is the
    fraction of the validation images classified right.

    Args:
        iterator: the validation iterator, one pass (repeat=False).
        target: the model; it reports its loss and accuracy.
        device: the device the batches are sent to.
        comm: mpi.Single or Distributed.
    """

    def __init__(self, iterator, target, device, comm):
        super().__init__(iterator, target, device=device)
        self.comm = comm

    def evaluate(self):
        """The validation set's scores, over the images of every rank.

        Returns:
            {key: the mean over the images} of what the model reported,
            e.g. validation/main/accuracy; {} without any image. The same
            on every rank.
        """
        iterator = self.get_iterator('main')
        target = self.get_target('main')
        iterator.reset()
        sums, count = collections.defaultdict(float), 0
        # A rank's share of fewer images than ranks can be none at all, and
        # Chainer's iterators divide by their dataset's length.
        for batch in iterator if len(iterator.dataset) else ():
            if not batch:
                continue
            inputs = chainer.dataset.concat_examples(batch, self.device)
            observation = {}
            with chainer.reporter.report_scope(observation), \
                    chainer.no_backprop_mode():
                target(*inputs)
            for key, value in observation.items():
                sums[key] += len(batch) * as_float(value)
            count += len(batch)
        parts = self.comm.gather((dict(sums), count))
        if not self.comm.rank:
            count = sum(n for _, n in parts)
            totals = collections.defaultdict(float)
            for part, _ in parts:
                for key, value in part.items():
                    totals[key] += value
            parts = {key: value / count for key, value in totals.items()} \
                if count else {}
        return self.comm.bcast(parts)


class StopOnNonFinite(training.Extension):
    """Stops the run with one line when a reported loss becomes NaN or inf.

    ``key`` is the training loss, checked at each iteration, or the
    validation loss, checked after the Evaluator and before SaveBest, so
    that a diverged model is never saved as the best (its accuracy is
    whatever NaN logits argmax to). The UserError names the loss, the
    iteration and what to do (a lower --lr).

    Args:
        key: the reported loss, e.g. 'main/loss'.
        priority: the extension's place in each iteration's order.
    """

    def __init__(self, key, priority):
        self.key = key
        self.priority = priority

    def __call__(self, trainer):
        value = observed(trainer, self.key)
        if value is not None and not numpy.isfinite(value):
            raise UserError(
                'the {} became {} at iteration {}: the learning rate is too '
                'high for these features; train again with a lower --lr '
                '(e.g. a tenth)'.format(
                    'validation loss' if self.key.startswith('validation')
                    else 'loss', value, trainer.updater.iteration))


class LearningRate(training.Extension):
    """Sets the optimizer's rate for each next update from a schedule.

    ``attr`` = ``base`` x schedule(iteration, epoch), at the start of the
    run (or of a resumed session) and after each update: a rate computed
    from the iteration and the epoch alone resumes exactly and keeps
    nothing in snapshots. Chainer's StepShift, PolynomialShift and
    WarmupShift each count their own calls and set the attribute: two of
    them on one attribute overwrite each other, so a warm-up cannot come
    before another policy, and WarmupShift's initialize sets the warm-up's
    start value again at every resume, so a run resumed after its warm-up
    would keep that rate to its end.

    Args:
        schedule: optimizers.Schedule.
        attr: the optimizer's attribute (optimizers.schedule_attr).
        base: its value at the full rate.
    """

    trigger = (1, 'iteration')
    # After observe_value (PRIORITY_WRITER) has logged this update's rate.
    priority = training.PRIORITY_READER

    def __init__(self, schedule, attr, base):
        self.schedule = schedule
        self.attr = attr
        self.base = base

    def initialize(self, trainer):
        self(trainer)

    def __call__(self, trainer):
        updater = trainer.updater
        setattr(updater.get_optimizer('main'), self.attr, self.base *
                self.schedule(updater.iteration, updater.epoch))


class PlotLog(training.Extension):
    """Draws loss.png and accuracy.png from LogReport's log, atomically.

    From the log itself, so the plots show exactly the log's epochs and
    values after any resume (PlotReport keeps its own copy, which drifts
    from the log when a run is resumed from a snapshot taken mid-epoch);
    the best epoch marked is the one SaveBest kept (reports.best_epoch).
    """

    trigger = (1, 'epoch')
    priority = training.PRIORITY_READER - 1  # after LogReport

    PLOTS = {'loss.png': ('main/loss', 'validation/main/loss'),
             'accuracy.png': ('main/accuracy', 'validation/main/accuracy')}
    # What report.html calls each.
    CAPTIONS = {'loss.png': 'loss and learning rate by epoch',
                'accuracy.png': 'accuracy by epoch'}

    def __call__(self, trainer):
        log = trainer.get_extension('LogReport').log
        scored = any('validation/main/accuracy' in entry for entry in log)
        best = best_epoch(log) if scored else None
        for name, keys in self.PLOTS.items():
            plots.plot_log(log, keys, os.path.join(trainer.out, name), best)


@training.make_extension(trigger=(1, 'iteration'),
                         priority=training.PRIORITY_WRITER + 2)
def stop_if_interrupted(trainer):
    """Re-raises a Ctrl-C that Python swallowed, at each iteration.

    A KeyboardInterrupt raised inside a finalizer or a callback is printed
    and dropped.

    Args:
        trainer: the Trainer (unused).

    Raises:
        KeyboardInterrupt: a Ctrl-C arrived (interrupts.raise_if_interrupted).
    """
    raise_if_interrupted()
