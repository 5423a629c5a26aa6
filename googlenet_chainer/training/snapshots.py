"""Snapshots of a training run: written small, kept few, checked against the
run before one is resumed."""
import json
import os
import re

import numpy

from googlenet_chainer.compat import chainer
from googlenet_chainer.console import first_names
from googlenet_chainer.errors import UserError, one_line
from googlenet_chainer.files import save_npz

SNAPSHOT = 'snapshot_iter_{.updater.iteration}'
SNAPSHOT_PATTERN = re.compile(r'^snapshot_iter_(\d+)$')
# A resumed run must agree with its snapshot on these (the rest, e.g.
# --epoch, --device or --loaderjob, may change between sessions).
RUN_KEYS = {'class_names': 'class names',
            'data': 'data set (the images or labels of --train and --val)',
            'trunk': 'frozen trunk weights (--model)',
            'freeze_until': 'frozen layers (--freeze-until)',
            'cache_features': '--cache-features',
            'cache_views': '--cache-views', 'seed': '--seed',
            'batchsize': '--batchsize', 'optimizer': '--optimizer',
            'lr': '--lr', 'momentum': '--momentum',
            'weight_decay': '--weight-decay', 'lr_policy': '--lr-policy',
            'lr_step': '--lr-step', 'gamma': '--gamma', 'power': '--power',
            'warmup': '--warmup', 'label_smoothing': '--label-smoothing',
            'class_weight': '--class-weight', 'aux_heads': '--aux-heads',
            'processes': 'MPI processes'}
# What a snapshot from before a setting was recorded was made with.
BEFORE = {'aux_heads': 'on', 'processes': 1, 'optimizer': 'momentum',
          'warmup': 0, 'label_smoothing': 0.0}


def snapshot_files(out):
    """The complete snapshots in a run's folder, oldest first.

    Complete: the files named snapshot_iter_N, not the temporary ones the
    snapshot extension writes them as.

    Args:
        out: the run's folder; it need not exist.

    Returns:
        [(iteration, path)], sorted by iteration; [] without a folder.
    """
    found = [(int(m.group(1)), os.path.join(out, name))
             for name in os.listdir(out)
             for m in [SNAPSHOT_PATTERN.match(name)] if m
             and os.path.isfile(os.path.join(out, name))] if os.path.isdir(
                 out) else []
    return sorted(found)


def latest_snapshot(out):
    """The newest complete snapshot in out, for --resume latest.

    Args:
        out: the run's folder.

    Returns:
        its path.

    Raises:
        UserError: out holds no complete snapshot.
    """
    found = snapshot_files(out)
    if not found:
        raise UserError('no snapshot to resume in {}: the run stopped before '
                        'its first snapshot; run the same command without '
                        '--resume to start it'.format(out))
    return found[-1][1]


def snapshot_writer(model, config):
    """The snapshot extension's savefun: small, quick snapshots.

    Snapshots are written uncompressed and without the frozen stages,
    which never change and come back from --model on resume: a snapshot is
    then the heads, the optimizer, the iterator, the log and the run's
    configuration (run_config), written in a blink.

    Args:
        model: the GoogLeNet trained; its frozen_stages are left out.
        config: the run's configuration, kept as JSON under 'run_config'
            (check_snapshot reads it).

    Returns:
        save(path, arrays): writes the serialized trainer's arrays
        ({name: array}) to path.
    """
    frozen = tuple('updater/model:main/{}/'.format(name)
                   for name in model.frozen_stages)
    text = json.dumps(config, sort_keys=True)

    def save(path, arrays):  # the snapshot extension's serialized trainer
        kept = {key: value for key, value in arrays.items()
                if not key.startswith(frozen)}
        kept['run_config'] = numpy.array(text)
        write_npz(path, kept)
    return save


def write_npz(path, arrays):
    """Writes {name: array} to path as an uncompressed .npz.

    Not atomically: the snapshot extension writes into a temporary folder
    and moves the file into place. Ctrl-C waits for the end (files.save_npz).

    Args:
        path: the file.
        arrays: {name: array}.
    """
    with open(path, 'wb') as f:
        save_npz(f, arrays)


def config_difference(stored, current):
    """What differs between two run configurations, as words.

    Only the RUN_KEYS count.

    Args:
        stored: a snapshot's or run.json's configuration; one from before
            a setting was recorded counts as of BEFORE's (aux heads on, 1
            process, momentum SGD, no warm-up or label smoothing); its
            --cache-views, as of 2 views with the cache, none without.
        current: this run's (run_config).

    Returns:
        str: the settings that differ, joined by '; ', each with its value
        in the snapshot and now (but the data set and the frozen trunk,
        whose values are digests); '' if none.
    """
    differ = []
    stored = {**BEFORE, 'cache_views': '2' if stored.get('cache_features')
              else None, **stored}
    for key, words in RUN_KEYS.items():
        if stored.get(key) != current.get(key):
            if key == 'class_names':
                words = 'class names ({} in the snapshot; {} now)'.format(
                    ', '.join(stored.get(key) or []),
                    ', '.join(current[key]))
            elif key not in ('data', 'trunk'):
                words = '{} ({} in the snapshot, {} now)'.format(
                    words, stored.get(key), current[key])
            differ.append(words)
    return '; '.join(differ)


def stored_config(path):
    """The run configuration a snapshot carries (run_config's).

    Args:
        path: the snapshot.

    Returns:
        dict.

    Raises:
        UserError: path cannot be read, is not a snapshot, is a damaged one
            (unreadable; the message names the older snapshots beside
            it), or holds no run configuration (a snapshot of an older
            version).
    """
    try:
        with numpy.load(path, allow_pickle=False) as npz:
            stored = (json.loads(str(npz['run_config']))
                      if 'run_config' in npz.files else None)
    except Exception as e:
        raise unreadable(path, e)
    if stored is None:
        raise UserError('cannot resume from {}: it is not a snapshot of this '
                        'version\'s runs (no run configuration in it)'.format(
                            path))
    return stored


def unreadable(path, error):
    """Why a file given to resume from cannot be read, in words.

    A file neither named as a snapshot nor a zip (a run's log, run.json)
    is not a snapshot at all; numpy's own words for it would speak of
    pickles. A snapshot numpy cannot read is damaged (cut short by a full
    disk or a copy, or another file under a snapshot's name): the older
    snapshots in its folder are named, to resume from instead.

    Args:
        path: the file.
        error: the exception reading it raised.

    Returns:
        UserError: the one line to raise.
    """
    if isinstance(error, OSError):
        return UserError('cannot resume from {}: {}'.format(
            path, one_line(error)))
    named = SNAPSHOT_PATTERN.match(os.path.basename(path))
    with open(path, 'rb') as f:
        zipped = f.read(4) == b'PK\x03\x04'
    if not (named or zipped):
        return UserError('{} is not a snapshot (snapshot_iter_N files are)'
                         .format(path))
    older = [other for n, other in snapshot_files(
        os.path.dirname(path) or os.curdir)
        if not named or n < int(named.group(1))][::-1]
    if older:
        way = 'resume from the newest before it, --resume {}{}'.format(
            older[0], ' (older still: {})'.format(first_names(older[1:], 3))
            if older[1:] else '')
    else:
        way = 'no snapshot before it is there: start the run again with ' \
            'another --out'
    return UserError('cannot resume from {}: the snapshot is damaged '
                     '(incomplete, or not a snapshot: {}); {}'.format(
                         path, one_line(error), way))


def check_snapshot(path, config):
    """Refuses a snapshot that is not of this run.

    Args:
        path: the snapshot.
        config: the run's configuration (run_config).

    Raises:
        UserError: the snapshot cannot be read (stored_config), or is of a
            run whose configuration differs, naming what differs.
    """
    difference = config_difference(stored_config(path), config)
    if difference:
        raise UserError('cannot resume from {}: it is a snapshot of another '
                        'run; differs in {}'.format(path, difference))


def epochs_done(path):
    """The whole epochs a snapshot has trained.

    Args:
        path: the snapshot.

    Returns:
        int.

    Raises:
        UserError: it cannot be read (unreadable).
    """
    try:
        with numpy.load(path, allow_pickle=False) as npz:
            return int(npz['updater/iterator:main/epoch'])
    except Exception as e:
        raise unreadable(path, e)


def check_epochs(path, done, epochs):
    """Refuses an --epoch below the epochs a snapshot has done: the run
    would stop at once, and run.json would say fewer than it holds.

    Args:
        path: the snapshot to resume, for the message.
        done: its whole epochs (epochs_done).
        epochs: --epoch.

    Raises:
        UserError: done is more than epochs.
    """
    if done > epochs:
        raise UserError('the run has done {} epochs (snapshot {}), more than '
                        '--epoch {}: give --epoch {} or more to train on, '
                        'or leave it out'.format(done, path, epochs, done))


def resume(trainer, path):
    """Loads a snapshot into the trainer and says so.

    The frozen stages it lacks stay as loaded (from --model). Call
    check_snapshot first.

    Args:
        trainer: the run's Trainer, its extensions added.
        path: the snapshot.

    Raises:
        UserError: the snapshot cannot be loaded (unreadable).
    """
    try:
        # Pickled: a trigger's best value is None until the first evaluation.
        with numpy.load(path, allow_pickle=True) as npz:
            chainer.serializers.NpzDeserializer(npz, strict=False).load(
                trainer)
    except Exception as e:
        raise unreadable(path, e)
    print('resumed from {} at iteration {}'.format(
        path, trainer.updater.iteration))


def snapshot_bytes(model, states=1):
    """A snapshot's size: each trained parameter and its optimizer's arrays.

    For check_disk_space: the parameters outside the frozen stages, 1 +
    states times.

    Args:
        model: the run's GoogLeNet, frozen up to --freeze-until.
        states: the arrays the optimizer keeps per parameter
            (optimizers.STATES).

    Returns:
        int: bytes.
    """
    return (1 + states) * sum(
        param.array.nbytes for name, param in model.namedparams()
        if name.split('/')[1] not in model.frozen_stages)
