"""training.run_folder: what is checked before a run starts."""
import pytest

import train_googlenet
from googlenet_chainer import model_file
from googlenet_chainer.errors import UserError
from googlenet_chainer.training import data as tdata, run_folder, snapshots

from image_fixtures import QUIET, make_dataset


def test_fewer_training_images_than_processes_is_refused(tmp_path, model_3):
    data = make_dataset(tmp_path / 'd', 2)  # 3 classes: 3 train, 3 val
    args = train_googlenet.parse_arguments(
        ['--train', data, '--model', model_3, '--out', str(tmp_path / 'r'),
         '--val-ratio', '0.5'] + QUIET)
    with pytest.raises(UserError, match='^the training set has 3 images, '
                       'fewer than the 4 processes: each trains on a share '
                       'of at least one; start fewer'):
        run_folder.plan_run(args, processes=4)
    assert not (tmp_path / 'r').exists()
    _, plan = run_folder.plan_run(args, processes=3)  # one each
    # The batch of 32 is lowered to the 3 images, as run.json records it;
    # the arguments keep what was given.
    assert plan.batchsize == plan.config['batchsize'] == 3
    assert plan.config['arguments']['batchsize'] == 32


def test_the_disk_space_counts_the_cache_at_the_cut_its_views_and_adam(
        tmp_path, model_3):
    model, _ = model_file.load_model(model_3, freeze_until='inc4e')
    data = tdata.RunData([('a', 0)] * 10, [('b', 1)] * 3, ['a', 'b', 'c'],
                         [], {})
    common = ['--train', 'x', '--model', model_3, '--out', str(tmp_path),
              '--freeze-until', 'inc4e', '--epoch', '1']
    plain = run_folder.bytes_to_add(train_googlenet.parse_arguments(common),
                                    model, data, str(tmp_path / 'best'))
    cached = run_folder.bytes_to_add(train_googlenet.parse_arguments(
        common + ['--cache-features', '--cache-views', '10']), model, data,
        str(tmp_path / 'best'))
    assert cached - plain == (10 * 10 + 3) * 229632  # 10 views, 1 for val
    adam = run_folder.bytes_to_add(train_googlenet.parse_arguments(
        common + ['--optimizer', 'adam']), model, data, str(tmp_path /
                                                            'best'))
    # One snapshot: inc5a, inc5b and the heads, with 2 moments, not 1.
    assert adam - plain == snapshots.snapshot_bytes(model, 1) // 2
