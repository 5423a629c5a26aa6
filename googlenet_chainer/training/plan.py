"""What rank 0 settles before a run: the folder, the model, the data, the
snapshot to resume, the disk space; then run.json."""
import collections
import contextlib
import json
import os
import shutil

import tuned_googlenet
from googlenet_chainer.console import shown
from googlenet_chainer.errors import UserError
from googlenet_chainer.files import atomic_write
from googlenet_chainer.labels import matching_names
from googlenet_chainer.model_file import (is_conversion, load_model,
                                          weights_digest)
from googlenet_chainer.training.data import data_fingerprint, prepare_data
from googlenet_chainer.training.feature_cache import CUTS, feature_size
from googlenet_chainer.training.optimizers import STATES
from googlenet_chainer.training.options import (RUN_CONFIG, check_together,
                                                recorded_options)
from googlenet_chainer.training.run_folder import (
    SNAPSHOT_PATTERN, prepare_out_folder, release, snapshot_to_resume)
from googlenet_chainer.training.snapshots import (
    RUN_KEYS, check_epochs, epochs_done, snapshot_bytes, snapshot_files,
    stored_config)
from googlenet_chainer.training.views import view_count

Plan = collections.namedtuple(
    'Plan', 'args output pairs val_pairs class_names config snapshot '
    'batchsize unreadable digests')
Plan.__doc__ = """What rank 0 settled before a run starts, for every rank.

Attributes:
    args: the run's options: the command line's, and a resumed run's
        recorded ones (options.recorded_options).
    output: the best model's path (--output).
    pairs, val_pairs: the training and validation [(path, label)].
    class_names: in label order.
    config: the run's configuration (run_config).
    snapshot: the snapshot to resume; None for a new run.
    batchsize: --batchsize, lowered to a small training set's size.
    unreadable: 'PATH: why' of each file left out.
    digests: {path: sha1 of the file} of every image kept.
"""


def plan_run(args, processes=1):
    """Rank 0's checks and choices before any training, in the order a
    failure is cheapest: a resumed run's recorded options, the options
    that apply together, --out and --output, the model, the data, the
    snapshot to resume, the disk space; then writes run.json. A refusal
    removes the --out folder this call made, left empty.

    Args:
        args: train_googlenet.py's parsed options, with ``given``
            (cli.parse_arguments).
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
    args = recorded_options(args)
    check_together(args)
    output, run_files = prepare_out_folder(args)
    freeze_until = tuned_googlenet.parse_freeze_until(args.freeze_until)
    if args.cache_features and freeze_until not in CUTS:
        raise UserError('--cache-features keeps the frozen part\'s output '
                        'at a cut from {} to {} (--freeze-until; {} now): '
                        'below, nearly the whole network trains and a cache '
                        'saves little'.format(CUTS[0], CUTS[-1],
                                              freeze_until or 'none'))
    if not os.path.exists(args.model):
        raise UserError('no converted model at {}: run '
                        'convert_caffe_model.py --classes N first (N: the '
                        'number of classes of --train), or pass --model'
                        .format(args.model))
    model, stored = load_model(args.model, freeze_until)
    data = prepare_data(args, model.n_classes)
    match_heads(model, stored, data.class_names, args.model)
    batchsize = min(args.batchsize, len(data.pairs))
    config = run_config(args, model, data, processes, batchsize)
    if len(data.pairs) < processes:
        raise UserError('the training set has {} image{}, fewer than the {} '
                        'processes: each trains on a share of at least one; '
                        'start fewer (mpiexec -n)'.format(
                            len(data.pairs), '' if len(data.pairs) == 1
                            else 's', processes))
    snapshot = snapshot_to_resume(args, config, run_files)
    done = epochs_done(snapshot) if snapshot else 0
    check_best_model(output, args.out, snapshot, done)
    if snapshot:
        check_epochs(snapshot, done, args.epoch)
        # The heads come back from the snapshot, not from this session's
        # --model (only its frozen trunk must be the run's): the run
        # started from what its first session loaded.
        config['start'] = stored_config(snapshot).get('start',
                                                      config['start'])
    check_disk_space(args.out, bytes_to_add(args, model, data, output,
                                            snapshot, processes, batchsize))
    with atomic_write(os.path.join(args.out, RUN_CONFIG), 'w') as f:
        json.dump(config, f, indent=1)
    if args.cache_features:
        os.makedirs(os.path.join(args.out, 'features'), exist_ok=True)
    return model, Plan(args, output, data.pairs, data.val_pairs,
                       data.class_names, config, snapshot, batchsize,
                       data.unreadable, data.digests)


def check_best_model(output, out, snapshot, done):
    """Refuses a run whose best model (--output) cannot be what it
    will be: a resumed run that has validated an epoch needs the best model
    so far, which it reports at its end, and a new run does not write over
    a fine-tuned model outside its folder (a run's own is refused as
    another run's: run_folder.snapshot_to_resume).

    Args:
        output: --output's path.
        out: the run's folder.
        snapshot: the snapshot resumed, or None for a new run.
        done: the whole epochs the snapshot has trained
            (snapshots.epochs_done).

    Raises:
        UserError: naming the file, and how to go on.
    """
    if snapshot is not None:
        if done and not os.path.exists(output):
            raise UserError(
                'the run\'s best model {} is missing, and {} has trained '
                '{} epochs: without it the run cannot report its best; put '
                'it back (a run\'s folder moves whole: its best model '
                'beside its snapshots)'.format(shown(output), snapshot,
                                               done))
    elif os.path.exists(output) and not is_conversion(output) and (
            os.path.realpath(os.path.dirname(os.path.abspath(output)))
            != os.path.realpath(out)):
        raise UserError('--output {} holds a fine-tuned model (its class '
                        'names stored), which a new run would write over: '
                        'give another --output'.format(shown(output)))


def match_heads(model, stored, class_names, path, say=print):
    """Puts a trained classifier's rows in the data's class order.

    A model fine-tuned before stores its class names; its classifiers'
    row k serves its class k. Data of the same classes in another order
    (a list file's labels) gets the rows by name; data of other classes
    would be trained from rows that serve other classes, and is refused.
    Names are compared as labels.matching_names compares them.

    Args:
        model: the starting model (load_model's).
        stored: the names stored with it, or None (a conversion's fresh
            heads, or a model that stores none): nothing to match.
        class_names: the data's classes, in label order.
        path: the model's file, for the messages.
        say: prints the line saying the rows were reordered.

    Raises:
        UserError: its classifier was trained for other classes.
    """
    if stored is None or 'loss3_fc' in model.untrained_heads:
        return
    have, want = matching_names(stored), matching_names(class_names)
    if have == want:
        return
    if sorted(have) != sorted(want):
        raise UserError(
            '{} was trained for the classes {}, and the data\'s are {}: its '
            'classifier\'s rows would each serve another class; start from '
            'convert_caffe_model.py --classes {} (fresh heads), or train on '
            'data of its classes'.format(
                shown(path), ', '.join(map(shown, stored)),
                ', '.join(map(shown, class_names)), len(class_names)))
    order = [have.index(key) for key in want]
    for name in ('loss1_fc2', 'loss2_fc2', 'loss3_fc'):
        link = getattr(model, name)
        link.W.array = link.W.array[order]
        link.b.array = link.b.array[order]
    say('{}: its classifiers\' rows taken by class name, in the data\'s '
        'order ({})'.format(shown(path), ', '.join(map(shown, class_names))))


def starting_model(path, freeze_until, class_names):
    """The starting model as plan_run made it, for the other MPI ranks:
    loaded, its heads matched to the data's classes (match_heads).

    Args:
        path: --model.
        freeze_until: the run's cut.
        class_names: the data's classes (Plan.class_names).

    Returns:
        the model.
    """
    model, stored = load_model(path, freeze_until)
    match_heads(model, stored, class_names, path, say=lambda line: None)
    return model


def bytes_to_add(args, model, data, output, snapshot=None, processes=1,
                 batchsize=None):
    """About the disk space a run will take beyond what is on disk: a
    resumed run counts its snapshots, best model and feature cache there.

    Snapshots: those the run will still write, up to --keep-snapshots + 1
    on disk at once (the newest is written before the oldest goes), each
    the size of one there or snapshot_bytes'. The best model is written
    beside the one it replaces. The cache's files take what their blocks
    not yet written will (they are sparse until then): feature_size at
    the cut per view, --cache-views views per training image, one per
    validation image.

    Args:
        args: train_googlenet.py's options.
        model: the starting model, frozen as the run freezes it.
        data: prepare_data's RunData.
        output: the best model's path.
        snapshot: the snapshot the run resumes from, or None.
        processes: MPI processes (each trains on a share of the images).
        batchsize: the run's batch; None for --batchsize.

    Returns:
        int: bytes.
    """
    kept = [path for _, path in snapshot_files(args.out)]
    size = os.path.getsize(kept[-1]) if kept else snapshot_bytes(
        model, STATES[args.optimizer])
    more = min(max(0, args.keep_snapshots + 1 - len(kept)),
               _snapshots_to_write(args, data, processes, snapshot,
                                   batchsize or args.batchsize))
    model_bytes = os.path.getsize(args.model)
    best = model_bytes if os.path.exists(output) else 2 * model_bytes
    cache = 0
    if args.cache_features:
        view_bytes = 4 * feature_size(model.freeze_until,
                                      args.aux_heads == 'on')
        for pairs, views, name in ((data.pairs, args.cache_views, 'train'),
                                   (data.val_pairs, '1', 'val')):
            path = os.path.join(args.out, 'features', name + '.npy')
            written = os.stat(path).st_blocks * 512 if os.path.exists(
                path) else 0
            cache += max(0, len(pairs) * view_count(views) * view_bytes
                         - written)
    return more * size + best + cache


def _snapshots_to_write(args, data, processes, snapshot, batchsize):
    """How many snapshots the run will write from where it starts."""
    per_epoch = -(-len(data.pairs) // (processes * batchsize))
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


def run_config(args, model, data, processes=1, batchsize=None):
    """What makes a run this run, as run.json and snapshots keep it.

    The RUN_KEYS: the class names; the data, by content and label wherever
    it is (data_fingerprint); the frozen trunk, by its weights whichever
    file they came from (the heads and any layer that trains come back from
    the snapshot); the options a snapshot depends on. And, for the record,
    the digest of every weight the run started from and every argument as
    given (options.recorded_options reads them back).

    Args:
        args: train_googlenet.py's options.
        model: the starting model, its trunk frozen as the run freezes it.
        data: prepare_data's RunData.
        processes: MPI processes of the run.
        batchsize: the run's batch, --batchsize lowered to a small
            training set's size; None for --batchsize.

    Returns:
        dict: JSON-ready, RUN_KEYS' keys, 'start' and 'arguments' ({option:
        value}).
    """
    config = {'class_names': list(data.class_names),
              'data': data_fingerprint((data.pairs, data.val_pairs),
                                       data.digests),
              'trunk': weights_digest(model, model.frozen_stages),
              'freeze_until': model.freeze_until, 'processes': processes,
              'batchsize': batchsize or args.batchsize,
              'cache_views': args.cache_views if args.cache_features
              else None,
              'start': weights_digest(model, tuned_googlenet.TRUNK
                                      + tuned_googlenet.HEADS)}
    for key in RUN_KEYS:
        config.setdefault(key, getattr(args, key, None))
    config['arguments'] = {key: value for key, value in vars(args).items()
                           if key != 'given'}
    return config
