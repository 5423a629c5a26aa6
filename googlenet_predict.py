"""Classifies images with GoogLeNet, preprocessed exactly as Caffe's reference.

    python googlenet_predict.py -u IMAGE_URL
    python googlenet_predict.py photo.jpg folder/ --top 5 --json

With no model yet it converts bvlc_googlenet.caffemodel (downloading it first
if it is missing) into googlenet.model. With no inputs it classifies the
bundled sample photo.
"""
import argparse
import json
import os
import sys

import numpy

from chainer_compat import chainer

import convert_caffe_model
import tuned_googlenet
from googlenet_io import (UserError, fetch_bytes, list_images, open_image,
                          positive_int, prefetch, preprocess, read_labels,
                          report_errors, ten_crops)

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_MODEL = 'googlenet.model'
SAMPLE_IMAGE = os.path.join(HERE, 'sample_images', 'cat.png')
SYNSET_WORDS = os.path.join(HERE, 'synset_words.txt')
MAX_DOWNLOAD_BYTES = 50 * 1000 * 1000


def ensure_model(path, caffemodel):
    """Creates the 1000-class model from the caffemodel when it is missing."""
    if os.path.exists(path):
        return
    print('no model at {}: converting {}'.format(path, caffemodel),
          file=sys.stderr)
    if not os.path.exists(caffemodel):
        convert_caffe_model.fetch_caffemodel(caffemodel)
    convert_caffe_model.convert(caffemodel, path, n_classes=1000,
                                log=lambda line: None)


def class_labels(n_classes, label_file=None, stored=None):
    """Names for the model's classes: a label file, the names the training
    run stored with the model, or synset_words.txt for ImageNet's 1000."""
    if label_file:
        labels = read_labels(label_file)
        if len(labels) != n_classes:
            raise UserError('{} has {} labels but the model has {} classes'
                            .format(label_file, len(labels), n_classes))
        return labels
    if stored is not None:
        return stored
    if n_classes == 1000:
        return read_labels(SYNSET_WORDS)
    return ['class {}'.format(i) for i in range(n_classes)]


def expand_inputs(urls, paths):
    """(name, source) pairs in order; a folder stands for its images.

    A source is a URL or a file path; problems found here come back as
    (name, UserError) so they are reported in place, like the others.
    """
    items = [(url, url) for url in urls]
    for path in paths:
        if os.path.isdir(path):
            images = list_images(path)
            if not images:
                items.append((path, UserError('folder without images')))
            items += [(image, image) for image in images]
        else:
            items.append((path, path))
    return items


def load_input(source, max_bytes, timeout):
    if isinstance(source, UserError):
        raise source
    if '://' in source:
        return open_image(fetch_bytes(source, max_bytes, timeout))
    if not os.path.exists(source):
        raise UserError('no such file')
    return open_image(source)


class Predictor:
    """Runs batches of preprocessed inputs through the model on a device."""

    def __init__(self, model, device, oversample=False):
        self.model = model
        self.device = device
        self.crops = 10 if oversample else 1
        self.oversample = oversample

    def inputs_of(self, image):
        return ten_crops(image) if self.oversample else preprocess(image)[None]

    def __call__(self, arrays):
        x = self.device.send(numpy.concatenate(arrays))
        probs = chainer.backend.CpuDevice().send(self.model.predict(x))
        return probs.reshape(-1, self.crops, probs.shape[-1]).mean(axis=1)


def top_predictions(probs, labels, k):
    order = numpy.argsort(-probs, kind='stable')[:k]
    return [{'index': int(i), 'label': labels[i],
             'probability': float(probs[i])} for i in order]


def print_result(name, predictions, as_json):
    if as_json:
        print(json.dumps({'input': name, 'predictions': predictions}))
        return
    print(name)
    for rank, p in enumerate(predictions, 1):
        print('{:3d} {:6.2f}% {}'.format(rank, 100 * p['probability'],
                                         p['label']))


def get_device(gpu):
    if gpu < 0:
        return chainer.get_device('@numpy')
    if not chainer.backends.cuda.available:
        raise UserError('--gpu {} needs CuPy, which is not installed; run '
                        'without --gpu to use the CPU'.format(gpu))
    device = chainer.get_device('@cupy:{}'.format(gpu))
    device.use()
    return device


def classify(args):
    if args.model == DEFAULT_MODEL:
        ensure_model(args.model, args.caffemodel)
    model, stored_names = tuned_googlenet.load_model(args.model)
    labels = class_labels(model.n_classes, args.labels, stored_names)
    device = get_device(args.gpu)
    model.to_device(device)
    predictor = Predictor(model, device, args.oversample)
    paths = args.paths if (args.urls or args.paths) else [SAMPLE_IMAGE]
    failed = 0
    batch, names = [], []

    def flush():
        if batch:
            for name, probs in zip(names, predictor(batch)):
                print_result(name, top_predictions(probs, labels, args.top),
                             args.json)
            sys.stdout.flush()
            batch.clear()
            names.clear()

    def prepared(item):
        return predictor.inputs_of(
            load_input(item[1], args.max_bytes, args.timeout))

    # The next batch is decoded while this one runs through the network.
    for (name, _), inputs in prefetch(
            prepared, expand_inputs(args.urls, paths), args.batchsize + 1):
        try:
            inputs = inputs.result()
        except UserError as e:
            print('error: {}: {}'.format(name, e), file=sys.stderr)
            failed += 1
            continue
        batch.append(inputs)
        names.append(name)
        if len(batch) == args.batchsize:
            flush()
    flush()
    return 1 if failed else 0


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('paths', nargs='*',
                        help='image files or folders of images')
    parser.add_argument('-u', '--url', dest='urls', action='append',
                        default=[], help='an image URL (repeatable)')
    parser.add_argument('--model', default=DEFAULT_MODEL,
                        help='a model this project wrote (default: '
                        '%(default)s, created from the caffemodel)')
    parser.add_argument('--caffemodel',
                        default=convert_caffe_model.DEFAULT_CAFFEMODEL,
                        help='where the caffemodel is, or is downloaded to')
    parser.add_argument('--labels', help='class names, one per line')
    parser.add_argument('--top', type=positive_int, default=10,
                        help='how many classes to print (default: 10)')
    parser.add_argument('--json', action='store_true',
                        help='one JSON object per input per line')
    parser.add_argument('--oversample', action='store_true',
                        help='average the ten crops (corners, centre, '
                        'mirrored) as Caffe does')
    parser.add_argument('-b', '--batchsize', type=positive_int, default=8,
                        help='images per forward pass (default: 8)')
    parser.add_argument('-g', '--gpu', type=int, default=-1,
                        help='GPU id (negative: CPU)')
    parser.add_argument('--max-bytes', type=int, default=MAX_DOWNLOAD_BYTES,
                        help='download size limit per image (default: '
                        '%(default)s)')
    parser.add_argument('--timeout', type=float, default=30,
                        help='seconds to wait for an image server')
    return parser


def main(argv=None):
    return report_errors(classify, build_parser().parse_args(argv))


if __name__ == '__main__':
    sys.exit(main())
