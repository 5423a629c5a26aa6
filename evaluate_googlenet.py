"""Scores a GoogLeNet model on a labelled test set.

    python evaluate_googlenet.py --model MODEL --data test/ [--out DIR]
    python evaluate_googlenet.py --data val.txt --root ILSVRC2012_val/

DATA is a folder of class folders, matched to the model's classes by name
(the names training stored; for ImageNet's 1000 classes, wnid folders such as
n01440764), or a list file of ``path label`` lines (Caffe's val.txt: labels
are class indices). Prints top-1 and top-5 accuracy, per-class precision,
recall, F1 and support, the confusion matrix and the misclassified inputs;
--out keeps them, with a page that shows the mistakes in pictures.
"""
import json
import os
import sys

import numpy

from googlenet_chainer import cli
from googlenet_chainer.console import progress, shown
from googlenet_chainer.datasets import labelled_inputs
from googlenet_chainer.devices import get_device
from googlenet_chainer.errors import UserError
from googlenet_chainer.files import check_out_folder, make_out_folder
from googlenet_chainer.inference import (Predictor, check_finite,
                                         predict_dataset)
from googlenet_chainer.labels import model_class_names
from googlenet_chainer.model_file import load_model
from googlenet_chainer.model_store import model_or_default
from googlenet_chainer.mpi import (Single, add_communicator_option,
                                   on_root, on_root_with_model, run_main,
                                   shard)
from googlenet_chainer.report_files import (Scored, check_replaceable,
                                            write_report_files)
from googlenet_chainer.reports import evaluation_report, format_evaluation
from googlenet_chainer.training.options import RUN_CONFIG, is_run_folder


def check_arguments(args):
    """Rank 0's checks before any scoring; returns (the model, (its path,
    its class names, the labelled inputs in the model's class order))."""
    if args.out:
        inputs = [args.data] if os.path.isdir(args.data) else (
            [args.root] if args.root else [])
        check_out_folder(args.out, '--out', inputs)
        if is_run_folder(args.out):
            raise UserError(
                '--out {} is a training run\'s folder ({}): the evaluation '
                'would replace the run\'s report files; give another '
                'folder'.format(shown(args.out), RUN_CONFIG))
        check_replaceable(args.out, '--out')
    model_path = model_or_default(args.model)
    model, stored = load_model(model_path, classify=True)
    class_names = model_class_names(model.n_classes, args.labels, stored)
    pairs = labelled_inputs(args.data, args.root, class_names)
    return model, (model_path, class_names, pairs)


def evaluate(args, comm=Single()):
    """Scores the model on --data and reports. Under MPI rank 0 checks the
    arguments and lists the data; each rank scores its contiguous share
    (mpi.shard) and rank 0 joins them in input order and reports.
    """
    model, (model_path, class_names, pairs) = on_root_with_model(
        comm, lambda: check_arguments(args),
        lambda shared: load_model(shared[0], classify=True)[0])
    device = get_device(args.device, comm)
    model.to_device(device)
    scored = predict_dataset(
        Predictor(model, device, 10 if args.oversample else 1),
        shard(pairs, comm), args.batchsize, args.max_pixels,
        lambda items: progress(items, 'evaluating',
                               not args.no_progress and not comm.rank,
                               total=len(shard(pairs, comm))))
    parts = comm.gather(scored)
    # Rank 0's verdict, exit code or error, is every rank's.
    return on_root(comm, lambda: report(args, model_path, class_names,
                                        parts))


def report(args, model_path, class_names, parts):
    """Joins the ranks' (probabilities, scored pairs, unreadable) parts in
    input order, prints the scores and keeps them in --out; returns the exit
    code: 1 if an input could not be used."""
    probs = numpy.concatenate([part[0] for part in parts])
    kept = [pair for part in parts for pair in part[1]]
    bad = [shown(line) for part in parts for line in part[2]]
    for line in bad:
        print('error: {}'.format(line), file=sys.stderr)
    if not kept:
        raise UserError('no readable images in {}'.format(args.data))
    # argmax of NaN is class 0: the scores would look plausible.
    check_finite(probs, shown(model_path))
    scores = evaluation_report(probs, kept, class_names)
    scores.update(model=shown(model_path), data=shown(args.data),
                  oversample=args.oversample, unreadable=bad)
    text = format_evaluation(scores)
    print(json.dumps(scores) if args.json else text)
    if args.out:
        make_out_folder(args.out, '--out')
        write_report_files(args.out, scores, text, Scored(
            probs, kept, class_names, args.max_pixels), 'test')
    return 1 if bad else 0


def build_parser():
    parser = cli.ArgumentParser(description=__doc__.split('\n')[0])
    cli.add_model_option(parser)
    parser.add_argument('--data', required=True,
                        help='folder of class folders, or a list file')
    parser.add_argument('--root', default=None,
                        help='paths in a list file are relative to this '
                        '(default: the list file\'s folder)')
    cli.add_labels_option(parser)
    parser.add_argument('--oversample', action='store_true',
                        help='score the average of the ten crops, as '
                        'Caffe\'s classify.py does')
    parser.add_argument('-b', '--batchsize', type=cli.positive_int,
                        default=8, help='images per forward pass (default: '
                        '8)')
    cli.add_max_pixels_option(parser)
    cli.add_device_option(parser)
    parser.add_argument('--json', action='store_true',
                        help='print the report as one JSON object')
    parser.add_argument('--out', metavar='DIR',
                        help='also write report.html (the report as a page, '
                        'the mistakes in pictures), report.json, '
                        'report.txt, predictions.csv (a row per image), '
                        'confusion.png and confusion_normalized.png here')
    cli.add_progress_option(parser)
    add_communicator_option(parser)
    return parser


def main(argv=None):
    return run_main(evaluate, build_parser().parse_args(argv))


if __name__ == '__main__':
    sys.exit(main())
