"""Each of the run's extensions against Chainer's stub trainer
(chainer.testing.training.get_trainer_with_mock_updater), as Chainer tests
its own: observations fed by an extension of higher priority, the updater a
mock that only counts iterations."""
import os
import signal

import numpy
import pytest
from chainer.testing.training import get_trainer_with_mock_updater

from googlenet_chainer import cli, interrupts, model_file, plots
from googlenet_chainer.compat import chainer
from googlenet_chainer.errors import UserError
from googlenet_chainer.mpi import Single
from googlenet_chainer.training import extensions
from googlenet_chainer.training.sampling import Shard
from googlenet_chainer.training.snapshots import snapshot_files

ITERATIONS_PER_EPOCH = 2


def stub_trainer(tmp_path, epochs, stop_trigger=None):
    trainer = get_trainer_with_mock_updater(
        stop_trigger or (epochs * ITERATIONS_PER_EPOCH, 'iteration'),
        iter_per_epoch=ITERATIONS_PER_EPOCH)
    trainer.out = str(tmp_path)
    return trainer


def reporting(values, key='validation/main/accuracy', per='epoch'):
    """An extension that reports values[k] under key at the end of epoch
    (or iteration) k + 1, before the extensions under test run."""
    @chainer.training.make_extension(
        trigger=(1, per), priority=chainer.training.PRIORITY_WRITER + 10)
    def report(trainer):
        k = (trainer.updater.epoch if per == 'epoch'
             else trainer.updater.iteration) - 1
        if k < len(values):
            chainer.report({key: values[k]})
    return report


def test_save_best_keeps_the_model_of_the_best_epoch(tmp_path, model_3):
    model, _ = model_file.load_model(model_3)
    model.aux_heads = False
    path = str(tmp_path / 'best.model')
    trainer = stub_trainer(tmp_path, 3)
    trainer.extend(reporting([0.5, 0.7, 0.6]))

    @chainer.training.make_extension(trigger=(1, 'epoch'), priority=500)
    def mark(trainer):  # the weights say which epoch they are of
        model.loss3_fc.b.array[0] = trainer.updater.epoch
    trainer.extend(mark)
    trainer.extend(extensions.SaveBest(model, path, ['a', 'b', 'c']),
                   trigger=chainer.training.triggers.MaxValueTrigger(
                       'validation/main/accuracy', trigger=(1, 'epoch')))
    trainer.run()
    best, names = model_file.load_model(path)
    assert best.loss3_fc.b.array[0] == 2 and names == ['a', 'b', 'c']
    # With the aux heads off, only they stay untrained.
    assert set(best.untrained_heads) == set(model.untrained_heads) - {
        'loss3_fc'}


def test_keep_snapshots_ranks_by_iteration_not_by_time(tmp_path):
    for iteration in (9, 10, 11):
        path = tmp_path / 'snapshot_iter_{}'.format(iteration)
        path.write_bytes(b'')
        os.utime(path, (1000, 1000))  # a file system's coarse timestamps
    trainer = stub_trainer(tmp_path, 1)
    trainer.extend(extensions.KeepSnapshots(2), trigger=(1, 'epoch'))
    trainer.run()
    assert [i for i, _ in snapshot_files(str(tmp_path))] == [10, 11]


def test_early_stopping_counts_epochs_without_improvement(tmp_path):
    early = extensions.EarlyStopping(patience=2, max_epoch=10)
    trainer = stub_trainer(tmp_path, 10, stop_trigger=early.stop)
    trainer.extend(reporting([0.5, 0.6, 0.6, 0.55, 0.7]))
    trainer.extend(early)
    trainer.run()
    assert trainer.updater.epoch == 4  # best at 2; 3 and 4 no better
    # Its state goes into snapshots: a resumed run goes on counting.
    state = {}
    early.serialize(chainer.serializers.DictionarySerializer(state))
    again = extensions.EarlyStopping(patience=2, max_epoch=10)
    again.serialize(chainer.serializers.NpzDeserializer(state))
    assert (again.best, again.count) == (0.6, 2)


class _Scored(chainer.Chain):
    """Reports the share of its inputs equal to their labels, as a
    classifier reports its accuracy."""

    def forward(self, x, t):
        chainer.report({'accuracy': float((x == t).mean())}, self)


def test_exact_evaluator_weighs_every_image_once(tmp_path):
    # Batches of 3 and 1: 2 of 3 right, then the last one right. The mean
    # of batch means would be (2/3 + 1) / 2; over the images it is 3/4.
    examples = [(numpy.int32(x), numpy.int32(t)) for x, t in
                ((1, 1), (2, 2), (3, 0), (4, 4))]
    iterator = chainer.iterators.SerialIterator(
        examples, 3, repeat=False, shuffle=False)
    trainer = stub_trainer(tmp_path, 1)
    trainer.extend(extensions.ExactEvaluator(
        iterator, _Scored(), chainer.get_device('@numpy'), Single()),
        name='validation', trigger=(1, 'epoch'))
    trainer.run()
    assert trainer.observation['validation/main/accuracy'] == 0.75


class _SecondRankSent:
    """Rank 0 of two, the other rank having scored 3 of its 4 images right
    (as ExactEvaluator gathers it: sums weighted by images, and the
    count)."""

    rank, size = 0, 2

    def gather(self, part):
        return [part, ({'validation/main/accuracy': 3.0}, 4)]

    def bcast(self, obj):
        return obj


def test_exact_evaluator_on_a_rank_whose_share_is_empty(tmp_path):
    # Fewer validation images than ranks: this rank's shard has none.
    iterator = chainer.iterators.SerialIterator(
        Shard([(numpy.int32(1), numpy.int32(1))], 1, 1), 4, repeat=False,
        shuffle=False)
    trainer = stub_trainer(tmp_path, 1)
    trainer.extend(extensions.ExactEvaluator(
        iterator, _Scored(), chainer.get_device('@numpy'),
        _SecondRankSent()), name='validation', trigger=(1, 'epoch'))
    trainer.run()
    assert trainer.observation['validation/main/accuracy'] == 0.75


@pytest.mark.parametrize('value', [float('nan'), float('inf')])
def test_a_loss_that_is_not_finite_stops_the_run_in_one_line(tmp_path,
                                                             value):
    trainer = stub_trainer(tmp_path, 5)
    trainer.extend(reporting([1.0, 0.5, value], key='main/loss',
                             per='iteration'))
    trainer.extend(extensions.StopOnNonFinite(
        'main/loss', chainer.training.PRIORITY_WRITER + 1))
    with pytest.raises(UserError, match='the loss became {} at iteration 3'
                       .format(value)):
        trainer.run(show_loop_exception_msg=False)
    assert trainer.updater.iteration == 3


def test_plot_log_draws_exactly_the_log(tmp_path, monkeypatch):
    drawn = {}
    real = plots.plot_log

    def record(log, keys, path, best):
        drawn[os.path.basename(path)] = plots.plot_curves(log, keys), best
        real(log, keys, path, best)
    monkeypatch.setattr(plots, 'plot_log', record)
    trainer = stub_trainer(tmp_path, 2)
    trainer.extend(reporting([0.9, 0.4], key='main/loss'))
    trainer.extend(reporting([0.3, 0.8], key='validation/main/accuracy'))
    trainer.extend(chainer.training.extensions.LogReport(
        trigger=(1, 'epoch')))
    trainer.extend(extensions.PlotLog())
    trainer.run()
    assert drawn['loss.png'][0]['main/loss'] == ([1, 2], [0.9, 0.4])
    assert drawn['accuracy.png'][0]['validation/main/accuracy'] == (
        [1, 2], [0.3, 0.8])
    # The best epoch marked is the log's best.
    assert drawn['loss.png'][1] == drawn['accuracy.png'][1] == (2, 0.8)
    for name in ('loss.png', 'accuracy.png'):
        with open(tmp_path / name, 'rb') as f:
            assert f.read(8) == b'\x89PNG\r\n\x1a\n'


def test_a_swallowed_ctrl_c_stops_the_run_at_the_next_iteration(tmp_path,
                                                                capsys):
    trainer = stub_trainer(tmp_path, 5)

    @chainer.training.make_extension(
        trigger=(1, 'iteration'), priority=chainer.training.PRIORITY_WRITER
        + 3)
    def swallowing(trainer):  # as a finalizer's "Exception ignored" does
        if trainer.updater.iteration == 2:
            try:
                signal.raise_signal(signal.SIGINT)
            except KeyboardInterrupt:
                pass
    trainer.extend(swallowing)
    trainer.extend(extensions.stop_if_interrupted)
    code = interrupts.run_interruptibly(
        cli.report_errors, lambda: trainer.run(show_loop_exception_msg=False))
    assert (code, trainer.updater.iteration) == (130, 2)
    assert capsys.readouterr().err == 'interrupted\n'
