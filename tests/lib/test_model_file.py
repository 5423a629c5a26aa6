"""model_file: loading a model this project wrote."""
import json
import shutil

import numpy
import pytest

from googlenet_chainer import model_file
from googlenet_chainer.errors import UserError

from helpers import sha1_of


def test_loading_takes_the_files_arrays_and_no_gradients(model_1000):
    model, _ = model_file.load_model(model_1000)
    with numpy.load(model_1000) as npz:
        # Every parameter, and what it was converted from.
        assert len(npz.files) == len(list(model.params())) + 1
        assert model.source == json.loads(str(npz['source']))
        assert model_file.model_source(model_1000) == model.source
        assert model.source['sha1'] == sha1_of(model.source['caffemodel'])
        for name, param in model.namedparams():
            assert numpy.array_equal(param.array, npz[name[1:]]), name
            assert param.array.flags.writeable and param.grad is None


@pytest.mark.parametrize('save', [numpy.savez, numpy.savez_compressed])
def test_read_npz_gives_what_numpy_load_gives(tmp_path, rng, save):
    path = str(tmp_path / 'a.npz')
    arrays = {'a/W': rng.randn(3, 4, 5).astype(numpy.float32),
              'b': numpy.arange(7, dtype=numpy.int64), 'empty': numpy.ones(0),
              'class_names': numpy.array(['cat', 'dog house'])}
    save(path, **arrays)
    got = model_file.read_npz(path)
    assert sorted(got) == sorted(arrays)
    for name, array in arrays.items():
        assert got[name].dtype == array.dtype, name
        assert numpy.array_equal(got[name], array), name


def test_a_caffemodel_is_named_as_one_and_sent_to_the_converter(
        tmp_path, caffemodels):
    renamed = str(tmp_path / 'weights.bin')  # told by its first bytes
    shutil.copyfile(caffemodels['v2'], renamed)
    for path in (caffemodels['v1'], renamed):
        with pytest.raises(UserError) as e:
            model_file.load_model(path)
        assert str(e.value) == (
            '{0} is a caffemodel (Caffe\'s weights), not a model this '
            'project wrote: convert it first with convert_caffe_model.py '
            '--caffemodel {0}, or classify with googlenet_predict.py '
            '--caffemodel {0}'.format(path))
    text = tmp_path / 'notes.txt'
    text.write_text('not a model')
    with pytest.raises(UserError, match='cannot read model file .*: not a '
                       'model written by this project'):
        model_file.load_model(str(text))


def test_a_truncated_or_incomplete_model_is_refused(tmp_path, model_1000):
    with open(model_1000, 'rb') as f:
        data = f.read()
    cut = tmp_path / 'cut.model'
    cut.write_bytes(data[:len(data) // 2] + data[-2000:])
    with pytest.raises(UserError, match='cannot read model file'):
        model_file.load_model(str(cut))
    # One byte changed inside a weight: finite, the right size, wrong.
    flipped = bytearray(data)
    flipped[len(data) // 2] ^= 0x01
    damaged = tmp_path / 'damaged.model'
    damaged.write_bytes(bytes(flipped))
    with pytest.raises(UserError, match='bad CRC-32, the file is damaged'):
        model_file.load_model(str(damaged))
    with numpy.load(model_1000) as npz:
        arrays = {name: npz[name] for name in npz.files}
    for edit in ('missing', 'shape'):
        edited = dict(arrays)
        if edit == 'missing':
            del edited['inc4c/conv3/W']
        else:
            edited['inc4c/conv3/W'] = edited['inc4c/conv3/W'][:, :-1]
        path = str(tmp_path / (edit + '.model'))
        with open(path, 'wb') as f:
            numpy.savez(f, **edited)
        with pytest.raises(UserError, match='cannot read model file'):
            model_file.load_model(path)
