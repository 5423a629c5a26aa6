"""-d @cupy:0 against the CPU: prediction, evaluation and the feature cache
give the CPU's results to float32 rounding, and training runs on the GPU
and saves a model that predicts there as on the CPU. Run only where CuPy
sees a GPU (pytest -m gpu runs these alone); skipped elsewhere, saying why.

Training itself is not compared number for number: on a GPU, dropout's
masks come from CuPy's generator, not numpy's. The tolerances assume that
cuBLAS computes float32 GEMMs in float32, as CuPy has it by default;
CUPY_TF32=1 (10-bit mantissas) is far outside them.
"""
import json

import numpy
import pytest

import evaluate_googlenet
from googlenet_chainer import model_file
from googlenet_chainer.compat import chainer
from googlenet_chainer.images import open_image, preprocess

import run_steps
from helpers import (CROPS, FIVE, SAMPLE_PHOTO, needs_gpu,
                     photo_probabilities, run_training)
from image_fixtures import QUIET, make_images
from numeric import assert_close, assert_probabilities_close

pytestmark = needs_gpu

GPU = ['-d', '@cupy:0']


def test_prediction(model_1000):
    for options in CROPS.values():
        assert_probabilities_close(
            photo_probabilities(model_1000, *GPU, *options),
            photo_probabilities(model_1000, *options))


def test_evaluation(five_class_model, tmp_path, capsys, rng):
    data = str(tmp_path / 'test')
    make_images(data, {'cat': (200, 60, 40), 'ant': (40, 60, 200),
                       'eel': (60, 200, 40)}, 2, rng)
    reports = []
    for device in ([], GPU):
        code = evaluate_googlenet.main(['--model', five_class_model,
                                        '--data', data, '--json', *device])
        out, err = capsys.readouterr()
        assert code == 0, err
        reports.append(json.loads(out))
    cpu, gpu = reports
    for key in ('images', 'top1', 'top5', 'confusion', 'classes'):
        assert gpu[key] == cpu[key], key
    assert [row['class'] for row in cpu['classes']] == FIVE
    assert len(gpu['misclassified']) == len(cpu['misclassified'])
    for on_gpu, on_cpu in zip(gpu['misclassified'], cpu['misclassified']):
        assert [p['class'] for p in on_gpu['predictions']] == [
            p['class'] for p in on_cpu['predictions']]
        assert_probabilities_close(
            [p['probability'] for p in on_gpu['predictions']],
            [p['probability'] for p in on_cpu['predictions']])


def test_feature_cache(dataset, model_3, tmp_path):
    def cached(name, *device):
        train_set = run_steps.datasets_of([
            '--train', dataset, '--model', model_3, '--out',
            str(tmp_path / name), '--cache-features', *device, *QUIET])[4]
        return numpy.array(train_set.features)
    on_cpu = cached('cpu')
    assert_close(cached('gpu', *GPU), on_cpu)


@pytest.mark.parametrize('cache', [[], ['--cache-features']])
def test_training(dataset, model_3, tmp_path, cache):
    out = tmp_path / 'result'
    assert run_training('--train', dataset, '--model', model_3, '--out',
                        str(out), '--epoch', '1', '-B', '4', *cache,
                        *GPU) == 0
    with open(str(out / 'log')) as f:
        log = json.load(f)
    assert log and all(numpy.isfinite(entry['main/loss']) for entry in log)
    model, _ = model_file.load_model(str(out / 'tuned_googlenet.model'))
    x = preprocess(open_image(SAMPLE_PHOTO))[None]
    on_cpu = model.predict(x)
    device = chainer.get_device('@cupy:0')
    model.to_device(device)
    on_gpu = chainer.backend.CpuDevice().send(model.predict(device.send(x)))
    assert_probabilities_close(on_gpu, on_cpu)
