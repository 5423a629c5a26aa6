"""caffemodel: the weights copied from Caffe's files."""
import numpy
import pytest

from googlenet_chainer import caffemodel, model_file
from googlenet_chainer.compat import chainer

import caffe_fixtures
from helpers import SILENT, params
from numeric import assert_probabilities_close, rtol_for


def test_every_array_lands_bit_exactly(model_1000, weights):
    model, names = model_file.load_model(model_1000)
    assert names is None
    ours = params(model)
    expected = params(caffe_fixtures.chainer_port(weights))
    assert sorted(ours) == sorted(expected)
    assert len(ours) == 2 * 64
    assert sum(a.size for a in ours.values()) == 13378280
    for name, array in expected.items():
        assert ours[name].dtype == numpy.float32
        assert numpy.array_equal(ours[name], array), name


def test_v1_and_v2_give_identical_models(tmp_path, caffemodels, model_1000):
    out = str(tmp_path / 'v2.model')
    caffemodel.convert(caffemodels['v2'], out, **SILENT)
    a = params(model_file.load_model(model_1000)[0])
    b = params(model_file.load_model(out)[0])
    assert a.keys() == b.keys()
    for name in a:
        assert numpy.array_equal(a[name], b[name]), name


def test_probabilities_match_chainers_port(model_1000, weights, rng):
    model, _ = model_file.load_model(model_1000)
    x = rng.uniform(-120, 130, (2, 3, 224, 224)).astype(numpy.float32)
    ours = model.predict(x)
    net = caffe_fixtures.chainer_port(weights)
    with chainer.no_backprop_mode(), chainer.using_config('train', False):
        theirs = net.forward(x, layers=['prob'])['prob'].array
    assert ours.shape == (2, 1000)
    numpy.testing.assert_allclose(ours.sum(axis=1), 1, rtol=rtol_for(1000))
    assert ours.max() > 0.01  # not a flat distribution
    assert_probabilities_close(ours, theirs)


def test_failed_save_leaves_old_model_in_place(tmp_path, caffemodels,
                                               monkeypatch):
    out = tmp_path / 'keep.model'
    caffemodel.convert(caffemodels['v2'], str(out), **SILENT)
    old = out.read_bytes()

    def broken_savez(f, **arrays):
        f.write(b'partial')
        raise OSError('disk full')
    monkeypatch.setattr(numpy, 'savez', broken_savez)
    with pytest.raises(OSError):
        caffemodel.convert(caffemodels['v1'], str(out), **SILENT)
    assert out.read_bytes() == old
    assert sorted(p.name for p in tmp_path.iterdir()) == ['keep.model']
