"""training.trainer: a run on the feature cache at a cut is the run on the
images it was made of."""
import numpy
import pytest

from googlenet_chainer import model_file
from googlenet_chainer.compat import chainer
from googlenet_chainer.training.data import ImageDataset
from googlenet_chainer.training.sampling import drawn_view
from googlenet_chainer.training.trainer import build_trainer
from googlenet_chainer.training.views import ViewDataset, view_count

import run_steps
from image_fixtures import QUIET, make_dataset
from numeric import PROB_RTOL


class DrawnViews(chainer.dataset.DatasetMixin):
    """The images as the cached training set reads them, each epoch's view
    of each computed from the image instead of read from the cache."""

    def __init__(self, pairs, views, seed):
        self.pairs = pairs
        self.views = ViewDataset([(path, i) for i, (path, _) in
                                  enumerate(pairs)], views, seed)
        self.count = view_count(views)
        self.seed = seed

    def __len__(self):
        return len(self.pairs)

    def get_example(self, index):
        i, view = drawn_view(self.seed, index, len(self.pairs), self.count)
        return self.views[i][view], numpy.int32(self.pairs[i][1])


def losses(trainer):
    """Runs the trainer; returns each iteration's training loss and each
    epoch's validation loss."""
    seen = []

    @chainer.training.make_extension(trigger=(1, 'iteration'))
    def record(trainer):
        for key in ('main/loss', 'validation/main/loss'):
            if key in trainer.observation:
                seen.append((key, float(chainer.as_array(
                    trainer.observation[key]))))
    trainer.extend(record)
    trainer.run(show_loop_exception_msg=False)
    return seen


def test_cached_training_at_a_cut_is_training_on_the_same_views(
        model_3, tmp_path):
    data = make_dataset(tmp_path / 'd', 3)  # 6 training, 3 validation
    common = ['--train', data, '--model', model_3, '--freeze-until',
              'inc4e', '-B', '4', '--val-ratio', '0.25', '--lr', '1e-3',
              '--epoch', '1', '--seed', '3', '--optimizer', 'adam',
              '--label-smoothing', '0.1'] + QUIET
    cached = run_steps.start(common + [
        '--out', str(tmp_path / 'a'), '--cache-features', '--cache-views',
        '2 random'])
    assert cached.train_set.features.shape[1] == 2
    args, model, plan, device, _, _ = run_steps.datasets_of(
        common + ['--out', str(tmp_path / 'b')])
    uncached = build_trainer(
        args, plan, model, DrawnViews(plan.pairs, '2 random', 3),
        ImageDataset(plan.val_pairs, False, 3), device)
    expected = losses(cached.trainer)
    got = losses(uncached)
    assert [key for key, _ in got] == [key for key, _ in expected]
    assert len(got) == 2 + 1  # 6 images at 4 a batch: 2 updates
    # The frozen part in batches of 4 crops against the cache's 12: their
    # rounding, then the updates of inc5a, inc5b and the heads from it. A
    # cross entropy moves by at most twice its logits' change
    # (numeric.PROB_RTOL's bound).
    for (key, value), (_, reference) in zip(got, expected):
        assert value == pytest.approx(reference, abs=PROB_RTOL), key
    # Not vacuous: the views of another draw give another loss.
    fresh, _ = model_file.load_model(model_3, freeze_until='inc4e')
    with chainer.using_config('train', False):
        first = [float(fresh(*chainer.dataset.concat_examples(
            [DrawnViews(plan.pairs, '2 random', seed)[i]
             for i in range(6, 10)])).array) for seed in (3, 4)]
    assert abs(first[0] - first[1]) > PROB_RTOL
