"""training.plan and training.run_folder: what is checked before a run
starts."""
import subprocess
import sys

import pytest

import train_googlenet
from googlenet_chainer import model_file
from googlenet_chainer.errors import UserError
from googlenet_chainer.training import (data as tdata, plan, run_folder,
                                        snapshots)

from helpers import run_training
from image_fixtures import QUIET, make_dataset


def test_fewer_training_images_than_processes_is_refused(tmp_path, model_3):
    data = make_dataset(tmp_path / 'd', 2)  # 3 classes: 3 train, 3 val
    args = train_googlenet.parse_arguments(
        ['--train', data, '--model', model_3, '--out', str(tmp_path / 'r'),
         '--val-ratio', '0.5'] + QUIET)
    with pytest.raises(UserError, match='^the training set has 3 images, '
                       'fewer than the 4 processes: each trains on a share '
                       'of at least one; start fewer'):
        plan.plan_run(args, processes=4)
    assert not (tmp_path / 'r').exists()
    _, planned = plan.plan_run(args, processes=3)  # one each
    # The batch of 32 is lowered to the 3 images, as run.json records it;
    # the arguments keep what was given.
    assert planned.batchsize == planned.config['batchsize'] == 3
    assert planned.config['arguments']['batchsize'] == 32


def test_the_disk_space_counts_the_cache_at_the_cut_its_views_and_adam(
        tmp_path, model_3):
    model, _ = model_file.load_model(model_3, freeze_until='inc4e')
    data = tdata.RunData([('a', 0)] * 10, [('b', 1)] * 3, ['a', 'b', 'c'],
                         [], {})
    common = ['--train', 'x', '--model', model_3, '--out', str(tmp_path),
              '--freeze-until', 'inc4e', '--epoch', '1']
    plain = plan.bytes_to_add(train_googlenet.parse_arguments(common),
                              model, data, str(tmp_path / 'best'))
    cached = plan.bytes_to_add(train_googlenet.parse_arguments(
        common + ['--cache-features', '--cache-views', '10']), model, data,
        str(tmp_path / 'best'))
    assert cached - plain == (10 * 10 + 3) * 229632  # 10 views, 1 for val
    adam = plan.bytes_to_add(train_googlenet.parse_arguments(
        common + ['--optimizer', 'adam']), model, data, str(tmp_path /
                                                            'best'))
    # One snapshot: inc5a, inc5b and the heads, with 2 moments, not 1.
    assert adam - plain == snapshots.snapshot_bytes(model, 1) // 2


HOLDER = '''
import fcntl, os, sys, time
fd = os.open(sys.argv[1], os.O_RDONLY)
fcntl.flock(fd, fcntl.LOCK_EX)
print('holding', flush=True)
time.sleep(60)
'''


def test_a_folder_a_live_run_holds_is_refused_and_its_files_kept(
        tmp_path, model_3, capsys):
    """Whatever PID namespace or host the live run is in: its lock, not a
    PID, tells it; its half-written snapshot is not taken for a dead
    run's."""
    data = make_dataset(tmp_path / 'd', 2)
    out = tmp_path / 'r'
    out.mkdir()
    (out / 'tmpsnapshot_iter_7abc').mkdir()  # being written
    holder = subprocess.Popen([sys.executable, '-c', HOLDER, str(out)],
                              stdout=subprocess.PIPE)
    try:
        assert holder.stdout.readline() == b'holding\n'
        assert run_training('--train', data, '--model', model_3, '--out',
                            str(out)) == 1
        assert capsys.readouterr().err == (
            'error: another training run is using {}: let it end, or pass '
            'another --out\n'.format(out))
        assert (out / 'tmpsnapshot_iter_7abc').exists()
    finally:
        holder.kill()
        holder.wait()
        holder.stdout.close()
    # Its run gone, the folder is free and what it left is removed.
    args = train_googlenet.parse_arguments(
        ['--train', data, '--model', model_3, '--out', str(out),
         '--val-ratio', '0.5'] + QUIET)
    assert run_folder.prepare_out_folder(args)[1] == []
    assert not (out / 'tmpsnapshot_iter_7abc').exists()
    run_folder.release(str(out))
