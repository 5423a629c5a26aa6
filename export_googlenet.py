"""Exports a GoogLeNet model this project wrote to ONNX or to Caffe.

    python export_googlenet.py --model MODEL --onnx googlenet.onnx
    python export_googlenet.py --model MODEL --caffe caffe_export/

Both take the deploy network: input ``data``, float32 N x 3 x 224 x 224, BGR
minus the mean (104, 117, 123) as Caffe's reference preprocessing makes it;
output ``prob``, the softmax of loss3/classifier. The layers, their names and
parameters are BVLC's bvlc_googlenet deploy.prototxt's.
"""
import os
import sys

from googlenet_chainer import cli
from googlenet_chainer.console import decoded
from googlenet_chainer.errors import UserError
from googlenet_chainer.export import (OPSET, ONNX_KIND, check_caffe_folder,
                                      export_caffe, export_onnx)
from googlenet_chainer.files import check_output_path, check_writable
from googlenet_chainer.labels import model_class_names, one_per_line
from googlenet_chainer.model_file import load_model
from googlenet_chainer.model_store import model_or_default


def export(args):
    """Checks every output before the model loads, then writes them."""
    if not (args.onnx or args.caffe):
        raise UserError('nothing to do: give --onnx FILE and/or --caffe DIR')
    model_path = model_or_default(args.model)
    if args.onnx:
        check_output_path(args.onnx, [model_path], '--onnx', kind=ONNX_KIND)
        check_writable(os.path.dirname(os.path.abspath(args.onnx)),
                       '--onnx')
    stem = os.path.splitext(os.path.basename(model_path))[0]
    if args.caffe:
        check_caffe_folder(args.caffe, stem)
    # load_model refuses a model with NaN or infinite weights.
    model, stored = load_model(model_path, classify=True)
    names = [decoded(name) for name in
             model_class_names(model.n_classes, args.labels, stored)]
    if args.caffe:  # before anything is written (export_caffe checks too)
        one_per_line(names, 'class', os.path.join(args.caffe, 'labels.txt'))
    if args.onnx:
        print('wrote {}'.format(export_onnx(model, args.onnx, names)))
    if args.caffe:
        for path in export_caffe(model, args.caffe, names, stem):
            print('wrote {}'.format(path))


def build_parser():
    parser = cli.ArgumentParser(description=__doc__.split('\n')[0])
    cli.add_model_option(parser)
    cli.add_labels_option(parser)
    parser.add_argument('--onnx', metavar='FILE',
                        help='write the deploy network as ONNX (opset {})'
                        .format(OPSET))
    parser.add_argument('--caffe', metavar='DIR',
                        help='write deploy.prototxt, a caffemodel and '
                        'labels.txt into DIR')
    return parser


def main(argv=None):
    return cli.report_errors(export, build_parser().parse_args(argv))


if __name__ == '__main__':
    sys.exit(main())
