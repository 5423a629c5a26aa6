"""What rank 0 settles before a run: the folder, the model, the data, the
snapshot to resume, the disk space; then run.json."""
import collections
import contextlib
import json
import os
import shutil

import tuned_googlenet
from googlenet_chainer.errors import UserError
from googlenet_chainer.files import atomic_write
from googlenet_chainer.model_file import load_model, weights_digest
from googlenet_chainer.training.data import data_fingerprint, prepare_data
from googlenet_chainer.training.feature_cache import feature_size
from googlenet_chainer.training.run_folder import (
    RUN_CONFIG, SNAPSHOT_PATTERN, prepare_out_folder, release,
    snapshot_to_resume)
from googlenet_chainer.training.snapshots import (RUN_KEYS, snapshot_bytes,
                                                  snapshot_files)

Plan = collections.namedtuple(
    'Plan', 'output pairs val_pairs class_names config snapshot batchsize '
    'unreadable digests')
Plan.__doc__ = """What rank 0 settled before a run starts, for every rank.

Attributes:
    output: the best model's path (--output).
    pairs, val_pairs: the training and validation [(path, label)].
    class_names: in label order.
    config: the run's configuration (run_config).
    snapshot: the snapshot to resume; None for a new run.
    batchsize: --batchsize, lowered to a small training set's size.
    unreadable: 'PATH: why' of each file left out.
"""


def plan_run(args, processes=1):
    """Rank 0's checks and choices before any training, in the order a
    failure is cheapest: --out and --output, the model, the data, the
    snapshot to resume, the disk space; then writes run.json. A refusal
    removes the --out folder this call made, left empty.

    Args:
        args: train_googlenet.py's parsed options.
        processes: MPI processes of the run (a snapshot records them).

    Returns:
        (the starting model, loaded with its trunk frozen up to
        --freeze-until; a Plan).

    Raises:
        UserError: naming what is wrong and how to go on.
    """
    made = not os.path.exists(args.out)
    try:
        return _plan(args, processes)
    except BaseException:
        release(args.out)
        if made:
            with contextlib.suppress(OSError):
                os.rmdir(args.out)  # only if still empty
        raise


def _plan(args, processes):
    """plan_run's work, once it has noted whether --out was there."""
    output, run_files = prepare_out_folder(args)
    freeze_until = tuned_googlenet.parse_freeze_until(args.freeze_until)
    if args.cache_features and freeze_until != 'inc5b':
        raise UserError('--cache-features needs the whole trunk frozen '
                        '(--freeze-until inc5b)')
    if not os.path.exists(args.model):
        raise UserError('no converted model at {}: run '
                        'convert_caffe_model.py --classes N first (N: the '
                        'number of classes of --train), or pass --model'
                        .format(args.model))
    model, _ = load_model(args.model, freeze_until)
    data = prepare_data(args, model.n_classes)
    config = run_config(args, model, data, processes)
    if len(data.pairs) < processes:
        raise UserError('the training set has {} image{}, fewer than the {} '
                        'processes: each trains on a share of at least one; '
                        'start fewer (mpiexec -n)'.format(
                            len(data.pairs), '' if len(data.pairs) == 1
                            else 's', processes))
    snapshot = snapshot_to_resume(args, config, run_files)
    check_disk_space(args.out, bytes_to_add(args, model, data, output,
                                            snapshot, processes))
    with atomic_write(os.path.join(args.out, RUN_CONFIG), 'w') as f:
        json.dump(config, f, indent=1)
    if args.cache_features:
        os.makedirs(os.path.join(args.out, 'features'), exist_ok=True)
    return model, Plan(output, data.pairs, data.val_pairs, data.class_names,
                       config, snapshot, args.batchsize, data.unreadable,
                       data.digests)


def bytes_to_add(args, model, data, output, snapshot=None, processes=1):
    """About the disk space a run will take beyond what is on disk: a
    resumed run counts its snapshots, best model and feature cache there.

    Snapshots: those the run will still write, up to --keep-snapshots + 1
    on disk at once (the newest is written before the oldest goes), each
    the size of one there or snapshot_bytes'. The best model is written
    beside the one it replaces. The cache's files take what their blocks
    not yet written will (they are sparse until then).

    Args:
        args: train_googlenet.py's options.
        model: the starting model, frozen as the run freezes it.
        data: prepare_data's RunData.
        output: the best model's path.
        snapshot: the snapshot the run resumes from, or None.
        processes: MPI processes (each trains on a share of the images).

    Returns:
        int: bytes.
    """
    kept = [path for _, path in snapshot_files(args.out)]
    size = os.path.getsize(kept[-1]) if kept else snapshot_bytes(model)
    more = min(max(0, args.keep_snapshots + 1 - len(kept)),
               _snapshots_to_write(args, data, processes, snapshot))
    model_bytes = os.path.getsize(args.model)
    best = model_bytes if os.path.exists(output) else 2 * model_bytes
    cache = 0
    if args.cache_features:
        views = ((data.pairs, 2, 'train'), (data.val_pairs, 1, 'val'))
        for pairs, per_image, name in views:
            path = os.path.join(args.out, 'features', name + '.npy')
            written = os.stat(path).st_blocks * 512 if os.path.exists(
                path) else 0
            cache += max(0, len(pairs) * per_image * feature_size(
                args.aux_heads == 'on') * 4 - written)
    return more * size + best + cache


def _snapshots_to_write(args, data, processes, snapshot):
    """How many snapshots the run will write from where it starts."""
    per_epoch = -(-len(data.pairs) // (processes * args.batchsize))
    count, unit = args.snapshot_interval
    every = count * per_epoch if unit == 'epoch' else count
    done = int(SNAPSHOT_PATTERN.match(os.path.basename(snapshot)).group(1)) \
        if snapshot and SNAPSHOT_PATTERN.match(os.path.basename(snapshot)) \
        else 0
    return args.epoch * per_epoch // every - done // every


def check_disk_space(out, needed):
    """Refuses a run the disk under its folder has no room for.

    Args:
        out: the run's folder.
        needed: about the bytes the run will write (snapshots, the
            model, the feature cache).

    Raises:
        UserError: fewer bytes than needed are free.
    """
    free = shutil.disk_usage(out).free
    if free < needed:
        raise UserError('not enough disk space in {}: the run needs about '
                        '{:.0f} MB (snapshots, the model, the feature cache) '
                        'and {:.0f} MB are free; free some, or lower '
                        '--keep-snapshots'.format(out, needed / 1e6,
                                                  free / 1e6))


def run_config(args, model, data, processes=1):
    """What makes a run this run, as run.json and snapshots keep it.

    The RUN_KEYS: the class names; the data, by content and label wherever
    it is (data_fingerprint); the frozen trunk, by its weights whichever
    file they came from (the heads and any layer that trains come back from
    the snapshot); the options a snapshot depends on. And, for the record,
    the digest of every weight the run started from and every argument.

    Args:
        args: train_googlenet.py's options.
        model: the starting model, its trunk frozen as the run freezes it.
        data: prepare_data's RunData.
        processes: MPI processes of the run.

    Returns:
        dict: JSON-ready, RUN_KEYS' keys, 'start' and 'arguments' ({option:
        value}).
    """
    config = {'class_names': list(data.class_names),
              'data': data_fingerprint((data.pairs, data.val_pairs),
                                       data.digests),
              'trunk': weights_digest(model, model.frozen_stages),
              'freeze_until': model.freeze_until, 'processes': processes,
              'start': weights_digest(model, tuned_googlenet.TRUNK
                                      + tuned_googlenet.HEADS)}
    for key in RUN_KEYS:
        config.setdefault(key, getattr(args, key, None))
    config['arguments'] = {key: value for key, value in vars(args).items()}
    return config
