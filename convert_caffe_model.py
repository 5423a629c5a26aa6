"""Copies bvlc_googlenet.caffemodel's parameters into the GoogLeNet Chain.

    python convert_caffe_model.py [--download] [--classes N] [--fresh-heads]

Reads the old (V1, ``layers``) and the current (``layer``) caffemodel format
with this project's own caffe_pb2, copies every trunk parameter exactly, copies
each head whose shape matches, and saves tuned_googlenet.model, ending with a
summary line. The caffemodel is by default the one in Chainer's model folder
($CHAINER_DATASET_ROOT/pfnet/chainer/models, ~/.chainer/dataset/... unless
set), where googlenet_predict.py keeps it too.
"""
import os
import sys

import tuned_googlenet
from googlenet_chainer import cli
from googlenet_chainer.caffemodel import convert
from googlenet_chainer.errors import UserError
from googlenet_chainer.files import check_output_path, check_writable
from googlenet_chainer.locks import file_lock
from googlenet_chainer.model_file import CONVERSION_KIND
from googlenet_chainer.model_store import (CAFFEMODEL_NAME, MODEL_DIRECTORY,
                                           default_caffemodel,
                                           ensure_caffemodel)


def build_parser():
    parser = cli.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--caffemodel', default=None,
                        help='the caffemodel to read (default: {} in '
                        'Chainer\'s model folder, {})'.format(
                            CAFFEMODEL_NAME, os.path.join(
                                '$CHAINER_DATASET_ROOT', MODEL_DIRECTORY)))
    parser.add_argument('--output', default='tuned_googlenet.model',
                        help='where to save the Chain (default: %(default)s)')
    parser.add_argument('--classes', type=int, default=None,
                        help='classes of the replaced heads (default: '
                        'N_CLASSES in tuned_googlenet.py, {})'.format(
                            tuned_googlenet.N_CLASSES))
    parser.add_argument('--fresh-heads', action='store_true',
                        help='re-initialise the replaced heads even where '
                        'the pretrained ones fit')
    parser.add_argument('--seed', type=cli.random_seed, default=0,
                        help='seed of the fresh heads\' initial weights, so '
                        'that the same command makes the same model '
                        '(default: %(default)s)')
    parser.add_argument('--download', action='store_true',
                        help='download the caffemodel first if it is missing')
    parser.add_argument('--url', action='append', default=[],
                        help='download from here first (repeatable; env '
                        'GOOGLENET_CAFFEMODEL_URL, space-separated; default: '
                        'BVLC\'s server, then public mirrors of the same '
                        'file, each checked by its sha1)')
    parser.add_argument('--sha1', default=None,
                        help='expected sha1 of the download (env '
                        'GOOGLENET_CAFFEMODEL_SHA1)')
    return parser


def run(args):
    caffemodel = args.caffemodel or default_caffemodel()
    check_output_path(args.output, [caffemodel], kind=CONVERSION_KIND)
    check_writable(os.path.dirname(os.path.abspath(args.output)), 'output')
    if args.download:
        ensure_caffemodel(caffemodel, args.url, args.sha1)
    elif not os.path.lexists(caffemodel):
        raise UserError('caffemodel not found: {}; add --download to fetch '
                        'it there, or give --caffemodel PATH'.format(
                            caffemodel))
    with file_lock(args.output):
        convert(caffemodel, args.output, args.classes, args.fresh_heads,
                seed=args.seed)


def main(argv=None):
    return cli.report_errors(run, build_parser().parse_args(argv))


if __name__ == '__main__':
    sys.exit(main())
