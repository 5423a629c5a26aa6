"""A training run's folder (--out): checked and held by one run at a time,
a new run or the same run resumed, what a killed run left half written."""
import contextlib
import json
import os
import re
import shutil
import sys

from googlenet_chainer.console import shown
from googlenet_chainer.errors import UserError
from googlenet_chainer.files import (check_output_path, check_outside,
                                     check_writable, make_out_folder)
from googlenet_chainer.locks import try_lock
from googlenet_chainer.model_file import MODEL_KIND
from googlenet_chainer.report_files import report_files_in
from googlenet_chainer.training.options import RUN_CONFIG, is_run_folder
from googlenet_chainer.training.snapshots import (
    SNAPSHOT_PATTERN, check_snapshot, config_difference, latest_snapshot,
    snapshot_files)

# What Chainer's snapshot writer and atomic_write leave behind when killed.
STRAY_PATTERN = re.compile(r'^(tmpsnapshot_iter_\d+.*|\..+\.tmp)$')


def prepare_out_folder(args):
    """Makes --out and checks it and --output before any work.

    Neither may lie in a data folder, both must be writable, and --output
    may replace nothing but a model; removes what a killed earlier session
    left half written (remove_strays).

    Args:
        args: train_googlenet.py's options (--out, --output, --model,
            --train, --val, --root).

    Returns:
        (--output's path, the names in --out that belong to a run: its
        snapshots, log and best model; snapshot_to_resume judges them).

    Raises:
        UserError: --out or --output is or lies in a data folder, --out
            is a file or cannot be made or holds report files but no run,
            either cannot be written, --output lies in another run's
            folder, or
            --output is a folder, --model, or a file that is not a model.
    """
    out = args.out
    output = args.output or os.path.join(out, 'tuned_googlenet.model')
    # Before --out is made: nothing is created inside the data.
    folders = data_folders(args)
    check_outside(out, folders, '--out')
    check_outside(output, folders, '--output')
    make_out_folder(out, '--out', parents=True)
    check_writable(out, '--out')
    reports = report_files_in(out)
    if reports and not is_run_folder(out):
        raise UserError('--out {} holds {}, and no training run: the run\'s '
                        'report would replace it; pass another --out'.format(
                            shown(out), reports[0]))
    held = hold(out)
    if os.path.isdir(output):
        raise UserError('--output {} is a folder; give a file name'.format(
            output))
    check_writable(os.path.dirname(os.path.abspath(output)), '--output')
    check_not_another_run(output, out)
    check_output_path(output, [args.model], '--output', kind=MODEL_KIND)
    run_files = [name for name in os.listdir(out)
                 if SNAPSHOT_PATTERN.match(name) or name == 'log'
                 or os.path.join(out, name) == output]
    if held:  # no other run writes here: what is half written is dead
        remove_strays(out)
    return output, run_files


def check_not_another_run(output, out):
    """Refuses an --output in another run's folder, whose best model it
    would replace, leaving that run's log and report about another model.

    Args:
        output: --output's path.
        out: this run's folder.

    Raises:
        UserError: output's folder is not out and holds a run.json.
    """
    folder = os.path.dirname(os.path.abspath(output))
    if os.path.realpath(folder) != os.path.realpath(out) and (
            is_run_folder(folder)):
        raise UserError('--output {} lies in another training run\'s folder '
                        '({} holds its {}): its best model would be '
                        'replaced; give a path outside it'.format(
                            shown(output), shown(folder), RUN_CONFIG))


# The run folders this process holds: {real path: a descriptor holding the
# folder's lock}.
_held = {}


def hold(out):
    """Locks a run's folder for this process, so that a second run cannot
    write into it (nor take a live run's half-written snapshot for a dead
    one's), whatever PID namespace or host it runs in.

    Args:
        out: the run's folder.

    Returns:
        True when this process holds it; None when its file system has no
        locks (nothing can be told).

    Raises:
        UserError: another process holds it.
    """
    key = os.path.realpath(out)
    if key in _held:
        return True
    fd = os.open(key, os.O_RDONLY)
    state = try_lock(fd)
    if state is None:
        os.close(fd)
        return None
    if not state:
        os.close(fd)
        raise UserError('another training run is using {}: let it end, or '
                        'pass another --out'.format(out))
    _held[key] = fd
    return True


def release(out):
    """Lets go of a run folder this process holds (hold); nothing if it
    holds none."""
    fd = _held.pop(os.path.realpath(out), None)
    if fd is not None:
        os.close(fd)


def remove_strays(out):
    """Removes what a killed run left half written in out, saying so.

    Chainer's temporary snapshot folders and atomic_write's temporary
    files (STRAY_PATTERN): called while this process holds the folder
    (hold), so no live run is writing them.

    Args:
        out: the run's folder.
    """
    for name in os.listdir(out):
        if STRAY_PATTERN.match(name):
            path = os.path.join(out, name)
            if os.path.isdir(path):
                shutil.rmtree(path, ignore_errors=True)
            else:
                os.unlink(path)
            print('removed {}, left by an interrupted run'.format(path))


def snapshot_to_resume(args, config, run_files):
    """The snapshot to resume, or None for a new run.

    A folder that holds this very run (its run.json is config) stopped
    before its first snapshot has nothing to resume: with or without
    --resume latest, the run starts again from the beginning, which loses
    nothing a resume could have kept.

    Args:
        args: the options (--out, --resume).
        config: the run's configuration (run_config).
        run_files: the names of a run's files in --out
            (prepare_out_folder's).

    Returns:
        the path of --resume's snapshot (with --resume latest, the newest
        in --out), checked against config; None for a new run.

    Raises:
        UserError: --out holds another run and --resume is not given, or
            --resume names no snapshot of this run (latest_snapshot,
            check_snapshot).
    """
    out = args.out
    if not snapshot_files(out) and (run_files or args.resume == 'latest'):
        try:
            with open(os.path.join(out, RUN_CONFIG)) as f:
                same = not config_difference(json.load(f), config)
        except (OSError, ValueError, TypeError):
            same = False
        if same:
            print('{} holds this run, stopped before its first snapshot: '
                  'starting it from the beginning'.format(out))
            return None
    if not args.resume:
        if run_files:
            raise UserError('{} holds another training run ({}): continue '
                            'it with --resume latest, or pass another --out'
                            .format(out, ', '.join(sorted(run_files)[:3])))
        return None
    snapshot = latest_snapshot(out) if args.resume == 'latest' else \
        args.resume
    check_snapshot(snapshot, config)
    return snapshot


def data_folders(args):
    """The folders training reads images from.

    Args:
        args: the options (--train, --val, --root).

    Returns:
        [path]: --train and --val where they are folders, and --root when
        given and one of them is a list file.
    """
    data = [path for path in (args.train, args.val) if path]
    folders = [path for path in data if os.path.isdir(path)]
    if args.root is not None and len(folders) < len(data):
        folders.append(args.root)
    return folders


@contextlib.contextmanager
def resumable_failures(out, rank=0):
    """Says how a run stopped can go on: a failure of the disk (a full
    disk, a folder gone) becomes a one-line UserError saying so, and a
    Ctrl-C gets a line saying whether --resume latest continues it (every
    snapshot on disk is complete).

    Args:
        out: the run's folder.
        rank: the MPI rank; only rank 0 says how to go on.

    Raises:
        UserError: for an OSError in the block (but BrokenPipeError, which
            cli.report_errors turns into a quiet stop).
        KeyboardInterrupt: again, after that line.
    """
    try:
        yield
    except BrokenPipeError:
        raise  # stdout's reader went away: report_errors stops quietly
    except OSError as e:
        raise UserError('cannot write {}: {}; once that is fixed, continue '
                        'with --resume latest'.format(
                            e.filename or out, e.strerror or e))
    except KeyboardInterrupt:
        if not rank:
            print('the run goes on from its last snapshot with the same '
                  'command and --resume latest' if snapshot_files(out) else
                  'no snapshot was written: the same command starts the run '
                  'again', file=sys.stderr, flush=True)
        raise
