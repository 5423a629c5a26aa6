"""Fine-tunes GoogLeNet's replaced heads on your own images.

    python convert_caffe_model.py --classes N
    python train_googlenet.py --train DATA [--val DATA] [--cache-features]

DATA is a folder with one sub-folder of images per class (the folder names,
sorted, are the class names) or a list file of ``path label`` lines. The trunk
is frozen up to --freeze-until; the best model by validation accuracy is saved
with its class names, so googlenet_predict.py --model prints them.
"""
import os
import signal
import sys

if __name__ == '__main__':
    # Ctrl-C during the imports below (a second or more): nothing is
    # written yet; main() installs the handler of the run itself.
    def _interrupted_early(signum, frame):
        # os._exit: an exception would surface inside the interrupted
        # import as an ImportError with a traceback.
        print('interrupted', file=sys.stderr, flush=True)
        os._exit(130)
    signal.signal(signal.SIGINT, _interrupted_early)

import argparse  # noqa: E402
import collections  # noqa: E402
import concurrent.futures.process  # noqa: E402
import contextlib  # noqa: E402
import ctypes  # noqa: E402
import hashlib  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import multiprocessing  # noqa: E402
import pickle  # noqa: E402
import re  # noqa: E402
import shutil  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import numpy  # noqa: E402

from chainer_compat import chainer  # noqa: E402
from chainer import training  # noqa: E402
from chainer.training import extensions  # noqa: E402

import tuned_googlenet  # noqa: E402
from googlenet_data import (check_labels, class_report,  # noqa: E402
                            data_warnings, drop_unreadable, plot_confusion,
                            print_report, read_dataset, report_text,
                            stratified_split, write_report)
from googlenet_io import (CENTER, CROP, DEFAULT_MAX_PIXELS,  # noqa: E402
                          RESIZE, UserError, atomic_write, check_output_path,
                          check_outside, check_writable,
                          crop, file_sha1, non_negative_float,
                          non_negative_int, one_line, random_seed,
                          open_image, positive_float, positive_int, progress,
                          read_labels, remove_stale_temporaries,
                          resized_bgr, RowCache, save_npz, sigint_deferred,
                          unit_fraction)
from googlenet_mpi import (Single, add_option, on_root,  # noqa: E402
                           run_main)

SNAPSHOT = 'snapshot_iter_{.updater.iteration}'
SNAPSHOT_PATTERN = re.compile(r'^snapshot_iter_(\d+)$')
# What Chainer's snapshot writer and atomic_write leave behind when killed.
STRAY_PATTERN = re.compile(r'^(tmpsnapshot_iter_\d+.*|\..+\.tmp)$')
RUN_CONFIG = 'run.json'
# A resumed run must agree with its snapshot on these (the rest, e.g.
# --epoch, --device or --loaderjob, may change between sessions).
RUN_KEYS = {'class_names': 'class names', 'data': 'data set',
            'model': 'model file', 'freeze_until': 'frozen layers',
            'cache_features': '--cache-features', 'seed': '--seed',
            'batchsize': '--batchsize', 'lr': '--lr',
            'momentum': '--momentum', 'weight_decay': '--weight-decay',
            'lr_policy': '--lr-policy', 'lr_step': '--lr-step',
            'gamma': '--gamma', 'power': '--power',
            'class_weight': '--class-weight', 'aux_heads': '--aux-heads',
            'processes': 'MPI processes'}
UNREADABLE = -1  # the label of an image that failed to load mid-run


def example_rng(seed, index, n):
    """(generator, example) for a sampled index: SeededOrder offsets epoch
    k's indices by k * n, so the draw depends on the seed, the epoch and the
    example only, never on which process loads it or what it loaded before."""
    epoch, example = divmod(int(index), n)
    return numpy.random.default_rng([seed, epoch, example]), example


class SeededOrder(chainer.iterators.OrderSampler):
    """Epoch k's shuffle: a permutation seeded by (seed, k), offset by k * n.

    The epoch is read back from the previous order, which iterators keep in
    their snapshots, so a resumed run draws the orders an uninterrupted one
    would. Datasets take the index modulo their length (example_rng).
    """

    def __init__(self, seed):
        self.seed = seed

    def __call__(self, current_order, current_position):
        n = len(current_order)
        # The iterator's first call passes arange(n): epoch 0, next is 1.
        epoch = int(numpy.min(current_order)) // n + 1
        order = numpy.random.default_rng([self.seed, epoch]).permutation(n)
        return order + epoch * n


class ImageDataset(chainer.dataset.DatasetMixin):
    """Caffe's input: a random 224 crop of the 256x256 image with a random
    mirror in training (from example_rng), the centre crop otherwise.

    An image that cannot be read any more (changed since the data report)
    is reported on stderr and comes back as a blank crop with label -1,
    which the losses and the accuracy skip.
    """

    def __init__(self, pairs, train, seed=0, max_pixels=DEFAULT_MAX_PIXELS):
        self.pairs = pairs
        self.train = train
        self.seed = seed
        self.max_pixels = max_pixels

    def __len__(self):
        return len(self.pairs)

    def get_example(self, index):
        rng, i = example_rng(self.seed, index, len(self.pairs))
        path, label = self.pairs[i]
        try:
            array = resized_bgr(open_image(path, self.max_pixels))
        except UserError as e:
            print('warning: skipped unreadable {}: {}'.format(path, e),
                  file=sys.stderr, flush=True)
            return (numpy.zeros((3, CROP, CROP), numpy.float32),
                    numpy.int32(UNREADABLE))
        if self.train:
            top, left = rng.integers(0, RESIZE - CROP + 1, size=2)
            return (crop(array, top, left, bool(rng.integers(2))),
                    numpy.int32(label))
        return crop(array), numpy.int32(label)


# --- the feature cache ------------------------------------------------------

FEATURE_SHAPES = ((512, 4, 4), (528, 4, 4), (1024, 1, 1))


def feature_shapes(aux=True):
    """What the heads read per view: the two aux pools and pool5, or
    pool5 alone (--aux-heads off)."""
    return FEATURE_SHAPES if aux else FEATURE_SHAPES[2:]


def feature_size(aux=True):
    """Floats per view: 17,408 (70 KB) with the aux heads, 1,024 without."""
    return sum(int(numpy.prod(s)) for s in feature_shapes(aux))


class ViewDataset(chainer.dataset.DatasetMixin):
    """The centre crop of each image, and its mirror when views == 2."""

    def __init__(self, pairs, views, max_pixels=DEFAULT_MAX_PIXELS):
        self.pairs = pairs
        self.views = views
        self.max_pixels = max_pixels

    def __len__(self):
        return len(self.pairs)

    def get_example(self, i):
        array = resized_bgr(open_image(self.pairs[i][0], self.max_pixels))
        return numpy.stack([crop(array, CENTER, CENTER, mirror)
                            for mirror in (False, True)[:self.views]])


class CachedFeatures(chainer.dataset.DatasetMixin):
    """Trunk features per image and view (features: N x views x
    feature_size, memory-mapped); training picks a view from example_rng."""

    def __init__(self, features, labels, train, seed=0):
        self.features = features
        self.labels = labels
        self.train = train
        self.seed = seed
        self.shapes = feature_shapes(features.shape[2] != feature_size(False))

    def __len__(self):
        return len(self.labels)

    def get_example(self, index):
        rng, i = example_rng(self.seed, index, len(self.labels))
        view = int(rng.integers(self.features.shape[1])) if self.train \
            else 0
        flat = self.features[i, view]
        parts, start = [], 0
        for shape in self.shapes:
            size = int(numpy.prod(shape))
            parts.append(numpy.array(flat[start:start + size]).reshape(
                shape))
            start += size
        return tuple(parts) + (numpy.int32(self.labels[i]),)


class Shard(chainer.dataset.DatasetMixin):
    """Examples [begin, end) of a dataset (ChainerMN's scatter_index), so
    that index k * len(shard) + i, SeededOrder's epoch k, is example
    begin + i of epoch k: each rank draws its crops and views by epoch."""

    def __init__(self, dataset, begin, end):
        self.dataset = dataset
        self.begin = begin
        self.end = end

    def __len__(self):
        return self.end - self.begin

    def get_example(self, index):
        epoch, i = divmod(int(index), len(self))
        return self.dataset.get_example(epoch * len(self.dataset) +
                                        self.begin + i)


def cache_key(model, pairs, views, aux=True):
    """Changes with the frozen trunk's weights, the images, the views, or
    what is cached (--aux-heads)."""
    digest = hashlib.sha1('{} {}'.format(views, feature_size(aux)).encode())
    for name, param in sorted(model.namedparams()):
        if name.split('/')[1] in tuned_googlenet.TRUNK:
            digest.update(name.encode())
            digest.update(numpy.ascontiguousarray(param.array).tobytes())
    update_data_digest(digest, pairs)
    return digest.hexdigest()


def update_data_digest(digest, pairs):
    """Feeds each image's path, size, modification time and label."""
    for path, label in pairs:
        stat = os.stat(path)
        digest.update(os.fsencode(os.path.abspath(path)) + '\0{}\0{}\0{}\n'
                      .format(stat.st_size, stat.st_mtime_ns,
                              label).encode())


def cached_features(model, pairs, views, path, batchsize, device,
                    loaderjob, loader_timeout, max_pixels=DEFAULT_MAX_PIXELS,
                    show=True, aux=True, comm=Single()):
    """The trunk's features of every image (float32 N x views x
    feature_size(aux)), computed once into the RowCache at path (NAME.npy)
    and returned memory-mapped.

    Reused while cache_key matches; a computation that was stopped goes on
    from its complete blocks of ``batchsize`` images; a damaged cache is
    recomputed with a note. Under MPI the blocks left are dealt out to the
    ranks in turn, each writing its own rows, and rank 0 records them after
    each round: a block is always one forward pass of the same images, so
    the bytes do not depend on the number of ranks.
    """
    size = feature_size(aux)
    cache = RowCache(path, cache_key(model, pairs, views, aux),
                     (len(pairs), views, size), batchsize)

    def start():
        pending = cache.open()
        if pending:
            done = cache.complete_rows()
            print('computing trunk features of {} images ({} view{}) for '
                  '{}{}'.format(len(pairs) - done, views,
                                's' if views > 1 else '', path,
                                ' ({} done before)'.format(done) if done
                                else ''))
        return cache.block, cache.blocks
    cache.block, cache.blocks = on_root(comm, start)
    cache.attach()
    pending = cache.pending()
    mine = pending[comm.rank::comm.size]
    rounds = -(-len(pending) // comm.size)
    iterator = make_iterator(ViewDataset(
        [pairs[j] for i in mine for j in range(*cache.rows(i))], views,
        max_pixels), cache.block, loaderjob, loader_timeout,
        repeat=False) if mine else None
    bar = progress(None, 'trunk features', show and not comm.rank,
                   total=sum(cache.rows(i)[1] - cache.rows(i)[0]
                             for i in pending))
    try:
        with bar, chainer.no_backprop_mode(), chainer.using_config('train',
                                                                    False):
            for step in range(rounds):
                written = {}
                if step < len(mine):
                    batch = next(iterator)
                    x = device.send(numpy.concatenate(batch))
                    flat = numpy.concatenate(
                        [chainer.backend.CpuDevice().send(p.array).reshape(
                            len(x), -1) for p in model.features(x, aux=aux)
                         if p is not None], axis=1)
                    written[mine[step]] = cache.write(
                        mine[step], flat.reshape(len(batch), views, size))
                gathered = comm.gather(written)
                if not comm.rank:
                    done = {i: d for part in gathered for i, d in part.items()}
                    cache.commit(done)
                    bar.update(sum(cache.rows(i)[1] - cache.rows(i)[0]
                                   for i in done))
    finally:
        if iterator is not None:
            iterator.finalize()
    return cache.read()


# --- training ---------------------------------------------------------------

def make_iterator(dataset, batchsize, loaderjob, loader_timeout, order=None,
                  repeat=True):
    """An iterator in order (a SeededOrder) or in dataset order (None),
    reading examples in loaderjob worker processes (LoaderIterator) or, with
    0, in this one."""
    shuffle = None if order is not None else False
    if loaderjob > 0:
        return LoaderIterator(dataset, batchsize, loaderjob, loader_timeout,
                              repeat=repeat, shuffle=shuffle,
                              order_sampler=order)
    return chainer.iterators.SerialIterator(
        dataset, batchsize, repeat=repeat, shuffle=shuffle,
        order_sampler=order)


_worker = {}
SPOOL_PREFIX = 'googlenet-loader.'
PR_SET_PDEATHSIG = 1  # linux/prctl.h

def _start_worker(dataset, spool, parent):
    # Ctrl-C reaches the whole process group; the main process reports it
    # and stops the workers.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # A run killed outright (kill -9) would leave its workers waiting on
    # their task queue forever: on Linux they get SIGKILL when it dies.
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # it died before prctl
        os._exit(0)
    _worker.update(dataset=dataset, spool=spool)


def _load_example(index):
    """Pickles example index into a new file of the spool folder; its path.

    A file, not the result itself, crosses the executor's pipe: a path is
    one write, which a pipe makes at once, where a worker killed halfway
    through sending a 600 KB example leaves half a message and the
    executor's reading thread waiting for the rest forever.
    """
    example = _worker['dataset'][index]
    fd, path = tempfile.mkstemp(dir=_worker['spool'])
    with open(fd, 'wb') as f:
        pickle.dump(example, f, pickle.HIGHEST_PROTOCOL)
    return path


def _receive(path):
    with open(path, 'rb') as f:
        example = pickle.load(f)
    os.unlink(path)
    return example


def _discard(future):
    if not future.cancelled() and future.exception() is None:
        with contextlib.suppress(OSError):
            os.unlink(future.result())


def make_spool():
    """A folder for examples in passage (in memory, /dev/shm, where there
    is one); those of loaders whose process is gone are removed first."""
    shm = '/dev/shm'
    parent = shm if os.access(shm, os.W_OK) else tempfile.gettempdir()
    remove_stale_temporaries(parent, SPOOL_PREFIX)
    return tempfile.mkdtemp(suffix='.tmp', dir=parent, prefix='{}{}.'.format(
        SPOOL_PREFIX, os.getpid()))


class LoaderIterator(chainer.iterators.SerialIterator):
    """SerialIterator whose examples are read by worker processes, one batch
    ahead.

    The workers are a concurrent.futures.ProcessPoolExecutor, which notices
    a worker that dies (the out-of-memory killer's SIGKILL, a crash) and
    fails its futures with BrokenProcessPool, where multiprocessing.Pool,
    and so Chainer's MultiprocessIterator, waits forever on the task-queue
    lock the dead worker held. A worker's death costs a warning and a fresh
    set of workers that reload the batch; a second death on the same batch,
    or a batch not read within timeout seconds, raises a one-line UserError.
    The batches, and the state kept in snapshots, are SerialIterator's: the
    batch read ahead is drawn from a copy of the state and dropped on reset
    or resume.
    """

    def __init__(self, dataset, batch_size, n_processes, timeout, **kwargs):
        self.n_processes = n_processes
        self.timeout = timeout
        self._executor = None
        self._spool = None
        self._ahead = None  # (state after the batch, indices, futures)
        super().__init__(dataset, batch_size, **kwargs)

    def __next__(self):
        if self._ahead is None:
            self._ahead = self._submit(self._state)
        state, indices, futures = self._ahead
        if indices is None:
            raise StopIteration
        batch = self._collect(indices, futures)
        self._previous_epoch_detail = self.epoch_detail
        self._state = state
        self._ahead = self._submit(state)
        return batch

    next = __next__

    def _submit(self, state):
        state, indices = chainer.iterators._statemachine \
            .iterator_statemachine(state, self.batch_size, self.repeat,
                                   self.order_sampler, len(self.dataset))
        futures = None if indices is None else self._start(indices)
        return state, indices, futures

    def _start(self, indices):
        """Futures of the examples' files; None when the workers died."""
        # The workers start at the first submit.
        with sigint_deferred():
            if self._executor is None:
                self._spool = self._spool or make_spool()
                self._executor = concurrent.futures.ProcessPoolExecutor(
                    self.n_processes, multiprocessing.get_context('fork'),
                    _start_worker, (self.dataset, self._spool, os.getpid()))
            try:
                return [self._executor.submit(_load_example, int(i))
                        for i in indices]
            except concurrent.futures.process.BrokenProcessPool:
                return None

    def _collect(self, indices, futures):
        deaths = 0
        while True:
            deadline = time.monotonic() + self.timeout
            try:
                if futures is None:
                    raise concurrent.futures.process.BrokenProcessPool
                return [_receive(future.result(max(
                    0, deadline - time.monotonic()))) for future in futures]
            except concurrent.futures.process.BrokenProcessPool:
                cause = self._stop(broken=True)
                deaths += 1
                if deaths == 2:
                    raise UserError(
                        'a loader process died twice reading the same batch '
                        '({}): continue with --resume latest, with fewer '
                        '--loaderjob or --loaderjob 0'.format(cause))
                print('warning: a loader process died ({}); reading the '
                      'batch again with new ones'.format(cause),
                      file=sys.stderr, flush=True)
                futures = self._start(indices)
            except concurrent.futures.TimeoutError:
                self._stop()
                raise UserError(
                    'the loader processes gave no batch in {} s '
                    '(--loader-timeout; one may be stuck on an image on a '
                    'slow disk): continue with --resume latest, with a '
                    'larger --loader-timeout or --loaderjob 0'.format(
                        self.timeout))

    def _stop(self, broken=False):
        """Ends the workers (a broken pool ends its own; the others are
        killed, as one may be stuck) and says how one of them died."""
        with sigint_deferred():
            return self._end_workers(broken)

    def _end_workers(self, broken):
        executor, self._executor = self._executor, None
        if executor is None:
            return 'not started'
        # No public way before Python 3.14's kill_workers(); shutdown()
        # alone would wait for a stuck worker.
        processes = list((executor._processes or {}).values())
        for process in () if broken else processes:
            process.kill()
        executor.shutdown(wait=True, cancel_futures=True)
        for process in processes:
            process.join()
        # A broken pool sends its surviving workers SIGTERM.
        codes = [p.exitcode for p in processes
                 if p.exitcode not in (0, -signal.SIGTERM)]
        if not codes:
            return 'it vanished'
        if codes[0] == -signal.SIGKILL:
            return 'killed by SIGKILL, as the out-of-memory killer does'
        if codes[0] < 0:
            return 'killed by {}'.format(signal.Signals(-codes[0]).name)
        return 'exit status {}'.format(codes[0])

    def _drop_ahead(self):
        ahead, self._ahead = getattr(self, '_ahead', None), None
        for future in (ahead[2] or []) if ahead else []:
            future.cancel()
            future.add_done_callback(_discard)

    def reset(self):
        self._drop_ahead()
        super().reset()

    def serialize(self, serializer):
        super().serialize(serializer)
        if isinstance(serializer, chainer.serializer.Deserializer):
            self._drop_ahead()

    def finalize(self):
        self._drop_ahead()
        self._stop()
        if self._spool:
            shutil.rmtree(self._spool, ignore_errors=True)
            self._spool = None


def snapshot_files(out):
    """[(iteration, path)] of the complete snapshots in out, oldest first."""
    found = [(int(m.group(1)), os.path.join(out, name))
             for name in os.listdir(out)
             for m in [SNAPSHOT_PATTERN.match(name)] if m
             and os.path.isfile(os.path.join(out, name))] if os.path.isdir(
                 out) else []
    return sorted(found)


def latest_snapshot(out):
    found = snapshot_files(out)
    if not found:
        raise UserError('no snapshot to resume in {}: the run stopped before '
                        'its first snapshot; run the same command without '
                        '--resume to start it'.format(out))
    return found[-1][1]


def snapshot_writer(model, config):
    """Writes snapshots uncompressed and without the frozen stages, which
    never change and come back from --model on resume: a snapshot is then
    the heads, the optimizer, the iterator, the log and the run's
    configuration (run_config), written in a blink.
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
    with open(path, 'wb') as f:
        save_npz(f, arrays)


def config_difference(stored, current):
    """What differs between two run configurations, as words ('' if none)."""
    differ = []
    # Snapshots from before --aux-heads and MPI are of these settings.
    stored = dict({'aux_heads': 'on', 'processes': 1}, **stored)
    for key, words in RUN_KEYS.items():
        if stored.get(key) != current.get(key):
            if key == 'class_names':
                words = 'class names ({} in the snapshot; {} now)'.format(
                    ', '.join(stored.get(key) or []),
                    ', '.join(current[key]))
            elif key not in ('data', 'model'):
                words = '{} ({} in the snapshot, {} now)'.format(
                    words, stored.get(key), current[key])
            differ.append(words)
    return '; '.join(differ)


def check_snapshot(path, config):
    """UserError unless path is a snapshot of a run of this configuration,
    naming what differs."""
    try:
        with numpy.load(path, allow_pickle=False) as npz:
            stored = (json.loads(str(npz['run_config']))
                      if 'run_config' in npz.files else None)
    except Exception as e:
        raise UserError('cannot resume from {}: {}'.format(path, one_line(e)))
    if stored is None:
        raise UserError('cannot resume from {}: it is not a snapshot of this '
                        'version\'s runs (no run configuration in it)'.format(
                            path))
    difference = config_difference(stored, config)
    if difference:
        raise UserError('cannot resume from {}: it is a snapshot of another '
                        'run; differs in {}'.format(path, difference))


def resume(trainer, path):
    """Loads a snapshot (check_snapshot has passed); the frozen stages it
    lacks stay as loaded."""
    try:
        # Pickled: a trigger's best value is None until the first evaluation.
        with numpy.load(path, allow_pickle=True) as npz:
            chainer.serializers.NpzDeserializer(npz, strict=False).load(
                trainer)
    except Exception as e:
        raise UserError('cannot resume from {}: {}'.format(path, one_line(e)))
    print('resumed from {} at iteration {}'.format(
        path, trainer.updater.iteration))


class PlainText:
    """A stream without the erase-to-end code (ESC [J) that PrintReport
    writes before each row to clear ProgressBar's lines: with no bar there
    is nothing to erase, and a log file gets plain text."""

    def __init__(self, stream):
        self.stream = stream

    def write(self, text):
        self.stream.write(text.replace('\033[J', ''))

    def flush(self):
        self.stream.flush()


class SaveBest(training.Extension):
    """Saves the model (and class names) when validation accuracy peaks."""

    def __init__(self, model, path, class_names):
        self.model = model
        self.path = path
        self.class_names = class_names

    def __call__(self, trainer):
        model = self.model
        # Trained now: loss3, and the aux heads unless --aux-heads off.
        untrained = [name for name in model.untrained_heads
                     if name != 'loss3_fc' and not model.aux_heads]
        tuned_googlenet.save_model(self.path, model, self.class_names,
                                   untrained)


class KeepSnapshots(training.Extension):
    """Deletes all but the newest N snapshots, newest by iteration.

    Not the snapshot extension's n_retains: it ranks by modification time,
    then by name, and on a file system with coarse timestamps deletes
    snapshot_iter_10 before snapshot_iter_9.
    """

    priority = -200  # after the snapshot (priority -100) is written

    def __init__(self, n):
        self.n = n

    def __call__(self, trainer):
        for _, path in snapshot_files(trainer.out)[:-self.n]:
            os.unlink(path)


class SeededUpdater(training.updaters.StandardUpdater):
    """Seeds numpy's global generator, which dropout draws from, with the
    run's seed (and rank, under MPI) and the iteration before each update,
    so an interrupted and resumed run drops the units an uninterrupted one
    would."""

    def __init__(self, *args, seed, rank=None, **kwargs):
        super().__init__(*args, **kwargs)
        # Under MPI each rank drops its own units (rank None: one process).
        self.seed = [seed] if rank is None else [seed, rank]

    def update_core(self):
        numpy.random.seed(self.seed + [self.iteration])
        super().update_core()


def as_float(value):
    """A reported value (a Variable or an array, on any device) as a float."""
    return float(chainer.backend.CpuDevice().send(chainer.as_array(value)))


def observed(trainer, key):
    """The value reported under key in this iteration, as a float (None if
    nothing was)."""
    value = trainer.observation.get(key)
    return None if value is None else as_float(value)


class EarlyStopping(training.Extension):
    """--patience N: the run stops once validation accuracy has not improved
    for N evaluations (what Chainer's EarlyStoppingTrigger does).

    Chainer's trigger counts at the next turn of the training loop, after
    that iteration's snapshot is written, so a run resumed from it missed
    one evaluation and stopped an epoch late. This extension counts right
    after the Evaluator (its priority is below the Evaluator's, above the
    snapshot's -100), so snapshots keep best and count; the run's stop
    trigger, ``stop``, reads only them and the epoch.
    """
    trigger = (1, 'epoch')
    priority = training.PRIORITY_EDITOR
    monitor = 'validation/main/accuracy'

    def __init__(self, patience, max_epoch):
        self.patience = patience
        self.max_epoch = max_epoch
        self.best = -math.inf
        self.count = 0

    def __call__(self, trainer):
        value = observed(trainer, self.monitor)
        if value is None:
            return
        if value > self.best:
            self.best, self.count = value, 0
        else:
            self.count += 1

    def stop(self, trainer):
        return trainer.updater.epoch_detail >= self.max_epoch or \
            self.count >= self.patience

    def serialize(self, serializer):
        self.best = float(serializer('best', self.best))
        self.count = int(serializer('count', self.count))


class ExactEvaluator(extensions.Evaluator):
    """The validation set's loss and accuracy over its images.

    Chainer's Evaluator averages its batches' means, so a short last batch
    weighs as much as a full one, and ChainerMN's averages the ranks' means
    over shards padded to equal length with repeated images. This one
    weights each batch's values by its labelled images (label -1, an
    unreadable image, counts in neither) and sums them over the ranks
    (comm: googlenet_mpi's Single or Distributed), so validation/main/
    accuracy is the fraction of the validation images classified right.
    """

    def __init__(self, iterator, target, device, comm):
        super().__init__(iterator, target, device=device)
        self.comm = comm

    def evaluate(self):
        iterator = self.get_iterator('main')
        target = self.get_target('main')
        iterator.reset()
        sums, count = collections.defaultdict(float), 0
        for batch in iterator:
            if not batch:
                continue
            inputs = chainer.dataset.concat_examples(batch, self.device)
            labelled = int((chainer.backend.CpuDevice().send(inputs[-1]) >= 0)
                           .sum())
            observation = {}
            with chainer.reporter.report_scope(observation), \
                    chainer.no_backprop_mode():
                target(*inputs)
            for key, value in observation.items():
                sums[key] += labelled * as_float(value)
            count += labelled
        parts = self.comm.gather((dict(sums), count))
        if not self.comm.rank:
            count = sum(n for _, n in parts)
            totals = collections.defaultdict(float)
            for part, _ in parts:
                for key, value in part.items():
                    totals[key] += value
            parts = {key: value / count for key, value in totals.items()} \
                if count else {}
        return self.comm.bcast(parts)


class StopOnNonFinite(training.Extension):
    """Stops the run with one line when the reported ``key`` (a loss)
    becomes NaN or infinite: the training loss at each iteration, or the
    validation loss, checked after the Evaluator and before SaveBest, so
    that a diverged model is never saved as the best (its accuracy is
    whatever NaN logits argmax to)."""

    def __init__(self, key, priority):
        self.key = key
        self.priority = priority

    def __call__(self, trainer):
        value = observed(trainer, self.key)
        if value is not None and not numpy.isfinite(value):
            raise UserError(
                'the {} became {} at iteration {}: the learning rate is too '
                'high for these features; train again with a lower --lr '
                '(e.g. a tenth)'.format(
                    'validation loss' if self.key.startswith('validation')
                    else 'loss', value, trainer.updater.iteration))


class PlotLog(training.Extension):
    """Draws loss.png and accuracy.png from LogReport's log itself, so the
    plots show exactly the log's epochs and values after any resume
    (PlotReport keeps its own copy, which drifts from the log when a run is
    resumed from a snapshot taken mid-epoch), and writes them atomically."""

    trigger = (1, 'epoch')
    priority = training.PRIORITY_READER - 1  # after LogReport

    PLOTS = {'loss.png': ('main/loss', 'validation/main/loss'),
             'accuracy.png': ('main/accuracy', 'validation/main/accuracy')}

    def __call__(self, trainer):
        log = trainer.get_extension('LogReport').log
        for name, keys in self.PLOTS.items():
            plot_log(log, keys, os.path.join(trainer.out, name))


def plot_curves(log, keys):
    """{key: ([epoch], [value])} of the log's entries that have the key."""
    return {key: ([entry['epoch'] for entry in log if key in entry],
                  [entry[key] for entry in log if key in entry])
            for key in keys}


def plot_log(log, keys, path):
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    import matplotlib.ticker
    fig, ax = plt.subplots()
    for key, (x, y) in plot_curves(log, keys).items():
        ax.plot(x, y, marker='x', label=key)
    ax.set_xlabel('epoch')
    ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    ax.grid()
    ax.legend()
    with atomic_write(path) as f:
        fig.savefig(f, format='png')
    plt.close(fig)


def lr_schedule(args, iterations):
    """Chainer's extension for --lr-policy and its trigger (None: fixed)."""
    if args.lr_policy == 'step':
        return extensions.StepShift('lr', args.gamma, args.lr_step), (
            1, 'epoch')
    if args.lr_policy == 'poly':
        # Caffe's poly: lr * (1 - iter / max_iter) ** power.
        return extensions.PolynomialShift('lr', args.power, iterations), (
            1, 'iteration')
    return None, None


def build_trainer(args, model, output, class_names, train_set, val_set,
                  config, snapshot=None, comm=Single()):
    """The Trainer of a run. Under MPI (comm.size > 1) train_set and
    val_set are this rank's shards, gradients are averaged over the ranks
    (ChainerMN's multi-node optimizer, heads only: zero_fill=False skips the
    frozen trunk, which has no gradients) and so is validation (its
    multi-node evaluator); only rank 0 saves, logs, plots and prints."""
    optimizer = tuned_googlenet.make_optimizer(
        model, lr=args.lr, momentum=args.momentum,
        weight_decay=args.weight_decay)
    if comm.size > 1:
        import chainermn
        optimizer = chainermn.create_multi_node_optimizer(
            optimizer, comm.chainermn, zero_fill=False)
    loaderjob = 0 if args.cache_features else args.loaderjob
    train_iter = make_iterator(train_set, args.batchsize, loaderjob,
                               args.loader_timeout, SeededOrder(args.seed))
    val_iter = make_iterator(val_set, args.val_batchsize, loaderjob,
                             args.loader_timeout, repeat=False)
    device = tuned_googlenet.get_device(args.device, comm)
    updater = SeededUpdater(train_iter, optimizer, device=device,
                            seed=args.seed,
                            rank=comm.rank if comm.size > 1 else None)
    stop = (args.epoch, 'epoch')
    early = EarlyStopping(args.patience, args.epoch) if args.patience \
        else None
    trainer = training.Trainer(updater, early.stop if early else stop,
                               args.out)
    epoch = (1, 'epoch')
    trainer.extend(StopOnNonFinite('main/loss', training.PRIORITY_WRITER
                                   + 1), name='finite_loss')
    trainer.extend(stop_if_interrupted)
    trainer.extend(ExactEvaluator(val_iter, model, device, comm),
                   name='validation', trigger=epoch)
    trainer.extend(StopOnNonFinite('validation/main/loss',
                                   training.PRIORITY_EDITOR + 1),
                   name='finite_validation_loss', trigger=epoch)
    if early:
        trainer.extend(early)
    schedule, trigger = lr_schedule(args, int(math.ceil(
        args.epoch * len(train_set) / args.batchsize)))
    if schedule is not None:
        trainer.extend(schedule, trigger=trigger)
    trainer.extend(extensions.observe_lr())
    if not comm.rank:  # rank 0 writes and prints for the run
        trainer.extend(SaveBest(model, output, class_names),
                       trigger=training.triggers.MaxValueTrigger(
                           'validation/main/accuracy', trigger=epoch))
        trainer.extend(extensions.snapshot(
            savefun=snapshot_writer(model, config), filename=SNAPSHOT),
            trigger=args.snapshot_interval)
        trainer.extend(KeepSnapshots(args.keep_snapshots),
                       trigger=args.snapshot_interval)
        trainer.extend(extensions.LogReport(trigger=epoch))
        trainer.extend(PlotLog())
        progress_bar = not args.no_progress and sys.stdout.isatty()
        trainer.extend(extensions.PrintReport(
            ['epoch', 'iteration', 'lr', 'main/loss', 'main/loss1',
             'main/loss2', 'main/loss3', 'main/accuracy',
             'validation/main/loss', 'validation/main/accuracy',
             'elapsed_time'],
            out=sys.stdout if progress_bar else PlainText(sys.stdout)))
        if progress_bar:  # no \r in logs
            trainer.extend(extensions.ProgressBar(update_interval=1))
    if snapshot:
        resume(trainer, snapshot)
    if comm.size > 1 and optimizer.is_changed(model):
        # ChainerMN's optimizer spends its first update on broadcasting
        # rank 0's weights instead: done here, every update updates, and a
        # resumed run goes on as an uninterrupted one.
        comm.chainermn.bcast_data(model)
    return trainer


def validate(model, dataset, n_classes, batchsize, device):
    """The confusion matrix (rows: true class, columns: predicted); images
    that could not be read (label -1) are left out."""
    confusion = numpy.zeros((n_classes, n_classes), numpy.int64)
    iterator = chainer.iterators.SerialIterator(dataset, batchsize,
                                                repeat=False, shuffle=False)
    for batch in iterator:
        *inputs, t = chainer.dataset.concat_examples(batch)
        with chainer.no_backprop_mode(), chainer.using_config('train',
                                                              False):
            if inputs[0].shape[1] == 3:  # images, not cached features
                probs = model.predict(device.send(inputs[0]))
            else:
                probs = model.probabilities_from_pool5(
                    device.send(inputs[-1]))
        predicted = chainer.backend.CpuDevice().send(probs).argmax(axis=1)
        read = t != UNREADABLE
        numpy.add.at(confusion, (t[read], predicted[read]), 1)
    return confusion


def best_epoch(log):
    """(epoch, validation accuracy) of the log's first best epoch, the one
    SaveBest kept (MaxValueTrigger saves on a strict improvement)."""
    scored = [entry for entry in log if 'validation/main/accuracy' in entry]
    best = max(scored, key=lambda entry: entry['validation/main/accuracy'])
    return best['epoch'], best['validation/main/accuracy']


def balanced_class_weight(labels, n_classes):
    """scikit-learn's 'balanced' weights: images / (classes * images of the
    class), over the classes present; 1 for a class without images."""
    counts = numpy.bincount(labels, minlength=n_classes)
    present = numpy.count_nonzero(counts)
    return numpy.where(counts > 0, len(labels) / (present * numpy.maximum(
        counts, 1)), 1.0).astype(numpy.float32)


def prepare_data(args, n_classes):
    """Reads, checks, splits and reports the data; returns the sets, the
    class names and a line per file left out ('PATH: why').

    The validation split is drawn from the readable images. A training set
    smaller than the batch lowers args.batchsize to its size.
    """
    if not 0 < args.val_ratio < 1:
        raise UserError('--val-ratio must lie strictly between 0 and 1, got '
                        '{:g}'.format(args.val_ratio))
    train = read_dataset(args.train, args.root)
    pairs = train.pairs
    if len({label for _, label in pairs}) < 2:
        raise UserError('{} has a single class; fine-tuning a classifier '
                        'needs at least two'.format(args.train))
    class_names = train.class_names
    if class_names is None:  # a list file: --labels, or the label numbers
        class_names = (read_labels(args.labels) if args.labels
                       else [str(i) for i in range(n_classes)])
    elif args.labels:
        raise UserError('--labels names the classes of a list file; the '
                        'classes of {} are its folder names'.format(
                            args.train))
    if len(class_names) != n_classes:
        raise UserError('{} has {} classes but the model has {}: run '
                        'convert_caffe_model.py --classes {} first'.format(
                            args.labels if train.class_names is None
                            else args.train, len(class_names), n_classes,
                            len(class_names)))
    check_labels(pairs, n_classes, args.train)
    val = read_dataset(args.val, args.root, class_names) if args.val else None
    if val is not None:
        check_labels(val.pairs, n_classes, args.val)
    show = not args.no_progress
    given = {label for _, label in pairs}
    pairs, bad_train = drop_unreadable(pairs, args.max_pixels, show,
                                       'checking training images')
    if val is not None:
        val_pairs, bad_val = drop_unreadable(val.pairs, args.max_pixels, show,
                                             'checking validation images')
    else:
        pairs, val_pairs = stratified_split(pairs, args.val_ratio, args.seed)
        bad_val = []
    print_report('training set', pairs, class_names, bad_train,
                 train.skipped)
    print_report('validation set', val_pairs, class_names, bad_val,
                 val.skipped if val is not None else None)
    # As a class folder without images is refused: the model could never
    # predict a class it saw no image of.
    kept = {label for _, label in pairs}
    if val is None:  # split from the readable images
        kept |= {label for _, label in val_pairs}
    lost = sorted(given - kept)
    if lost and pairs:
        raise UserError('class {} has images but none of them could be used '
                        '(each is listed above): the model could never '
                        'predict it; replace them, or remove the class'
                        .format(class_names[lost[0]]))
    if pairs and not val_pairs and val is None:
        raise UserError('no class of {} has two readable images, so none can '
                        'be held out for validation: add images, or give '
                        '--val'.format(args.train))
    if not pairs or not val_pairs:
        raise UserError('no readable images left in the {} set'.format(
            'training' if not pairs else 'validation'))
    for line in data_warnings(pairs, val_pairs, class_names,
                              args.batchsize):
        print('warning: {}'.format(line))
    args.batchsize = min(args.batchsize, len(pairs))
    return pairs, val_pairs, class_names, bad_train + bad_val


def check_out(args):
    """Makes --out, checks that it and --output's folder can be written,
    that neither lies in a data folder, that --output replaces nothing but
    a model, and removes what a killed earlier session of this run left
    half-written; returns --output's path and what of a run --out holds
    (snapshots, log, best model: check_new_run decides)."""
    out = args.out
    if os.path.exists(out) and not os.path.isdir(out):
        raise UserError('--out {} is a file, not a folder'.format(out))
    output = args.output or os.path.join(out, 'tuned_googlenet.model')
    # Before --out is made: nothing is created inside the data.
    folders = data_folders(args)
    check_outside(out, folders, '--out')
    check_outside(output, folders, '--output')
    try:
        os.makedirs(out, exist_ok=True)
    except OSError as e:
        raise UserError('cannot create --out {}: {}'.format(
            out, e.strerror or e))
    check_writable(out, '--out')
    if os.path.isdir(output):
        raise UserError('--output {} is a folder; give a file name'.format(
            output))
    check_writable(os.path.dirname(os.path.abspath(output)), '--output')
    check_output_path(output, [args.model], '--output',
                      kind=tuned_googlenet.MODEL_KIND)
    taken = [name for name in os.listdir(out)
             if SNAPSHOT_PATTERN.match(name) or name == 'log'
             or os.path.join(out, name) == output]
    for name in os.listdir(out):
        if STRAY_PATTERN.match(name):
            path = os.path.join(out, name)
            if os.path.isdir(path):
                shutil.rmtree(path, ignore_errors=True)
            else:
                os.unlink(path)
            print('removed {}, left by an interrupted run'.format(path))
    return output, taken


def snapshot_to_resume(args, config, taken):
    """The snapshot --resume names (checked against config), or None for a
    new run; UserError when --out holds another run.

    A folder that holds this very run (its run.json is config) stopped
    before its first snapshot has nothing to resume: with or without
    --resume latest, the run starts again from the beginning, which loses
    nothing a resume could have kept.
    """
    out = args.out
    if not snapshot_files(out) and (taken or args.resume == 'latest'):
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
        if taken:
            raise UserError('{} holds another training run ({}): continue '
                            'it with --resume latest, or pass another --out'
                            .format(out, ', '.join(sorted(taken)[:3])))
        return None
    snapshot = latest_snapshot(out) if args.resume == 'latest' else \
        args.resume
    check_snapshot(snapshot, config)
    return snapshot


def data_folders(args):
    """The folders training reads images from: a --train or --val folder,
    and the --root given for a list file."""
    data = [path for path in (args.train, args.val) if path]
    folders = [path for path in data if os.path.isdir(path)]
    if args.root is not None and len(folders) < len(data):
        folders.append(args.root)
    return folders


def check_disk_space(out, needed):
    free = shutil.disk_usage(out).free
    if free < needed:
        raise UserError('not enough disk space in {}: the run needs about '
                        '{:.0f} MB (snapshots, the model, the feature cache) '
                        'and {:.0f} MB are free; free some, or lower '
                        '--keep-snapshots'.format(out, needed / 1e6,
                                                  free / 1e6))


def run_config(args, freeze_until, class_names, pairs, val_pairs,
               processes=1):
    """What makes a run this run: the RUN_KEYS (class names, a digest of
    the model file, a fingerprint of the training and validation images:
    path, size, modification time, label) and, for the record, every
    argument."""
    data = hashlib.sha1()
    for part in (pairs, val_pairs):
        update_data_digest(data, part)
        data.update(b'\1')
    config = {'class_names': list(class_names), 'data': data.hexdigest(),
              'model': file_sha1(args.model).hexdigest(),
              'freeze_until': freeze_until, 'processes': processes}
    for key in RUN_KEYS:
        config.setdefault(key, getattr(args, key, None))
    config['arguments'] = {key: value for key, value in vars(args).items()}
    return config


def snapshot_bytes(model):
    """A snapshot's size: each trained parameter and its momentum."""
    return 2 * sum(param.array.nbytes for name, param in model.namedparams()
                   if name.split('/')[1] not in model.frozen_stages)


class Session:
    """What a training run is made of, ready to run (tests reach inside).

    Under MPI (comm a googlenet_mpi.Distributed) rank 0 alone checks --out,
    reads and checks the data, and writes run.json and every later file of
    the run; the other ranks get the checked data from it, compute their
    share of the feature cache and train on their shard of the examples.
    """

    def __init__(self, args, comm=Single()):
        self.args = args
        self.comm = comm
        self.aux = args.aux_heads == 'on'
        self.model = None
        self.unreadable = []  # rank 0's, for the report
        (self.output, pairs, val_pairs, self.class_names, self.config,
         self.snapshot, args.batchsize) = on_root(comm, self._prepare)
        self.freeze_until = self.config['freeze_until']
        if self.model is None:  # another rank than 0
            self.model, _ = tuned_googlenet.load_model(args.model,
                                                       self.freeze_until)
        self.model.aux_heads = self.aux
        self.device = tuned_googlenet.get_device(args.device, comm)
        self.model.to_device(self.device)
        if args.class_weight == 'balanced':
            weight = balanced_class_weight([label for _, label in pairs],
                                           self.model.n_classes)
            print('class weights: ' + ', '.join('{} {:.3f}'.format(name, w)
                  for name, w in zip(self.class_names, weight)))
            self.model.class_weight = self.device.send(weight)
        if args.cache_features:
            print('--cache-features: the trunk runs once per image, so the '
                  'random 224 crop cannot apply; training picks the centre '
                  'crop or its mirror at random')
            self.train_set = self._cached(pairs, 2, 'train', True)
            self.val_set = self._cached(val_pairs, 1, 'val', False)
        else:
            self.train_set = ImageDataset(pairs, True, args.seed,
                                          args.max_pixels)
            self.val_set = ImageDataset(val_pairs, False, args.seed,
                                        args.max_pixels)
        train_set, val_set = self.train_set, self.val_set
        if comm.size > 1:
            from chainermn.datasets import scatter_index
            train_set = Shard(train_set, *scatter_index(
                len(train_set), comm.chainermn))
            # Each image once: ExactEvaluator sums over unequal shards.
            val_set = Shard(val_set, *scatter_index(
                len(val_set), comm.chainermn, force_equal_length=False))
        self.trainer = build_trainer(args, self.model, self.output,
                                     self.class_names, train_set, val_set,
                                     self.config, self.snapshot, comm)

    def _prepare(self):
        """Rank 0's part: checks, data, run.json; what the others need.
        A refusal removes the --out folder it made, left empty."""
        made = not os.path.exists(self.args.out)
        try:
            return self._checked(*check_out(self.args))
        except BaseException:
            if made:
                with contextlib.suppress(OSError):
                    os.rmdir(self.args.out)  # only if still empty
            raise

    def _checked(self, output, taken):
        """_prepare's checks after check_out's (output, taken)."""
        args = self.args
        freeze_until = tuned_googlenet.parse_freeze_until(args.freeze_until)
        if args.cache_features and freeze_until != 'inc5b':
            raise UserError('--cache-features needs the whole trunk frozen '
                            '(--freeze-until inc5b)')
        if not os.path.exists(args.model):
            raise UserError('no converted model at {}: run '
                            'convert_caffe_model.py --classes N first (N: the '
                            'number of classes of --train), or pass --model'
                            .format(args.model))
        self.model, _ = tuned_googlenet.load_model(args.model, freeze_until)
        pairs, val_pairs, class_names, self.unreadable = prepare_data(
            args, self.model.n_classes)
        config = run_config(args, freeze_until, class_names, pairs,
                            val_pairs, self.comm.size)
        snapshot = snapshot_to_resume(args, config, taken)
        cache = (2 * len(pairs) + len(val_pairs)) * feature_size(
            self.aux) * 4 if args.cache_features else 0
        check_disk_space(args.out, (args.keep_snapshots + 1) * snapshot_bytes(
            self.model) + 2 * os.path.getsize(args.model) + cache)
        with atomic_write(os.path.join(args.out, RUN_CONFIG), 'w') as f:
            json.dump(config, f, indent=1)
        if args.cache_features:
            os.makedirs(os.path.join(args.out, 'features'), exist_ok=True)
        return (output, pairs, val_pairs, class_names, config, snapshot,
                args.batchsize)

    def _cached(self, pairs, views, name, train):
        features = cached_features(
            self.model, pairs, views,
            os.path.join(self.args.out, 'features', name + '.npy'),
            self.args.val_batchsize, self.device, self.args.loaderjob,
            self.args.loader_timeout, self.args.max_pixels,
            not self.args.no_progress, self.aux, self.comm)
        return CachedFeatures(features, [label for _, label in pairs], train,
                              self.args.seed)

    def run(self):
        """Trains, then evaluates the best model and keeps the report."""
        trainer = self.trainer
        trainer.run(show_loop_exception_msg=False)
        if self.comm.rank:
            return None  # rank 0 reports
        log = trainer.get_extension('LogReport').log
        if trainer.updater.epoch < self.args.epoch:
            print('stopped early at epoch {}: validation accuracy has not '
                  'improved for {} epoch{} (--patience)'.format(
                      trainer.updater.epoch, self.args.patience,
                      '' if self.args.patience == 1 else 's'))
        best, _ = tuned_googlenet.load_model(self.output, self.freeze_until)
        best.to_device(self.device)
        confusion = validate(best, self.val_set, len(self.class_names),
                             self.args.val_batchsize, self.device)
        report = class_report(confusion, self.class_names)
        report['best_epoch'], report['best_validation_accuracy'] = \
            best_epoch(log)
        report['unreadable'] = self.unreadable
        print(report_text(report))
        out = self.args.out
        write_report(report, os.path.join(out, 'report.json'),
                     os.path.join(out, 'report.txt'))
        plot_confusion(confusion, self.class_names,
                       os.path.join(out, 'confusion.png'),
                       title='validation confusion matrix')
        plot_confusion(confusion, self.class_names,
                       os.path.join(out, 'confusion_normalized.png'),
                       normalized=True, title='validation confusion matrix')
        print('best model: {}'.format(self.output))
        return confusion


def train(args, comm=Single()):
    """A run as the command line gives it; failures of the disk become
    one-line UserErrors."""
    try:
        # A diverging loss is reported by StopOnNonFinite in one
        # line, not by numpy's overflow warnings on the way there.
        with numpy.errstate(over='ignore', invalid='ignore'):
            Session(args, comm).run()
    except BrokenPipeError:
        raise  # stdout's reader went away: report_errors stops quietly
    except OSError as e:
        raise UserError('cannot write {}: {}; once that is fixed, continue '
                        'with --resume latest'.format(
                            e.filename or args.out, e.strerror or e))


# --- Ctrl-C -----------------------------------------------------------------

_interrupted = []


def _on_sigint(signum, frame):
    # Loader workers forked before Chainer makes them ignore SIGINT run
    # this too: the main process reports the interrupt, not each of them.
    if os.getpid() == _interrupted[0]:
        _interrupted.append(signum)
        raise KeyboardInterrupt


@training.make_extension(trigger=(1, 'iteration'),
                         priority=training.PRIORITY_WRITER + 2)
def stop_if_interrupted(trainer):
    """Re-raises a Ctrl-C that Python swallowed (a KeyboardInterrupt raised
    inside a finalizer or a callback is printed and dropped)."""
    if len(_interrupted) > 1:
        raise KeyboardInterrupt


def _unraisable(unraisable):
    # A Ctrl-C that Python swallowed (printing "Exception ignored") is
    # recorded in _interrupted and reported once, as "interrupted".
    if not issubclass(unraisable.exc_type, KeyboardInterrupt):
        sys.__unraisablehook__(unraisable)


def main(argv=None):
    args = build_parser().parse_args(argv)
    _interrupted[:] = [os.getpid()]
    previous = signal.signal(signal.SIGINT, _on_sigint)
    sys.unraisablehook = _unraisable
    try:
        code = run_main(train, args)
    finally:
        signal.signal(signal.SIGINT, previous)
        sys.unraisablehook = sys.__unraisablehook__
    if len(_interrupted) > 1 and code != 130:
        print('interrupted', file=sys.stderr)
        code = 130
    return code


# --- options ----------------------------------------------------------------

def snapshot_interval(text):
    """An argparse type: 'N' (iterations), 'N epoch' or 'N iteration', as
    Chainer's triggers take them."""
    match = re.fullmatch(r'\s*(\d+)\s*(epochs?|iterations?)?\s*', text)
    if not match or int(match.group(1)) < 1:
        raise argparse.ArgumentTypeError(
            'expected "N epoch" or "N iteration" with N > 0, got {!r}'.format(
                text))
    unit = match.group(2) or 'iteration'
    return int(match.group(1)), unit.rstrip('s')


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--train', required=True,
                        help='folder of class folders, or a list file '
                        '(required: no default)')
    parser.add_argument('--val', help='validation data (default: hold out '
                        '--val-ratio of --train)')
    parser.add_argument('--val-ratio', type=float, default=0.1,
                        help='share of each class held out when there is '
                        'no --val, strictly between 0 and 1 (default: '
                        '%(default)s)')
    parser.add_argument('--labels', help='class names of a list file, one '
                        'per line, in label order (default: the label '
                        'numbers)')
    parser.add_argument('--max-pixels', type=positive_int,
                        default=DEFAULT_MAX_PIXELS,
                        help='refuse images of more pixels (width x height;'
                        ' default: %(default)s)')
    parser.add_argument('--seed', type=random_seed, default=0,
                        help='seeds the validation split, the shuffle, the '
                        'crops and mirrors, and dropout (default: '
                        '%(default)s)')
    parser.add_argument('--root', default=None,
                        help='paths in list files are relative to this '
                        '(default: the list file\'s folder)')
    parser.add_argument('--model', default='tuned_googlenet.model',
                        help='the starting model, made by convert_caffe_'
                        'model.py --classes N (default: %(default)s)')
    parser.add_argument('--output', default=None,
                        help='the best model (default: OUT/'
                        'tuned_googlenet.model)')
    parser.add_argument('--out', '-o', default='result',
                        help='the run\'s folder: configuration, log, plots, '
                        'snapshots, report (default: %(default)s)')
    parser.add_argument('--batchsize', '-B', type=positive_int, default=32,
                        help='images per training step (default: '
                        '%(default)s)')
    parser.add_argument('--val-batchsize', type=positive_int, default=32,
                        help='images per validation batch (default: '
                        '%(default)s)')
    parser.add_argument('--epoch', '-E', type=positive_int, default=10,
                        help='passes over the training set (default: '
                        '%(default)s)')
    parser.add_argument('--lr', type=positive_float, default=0.01,
                        help='learning rate (default: %(default)s)')
    parser.add_argument('--lr-policy', choices=('fixed', 'step', 'poly'),
                        default='fixed', help='fixed; step: times --gamma '
                        'every --lr-step epochs; poly: lr * (1 - iteration / '
                        'iterations) ** --power, as Caffe\'s GoogLeNet '
                        'quick_solver (default: %(default)s)')
    parser.add_argument('--lr-step', type=positive_int, default=5,
                        help='epochs between steps of --lr-policy step '
                        '(default: %(default)s)')
    parser.add_argument('--gamma', type=positive_float, default=0.1,
                        help='factor of each step of --lr-policy step '
                        '(default: %(default)s)')
    parser.add_argument('--power', type=positive_float, default=0.5,
                        help='exponent of --lr-policy poly (default: '
                        '%(default)s)')
    parser.add_argument('--momentum', type=unit_fraction, default=0.9,
                        help='MomentumSGD\'s momentum (default: %(default)s)')
    parser.add_argument('--weight-decay', type=non_negative_float,
                        default=2e-4,
                        help='L2 weight decay (default: %(default)s)')
    parser.add_argument('--class-weight', choices=('none', 'balanced'),
                        default='none', help='balanced: weight the loss by '
                        'inverse class frequency in the training set '
                        '(default: %(default)s)')
    parser.add_argument('--patience', type=positive_int, default=None,
                        help='stop when validation accuracy has not improved '
                        'for N epochs (default: run all --epoch)')
    parser.add_argument('--freeze-until', default=tuned_googlenet
                        .DEFAULT_FREEZE_UNTIL,
                        help='last frozen trunk layer, or none (default: '
                        '%(default)s: only the heads train)')
    parser.add_argument('--cache-features', action='store_true',
                        help='compute the frozen trunk once per image '
                        '(default: off)')
    parser.add_argument('--aux-heads', choices=('on', 'off'), default='on',
                        help='off: train loss3 alone and cache pool5 only '
                        '(4 KB per view instead of 70 KB); with the trunk '
                        'frozen the aux heads do not change loss3\'s '
                        'classifier (default: %(default)s, the original\'s '
                        'three heads)')
    parser.add_argument('--resume', help='a snapshot of this run to '
                        'continue from, or "latest" for the newest in --out '
                        '(default: a new run)')
    parser.add_argument('--snapshot-interval', type=snapshot_interval,
                        default=(1, 'epoch'), metavar='N [epoch|iteration]',
                        help='how often to snapshot: "N epoch" or "N '
                        'iteration" (a bare N counts iterations; default: '
                        '1 epoch)')
    parser.add_argument('--keep-snapshots', type=positive_int, default=2,
                        help='newest snapshots kept, the older deleted '
                        '(default: %(default)s)')
    parser.add_argument('--loaderjob', '-j', type=non_negative_int,
                        default=2,
                        help='image-decoding processes, 0 for none '
                        '(default: %(default)s)')
    parser.add_argument('--loader-timeout', type=positive_float, default=60,
                        help='seconds to wait for a batch from the loader '
                        'processes before stopping (default: %(default)s)')
    parser.add_argument('--device', '-d', default='@numpy',
                        help='Chainer device spec, e.g. @numpy (the CPU) or '
                        '@cupy:0 (default: %(default)s)')
    parser.add_argument('--no-progress', action='store_true',
                        help='no progress bars (default: shown on a '
                        'terminal only, so logs get no control codes)')
    add_option(parser)
    return parser


if __name__ == '__main__':
    sys.exit(main())
