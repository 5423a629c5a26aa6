"""training.plan and training.run_folder: what is checked before a run
starts."""
import subprocess
import sys

import pytest

import train_googlenet
from googlenet_chainer.errors import UserError
from googlenet_chainer.training import plan, run_folder

from helpers import run_training
from image_fixtures import QUIET, make_dataset


def test_fewer_training_images_than_processes_is_refused(tmp_path, model_3):
    data = make_dataset(tmp_path / 'd', 2)  # 3 classes: 3 train, 3 val
    args = train_googlenet.build_parser().parse_args(
        ['--train', data, '--model', model_3, '--out', str(tmp_path / 'r'),
         '--val-ratio', '0.5'] + QUIET)
    with pytest.raises(UserError, match='^the training set has 3 images, '
                       'fewer than the 4 processes: each trains on a share '
                       'of at least one; start fewer'):
        plan.plan_run(args, processes=4)
    assert not (tmp_path / 'r').exists()
    plan.plan_run(args, processes=3)  # one each


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
    args = train_googlenet.build_parser().parse_args(
        ['--train', data, '--model', model_3, '--out', str(out),
         '--val-ratio', '0.5'] + QUIET)
    assert run_folder.prepare_out_folder(args)[1] == []
    assert not (out / 'tmpsnapshot_iter_7abc').exists()
    run_folder.release(str(out))
