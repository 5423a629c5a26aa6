"""Evaluation of 64 images: evaluate_googlenet's batched path against
model.predict called once per image.

    .venv/bin/python bench/bench_evaluate.py [ROUNDS]

Both sides decode the same 64 synthetic 320x240 PNG files, preprocess them as
Caffe's reference does and classify them with the same synthetic weights:
``inference.predict_dataset`` (what evaluate_googlenet.py runs, batches
of 8 through the fast path) against a loop of open_image, preprocess and
``model.predict`` on one image. Alternating rounds; the best of each is
reported as images/s.
"""
import os
import sys
import tempfile
import time

import numpy
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path[:0] = [ROOT, os.path.join(ROOT, 'tests')]

import caffe_fixtures  # noqa: E402
import tuned_googlenet  # noqa: E402
from googlenet_chainer.caffemodel import transfer  # noqa: E402
from googlenet_chainer.devices import get_device  # noqa: E402
from googlenet_chainer.images import open_image, preprocess  # noqa: E402
from googlenet_chainer.inference import Predictor, predict_dataset  # noqa: E402,E501

IMAGES = 64
BATCH = 8


def write_images(folder):
    rng = numpy.random.RandomState(0)
    paths = []
    for i in range(IMAGES):
        path = os.path.join(folder, '{:02d}.png'.format(i))
        Image.fromarray(rng.randint(0, 256, (240, 320, 3)).astype(
            numpy.uint8)).save(path)
        paths.append((path, i % 5))
    return paths


def per_image(model, pairs):
    return numpy.concatenate([model.predict(preprocess(open_image(p))[None])
                              for p, _ in pairs])


def evaluation(model, pairs):
    return predict_dataset(Predictor(model, get_device('@numpy')), pairs,
                           BATCH)[0]


def main():
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    model = tuned_googlenet.GoogLeNet(1000)
    transfer(
        {k: list(v) for k, v in caffe_fixtures.random_weights(0).items()},
        model, log=lambda line: None)
    best = {'evaluation': 0.0, 'predict loop': 0.0}
    with tempfile.TemporaryDirectory() as tmp:
        pairs = write_images(tmp)
        evaluation(model, pairs[:BATCH])  # warm up
        for _ in range(rounds):
            for side, run in (('evaluation', evaluation),
                              ('predict loop', per_image)):
                start = time.perf_counter()
                run(model, pairs)
                rate = IMAGES / (time.perf_counter() - start)
                best[side] = max(best[side], rate)
    print('{} images, images/s (best of {} alternating rounds)'.format(
        IMAGES, rounds))
    for side, rate in best.items():
        print('  {:13s} {:6.1f}'.format(side, rate))
    ratio = best['evaluation'] / best['predict loop']
    print('evaluation / predict loop: {:.2f}x; not slower: {}'.format(
        ratio, 'met' if ratio >= 1.0 else 'NOT MET'))


if __name__ == '__main__':
    main()
