"""training.run_folder: what is checked before a run starts."""
import pytest

import train_googlenet
from googlenet_chainer.errors import UserError
from googlenet_chainer.training import run_folder

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
