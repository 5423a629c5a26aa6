"""training.snapshots: a run's configuration against its snapshots'."""
import json
import os
import re

import numpy
import pytest

from googlenet_chainer.compat import chainer
from googlenet_chainer.errors import UserError
from googlenet_chainer.training import snapshots


def test_snapshots_from_before_aux_heads_and_mpi_still_resume():
    current = dict({key: 1 for key in snapshots.RUN_KEYS},
                   aux_heads='on', processes=1)
    old = {key: value for key, value in current.items()
           if key not in ('aux_heads', 'processes')}
    assert snapshots.config_difference(old, current) == ''
    assert snapshots.config_difference(old, dict(
        current, processes=2)) == 'MPI processes (1 in the snapshot, 2 now)'


def _snapshots(folder, *iterations):
    """Writes snapshot_iter_N for each N, as snapshot_writer writes them;
    returns their paths."""
    paths = []
    for n in iterations:
        paths.append(str(folder / 'snapshot_iter_{}'.format(n)))
        snapshots.write_npz(paths[-1], {
            'run_config': numpy.array(json.dumps({'seed': 0})),
            'updater/iteration': numpy.array(n)})
    return paths


def test_a_damaged_snapshot_names_the_older_ones(tmp_path):
    paths = _snapshots(tmp_path, 7, 15, 23, 31)
    assert snapshots.stored_config(paths[2]) == {'seed': 0}
    with open(paths[2], 'r+b') as f:
        f.truncate(100)  # a copy cut short
    with pytest.raises(UserError) as e:
        snapshots.stored_config(paths[2])
    assert str(e.value) == (
        'cannot resume from {}: the snapshot is damaged (incomplete, or not '
        'a snapshot: File is not a zip file); resume from the newest before '
        'it, --resume {} (older still: {})'.format(paths[2], paths[1],
                                                    paths[0]))
    os.unlink(paths[0])
    os.unlink(paths[1])
    with pytest.raises(UserError, match=r'the snapshot is damaged .*; no '
                       'snapshot before it is there: start the run again '
                       'with another --out$'):
        snapshots.stored_config(paths[2])


def test_a_damaged_array_in_a_snapshot_is_named_on_resume(tmp_path):
    link = chainer.Link()
    with link.init_scope():
        link.w = chainer.Parameter(numpy.zeros(1000, numpy.float32))
    path = str(tmp_path / 'snapshot_iter_4')
    snapshots.write_npz(path, {'w': numpy.ones(1000, numpy.float32)})
    with open(path, 'r+b') as f:  # a byte of w's data changed
        f.seek(500)
        f.write(b'x')
    with pytest.raises(UserError, match='^' + re.escape(
            'cannot resume from {}: the snapshot is damaged (incomplete, or '
            'not a snapshot: Bad CRC-32'.format(path))):
        snapshots.resume(link, path)


def test_a_file_that_is_no_snapshot_is_named_as_such(tmp_path):
    log = tmp_path / 'log'
    log.write_text('[{"epoch": 1}]')
    with pytest.raises(UserError) as e:
        snapshots.stored_config(str(log))
    assert str(e.value) == (
        '{} is not a snapshot (snapshot_iter_N files are)'.format(log))
