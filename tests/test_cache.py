"""The out-of-core feature cache: resumed after a stop, damage recomputed,
--aux-heads off."""
import json
import os
import shutil

import numpy
import pytest

from chainer_compat import chainer

import googlenet_data
import googlenet_predict
import train_googlenet
import tuned_googlenet
from image_fixtures import QUIET

CPU = chainer.get_device('@numpy')


@pytest.fixture(scope='module')
def four(dataset):
    """Four images: two blocks of two."""
    return googlenet_data.read_folder(dataset).pairs[::6]


@pytest.fixture(scope='module')
def model(model_3):
    return tuned_googlenet.load_model(model_3)[0]


@pytest.fixture(scope='module')
def reference(four, model, tmp_path_factory):
    """(folder of a complete cache c.npy and c.json, its array)."""
    folder = tmp_path_factory.mktemp('cache')
    return folder, compute(model, four, folder / 'c.npy')


class CountingModel:
    """The model, counting its forward passes; raises KeyboardInterrupt on
    pass number stop_at (a Ctrl-C in the middle of the cache)."""

    def __init__(self, model, stop_at=None):
        self.model = model
        self.stop_at = stop_at
        self.passes = 0

    def namedparams(self):
        return self.model.namedparams()

    def features(self, x, aux=True):
        self.passes += 1
        if self.passes == self.stop_at:
            raise KeyboardInterrupt
        return self.model.features(x, aux=aux)


def compute(model, pairs, path):
    features = train_googlenet.cached_features(
        model, pairs, 1, str(path), 2, CPU, 0, 60, show=False)
    return numpy.array(features)


def test_a_stopped_cache_resumes_from_its_complete_blocks(
        four, model, reference, tmp_path, capsys):
    stopped = CountingModel(model, stop_at=2)
    with pytest.raises(KeyboardInterrupt):
        compute(stopped, four, tmp_path / 'b.npy')
    with open(tmp_path / 'b.json') as f:
        index = json.load(f)
    assert index['rows_complete'] == 2 and index['blocks'][1] is None
    capsys.readouterr()
    again = CountingModel(model)
    assert numpy.array_equal(compute(again, four, tmp_path / 'b.npy'),
                             reference[1])
    assert again.passes == 1  # the second block only
    assert '(2 done before)' in capsys.readouterr().out
    # Complete and unchanged: read back, memory-mapped, nothing computed.
    reread = CountingModel(model)
    mapped = train_googlenet.cached_features(
        reread, four, 1, str(tmp_path / 'b.npy'), 2, CPU, 0, 60, show=False)
    assert isinstance(mapped, numpy.memmap) and reread.passes == 0
    assert capsys.readouterr().out == ''


def _truncate(path):
    with open(path, 'r+b') as f:
        f.truncate(os.path.getsize(path) - 100)


def _empty(path):
    open(path, 'wb').close()


def _overwrite_row_3(path):
    array = numpy.load(path, mmap_mode='r')
    with open(path, 'r+b') as f:
        f.seek(array.offset + 3 * array[0].nbytes + 40)
        f.write(b'\x7f' * 16)


def _fifo(path):
    os.unlink(path)
    os.mkfifo(path)  # opened, it would wait for a writer forever


@pytest.mark.parametrize('damage, file, note, passes', [
    (_truncate, 'c.npy', 'bytes where', 2),
    (_fifo, 'c.npy', 'c.npy: not a regular file: recomputing it', 2),
    (_empty, 'c.npy', 'damaged (not a .npy file', 2),
    (_empty, 'c.json', 'damaged index', 2),
    (os.unlink, 'c.npy', 'c.npy: missing: recomputing it', 2),
    (_overwrite_row_3, 'c.npy', '1 complete block changed on disk', 1)])
def test_a_damaged_cache_is_recomputed_with_a_note(
        damage, file, note, passes, four, model, reference, tmp_path,
        capsys):
    for name in ('c.npy', 'c.json'):
        shutil.copy(reference[0] / name, tmp_path / name)
    damage(str(tmp_path / file))
    capsys.readouterr()
    counting = CountingModel(model)
    assert numpy.array_equal(compute(counting, four, tmp_path / 'c.npy'),
                             reference[1])
    printed = capsys.readouterr().out
    assert note in printed and 'Traceback' not in printed, printed
    assert counting.passes == passes


def test_aux_heads_off_trains_loss3_on_a_pool5_cache(
        dataset, model_3, tmp_path, capsys):
    out = tmp_path / 'r'
    assert train_googlenet.main([
        '--train', dataset, '--model', model_3, '--out', str(out),
        '--cache-features', '--aux-heads', 'off', '--epoch', '2', '-B', '4',
        '--val-ratio', '0.25', '--lr', '1e-3'] + QUIET) == 0
    features = numpy.load(out / 'features' / 'train.npy', mmap_mode='r')
    assert features.shape == (18, 2, 1024)  # 4 KB per view
    with open(out / 'log') as f:
        log = json.load(f)
    assert 'main/loss1' not in log[-1]
    assert log[-1]['main/loss'] == log[-1]['main/loss3']
    start, _ = tuned_googlenet.load_model(model_3)
    tuned, _ = tuned_googlenet.load_model(str(out / 'tuned_googlenet.model'))
    for name in tuned_googlenet.HEADS:
        same = numpy.array_equal(getattr(start, name).W.array,
                                 getattr(tuned, name).W.array)
        assert same == (name in tuned_googlenet.AUX_HEADS), name
    capsys.readouterr()
    assert googlenet_predict.main(['--model', str(out / 'tuned_googlenet.'
                                                      'model'),
                                   os.path.join(dataset, 'red', '0.png')]) \
        == 0
    assert capsys.readouterr().out.startswith(
        os.path.join(dataset, 'red', '0.png'))
