"""Scores a GoogLeNet model on a labelled test set.

    python evaluate_googlenet.py --model MODEL --data test/ [--out DIR]
    python evaluate_googlenet.py --data val.txt --root ILSVRC2012_val/

DATA is a folder of class folders, matched to the model's classes by name
(the names training stored; for ImageNet's 1000 classes, wnid folders such as
n01440764), or a list file of ``path label`` lines (Caffe's val.txt: labels
are class indices). Prints top-1 and top-5 accuracy, per-class precision,
recall, F1 and support, the confusion matrix and the misclassified inputs.
"""
import argparse
import json
import os
import sys

import numpy

import googlenet_caffe
import tuned_googlenet
from googlenet_data import (check_labels, evaluation_report,
                            format_evaluation, matching_names,
                            model_class_names, plot_confusion,
                            predict_dataset, read_dataset)
from googlenet_io import (UserError, atomic_write, check_outside,
                          check_writable, positive_int, progress, shown)
from googlenet_mpi import Single, add_option, on_root, run_main, shard


def labelled_inputs(data, root, class_names):
    """[(path, label)] of DATA with labels in the model's class order."""
    pairs = read_dataset(data, root, matching_names(class_names)).pairs
    check_labels(pairs, len(class_names), data)
    if not pairs:
        raise UserError('{} has no images'.format(shown(data)))
    return pairs


def write_outputs(folder, report, class_names):
    """report.json, report.txt, confusion.png and confusion_normalized.png
    in folder, each written atomically."""
    try:
        # The last level only: check_out_folder found its parent.
        if not os.path.isdir(folder):
            os.mkdir(folder)
    except OSError as e:
        raise UserError('cannot create {}: {}'.format(folder,
                                                      e.strerror or e))
    with atomic_write(os.path.join(folder, 'report.json'), 'w') as f:
        json.dump(report, f, indent=1)
    with atomic_write(os.path.join(folder, 'report.txt'), 'w') as f:
        f.write(format_evaluation(report) + '\n')
    names = [row['class'] for row in report['classes']]
    for normalized, name in ((False, 'confusion.png'),
                             (True, 'confusion_normalized.png')):
        plot_confusion(report['confusion'], names,
                       os.path.join(folder, name), normalized=normalized,
                       title='test confusion matrix')


def check_out_folder(out, data, root):
    """Refuses, before any scoring, an --out that is a file, lies in the
    data (--data, or the --root of a list file), or whose folder (its
    parent when it is to be made) is missing or cannot be written: found
    at the end, each would cost the whole evaluation."""
    if os.path.exists(out) and not os.path.isdir(out):
        raise UserError('--out {} is a file, not a folder'.format(shown(out)))
    folders = [data] if os.path.isdir(data) else [root] if root else []
    check_outside(out, folders, '--out')
    check_writable(out if os.path.isdir(out) else os.path.dirname(
        os.path.abspath(out)), '--out')


def evaluate(args, comm=Single()):
    """Scores the model on --data and reports. Under MPI rank 0 checks the
    arguments and lists the data; each rank scores its contiguous share
    (googlenet_mpi.shard) and rank 0 joins them in input order and reports.
    """
    model = None

    def setup():
        nonlocal model
        if args.out:
            check_out_folder(args.out, args.data, args.root)
        model_path = googlenet_caffe.model_or_default(args.model)
        model, stored = tuned_googlenet.load_model(model_path, classify=True)
        class_names = model_class_names(model.n_classes, args.labels, stored)
        return model_path, class_names, labelled_inputs(args.data, args.root,
                                                        class_names)
    args.model, class_names, pairs = on_root(comm, setup)
    if model is None:  # another rank than 0
        model, _ = tuned_googlenet.load_model(args.model, classify=True)
    scored = predict_dataset(
        model, shard(pairs, comm), args.batchsize, args.oversample,
        lambda items: progress(items, 'evaluating',
                               not args.no_progress and not comm.rank))
    parts = comm.gather(scored)

    def report():
        probs = numpy.concatenate([part[0] for part in parts])
        kept = [pair for part in parts for pair in part[1]]
        bad = [shown(line) for part in parts for line in part[2]]
        for line in bad:
            print('error: {}'.format(line), file=sys.stderr)
        if not kept:
            raise UserError('no readable images in {}'.format(args.data))
        if not numpy.isfinite(probs).all():
            # argmax of NaN is class 0: the scores would look plausible.
            raise UserError('{} gives non-finite probabilities: its weights '
                            'are NaN or infinite'.format(shown(args.model)))
        scores = evaluation_report(probs, kept, class_names)
        scores.update(model=shown(args.model), data=shown(args.data),
                      oversample=args.oversample, unreadable=bad)
        if args.json:
            print(json.dumps(scores))
        else:
            print(format_evaluation(scores))
        if args.out:
            write_outputs(args.out, scores, class_names)
        return 1 if bad else 0
    # Rank 0's verdict, exit code or error, is every rank's.
    return on_root(comm, report)


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    googlenet_caffe.add_model_option(parser)
    parser.add_argument('--data', required=True,
                        help='folder of class folders, or a list file')
    parser.add_argument('--root', default=None,
                        help='paths in a list file are relative to this '
                        '(default: the list file\'s folder)')
    parser.add_argument('--labels', help='class names, one per line '
                        '(default: those stored with the model)')
    parser.add_argument('--oversample', action='store_true',
                        help='score the average of the ten crops, as '
                        'Caffe\'s classify.py does')
    parser.add_argument('-b', '--batchsize', type=positive_int, default=8,
                        help='images per forward pass (default: 8)')
    parser.add_argument('--json', action='store_true',
                        help='print the report as one JSON object')
    parser.add_argument('--out', metavar='DIR',
                        help='also write report.json, report.txt, '
                        'confusion.png and confusion_normalized.png here')
    parser.add_argument('--no-progress', action='store_true',
                        help='no progress bar (it shows only on a terminal)')
    add_option(parser)
    return parser


def main(argv=None):
    return run_main(evaluate, build_parser().parse_args(argv))


if __name__ == '__main__':
    sys.exit(main())
