"""A run's options: those its run.json records, which a resumed session takes
without their being typed again, those a session may change, and those that
apply only together."""
import argparse
import json
import os

from googlenet_chainer.errors import UserError, one_line
from googlenet_chainer.training.snapshots import stored_config

RUN_CONFIG = 'run.json'
# What may change while a run goes on: how long (--epoch, --patience), how
# it runs (loading, devices, progress, snapshots' rhythm and retention),
# and where its inputs are: the data and the frozen trunk are the run's by
# their content (snapshots.RUN_KEYS), so a moved folder is the same run.
SESSION = ('epoch', 'patience', 'resume', 'out', 'train', 'val', 'root',
           'labels', 'model', 'snapshot_interval', 'keep_snapshots',
           'val_batchsize', 'loaderjob', 'loader_timeout', 'device',
           'no_progress', 'communicator')
# Options that mean something only with another's value: {option: (the
# other, the values it applies with)}.
TOGETHER = {'momentum': ('optimizer', ('momentum',)),
            'gamma': ('lr_policy', ('step',)),
            'lr_step': ('lr_policy', ('step',)),
            'power': ('lr_policy', ('poly',)),
            'cache_views': ('cache_features', (True,))}


def is_run_folder(folder):
    """Whether a folder holds a training run (its RUN_CONFIG), whose
    files another run's or an evaluation's outputs must not replace.

    Args:
        folder: any path.

    Returns:
        bool.
    """
    return os.path.exists(os.path.join(folder, RUN_CONFIG))


def option(dest):
    """The command line's name of an argparse dest ('lr_step' ->
    '--lr-step')."""
    return '--' + dest.replace('_', '-')


def _recorded(args):
    """(where, {dest: value}) of what the run recorded; (None, None) when
    --resume latest finds no readable run.json but the data is given."""
    if args.resume != 'latest':
        return args.resume, stored_config(args.resume).get('arguments', {})
    path = os.path.join(args.out, RUN_CONFIG)
    try:
        with open(path) as f:
            return path, dict(json.load(f)['arguments'])
    except (OSError, ValueError, KeyError, TypeError) as e:
        if args.train is not None:
            return None, None
        raise UserError('cannot take the run\'s options from {}: {}; give '
                        'them as the run was started (--train ...)'.format(
                            path, 'there is none' if isinstance(
                                e, FileNotFoundError) else one_line(e)))


def _in_snapshots_folder(args):
    """args with --out the folder of --resume's snapshot: a snapshot
    continues its own run, whose folder holds the run.json, log and best
    model it goes on from; written into another, it would take that
    folder's files for its own."""
    if args.resume == 'latest':
        return args
    folder = os.path.dirname(os.path.abspath(args.resume))
    if 'out' in args.given and os.path.realpath(
            args.out) != os.path.realpath(folder):
        raise UserError(
            '--resume {} continues the run in its own folder, {}, not in '
            '--out {}: leave --out out (or give that folder), or copy the '
            'run\'s folder and continue the copy with --resume latest'
            .format(args.resume, folder, args.out))
    return argparse.Namespace(**{**vars(args), 'out': folder})


def recorded_options(args):
    """The options of a resumed run: those the run recorded, but for those
    given on the command line, which only SESSION's may change.

    --resume latest reads run.json in --out; --resume SNAPSHOT, the
    snapshot's own record, and the run goes on in the snapshot's folder
    (--out, if given, must be that folder). An option given that differs
    from the record, outside SESSION, is refused: the run would not be the
    run it continues. (snapshot_interval, a list in JSON, is one of
    SESSION's and comes back as the pair argparse makes of it.)

    Args:
        args: the parsed options, with ``given`` (cli.parse_arguments).

    Returns:
        args itself for a new run (no --resume); else a new Namespace,
        the record's values in place of the others.

    Raises:
        UserError: nothing recorded can be read and --train is not given,
            --out is not --resume's snapshot's folder, or given options
            differ from the record, naming each.
    """
    if not args.resume:
        return args
    args = _in_snapshots_folder(args)
    where, recorded = _recorded(args)
    if recorded is None:
        return args
    merged, differ = vars(args).copy(), []
    for dest, value in recorded.items():
        if dest in ('resume', 'out', 'given') or dest not in merged:
            continue
        if dest not in args.given:
            merged[dest] = value
        elif dest not in SESSION and merged[dest] != value:
            differ.append('{} ({} recorded, {} given)'.format(
                option(dest), value, merged[dest]))
    if isinstance(merged['snapshot_interval'], list):
        merged['snapshot_interval'] = tuple(merged['snapshot_interval'])
    if differ:
        raise UserError(
            '--resume continues the run with the options recorded in {}, '
            'and these are given otherwise: {}; leave them out (only {} may '
            'change while a run goes on), or start a new run in another '
            '--out'.format(where, '; '.join(differ), ', '.join(
                option(dest) for dest in SESSION
                if dest not in ('resume', 'out'))))
    print('continuing with the options recorded in {}'.format(where))
    return argparse.Namespace(**merged)


def check_together(args):
    """Refuses an option given where it has no effect (TOGETHER).

    Args:
        args: the options, with ``given``.

    Raises:
        UserError: naming the option, what it needs, and what the run has.
    """
    for dest, (other, values) in TOGETHER.items():
        value = getattr(args, other)
        if dest in args.given and value not in values:
            raise UserError('{} applies only with {}{}'.format(
                option(dest), option(other), '' if values == (True,) else
                ' {}; this run\'s is {}'.format(values[0], value)))
