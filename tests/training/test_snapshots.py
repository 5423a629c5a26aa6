"""training.snapshots: a run's configuration against its snapshots'."""
from googlenet_chainer.training import snapshots


def test_snapshots_from_before_aux_heads_and_mpi_still_resume():
    current = dict({key: 1 for key in snapshots.RUN_KEYS},
                   aux_heads='on', processes=1)
    old = {key: value for key, value in current.items()
           if key not in ('aux_heads', 'processes')}
    assert snapshots.config_difference(old, current) == ''
    assert snapshots.config_difference(old, dict(
        current, processes=2)) == 'MPI processes (1 in the snapshot, 2 now)'
