"""tuned_googlenet: the Chain, its graph cut and its heads."""
import chainer.functions as F
import numpy
import pytest

import tuned_googlenet
from googlenet_chainer import caffemodel, fast_ops, model_file
from googlenet_chainer.compat import chainer
from googlenet_chainer.training import optimizers

from helpers import SILENT, params
from image_fixtures import random_images
from numeric import PATH_TERMS, assert_close, rtol_for


def test_frozen_trunk_stays_while_every_head_trains(caffemodels, tmp_path,
                                                    rng):
    out = str(tmp_path / 'five.model')
    caffemodel.convert(caffemodels['v1'], out, n_classes=5, **SILENT)
    model, _ = model_file.load_model(out)
    optimizer = optimizers.make_optimizer(model)
    before = {k: v.copy() for k, v in params(model).items()}
    x = rng.uniform(-100, 100, (2, 3, 224, 224)).astype(numpy.float32)
    t = numpy.array([1, 3], dtype=numpy.int32)
    for _ in range(3):
        model.cleargrads()
        loss = model(x, t)
        loss.backward()
        for name, p in model.namedparams():
            if name.split('/')[1] in tuned_googlenet.TRUNK:
                assert p.grad is None, name  # the graph was cut
        optimizer.update()
    after = params(model)
    for name in before:
        changed = not numpy.array_equal(before[name], after[name])
        assert changed == (name.split('/')[1] in tuned_googlenet.HEADS), name


def test_the_cut_moves_with_freeze_until(model_1000, rng):
    model, _ = model_file.load_model(model_1000, freeze_until='inc4e')
    x = rng.uniform(-100, 100, (1, 3, 224, 224)).astype(numpy.float32)
    model.cleargrads()
    model(x, numpy.array([7], dtype=numpy.int32)).backward()
    assert model.inc5a.conv1.W.grad is not None
    assert model.inc4e.conv1.W.grad is None


def test_training_loss_reports_every_part(model_1000, rng):
    model, _ = model_file.load_model(model_1000)
    x = rng.uniform(-100, 100, (2, 3, 224, 224)).astype(numpy.float32)
    reporter = chainer.Reporter()
    reporter.add_observer('main', model)
    observation = {}
    with reporter.scope(observation):
        with chainer.using_config('train', False):
            loss = model(x, numpy.array([1, 2], dtype=numpy.int32))
    parts = {k.split('/')[-1]: float(v.array) for k, v in observation.items()}
    assert set(parts) == {'loss', 'loss1', 'loss2', 'loss3', 'accuracy'}
    assert parts['loss'] == pytest.approx(
        (parts['loss1'] + parts['loss2']) * 0.3 + parts['loss3'],
        rel=rtol_for(3))
    assert float(loss.array) == pytest.approx(parts['loss'])


def test_n_classes_defaults_to_the_constant_at_the_top():
    assert tuned_googlenet.GoogLeNet().n_classes == tuned_googlenet.N_CLASSES


def test_features_match_and_the_cut_still_trains(model_1000, rng):
    model, _ = model_file.load_model(model_1000, freeze_until='inc4e')
    x = random_images(rng, 3, 224, 224)
    results = []
    for flag in (True, False):
        with fast_ops.enabled(flag):
            model.cleargrads()
            features = model.features(x)
            F.sum(features[2]).backward()
            results.append(([f.array.copy() for f in features],
                            model.inc5a.conv3.W.grad.copy()))
            assert model.inc4e.conv3.W.grad is None
    for fast, standard in zip(results[0][0], results[1][0]):
        assert_close(fast, standard)
    # The weight gradient sums products along the path to pool5 and back.
    assert_close(results[0][1], results[1][1], terms=2 * PATH_TERMS)
