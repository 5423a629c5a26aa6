"""Classifies images with GoogLeNet, preprocessed exactly as Caffe's reference.

    python googlenet_predict.py -u IMAGE_URL
    python googlenet_predict.py photo.jpg folder/ --top 5 --json

Without --model it uses googlenet.model in Chainer's model folder
($CHAINER_DATASET_ROOT/pfnet/chainer/models); on the first run it converts
bvlc_googlenet.caffemodel there (downloading it first if it is missing). With
no inputs it classifies the bundled sample photo.
"""
import gc
import itertools
import os
import sys

from googlenet_chainer import cli
from googlenet_chainer.devices import get_device
from googlenet_chainer.errors import UserError
from googlenet_chainer.images import network_input
from googlenet_chainer.inference import (Predictor, decoded_ahead, outcomes,
                                         top_predictions)
from googlenet_chainer.inputs import (MAX_DOWNLOAD_BYTES, expand_inputs,
                                      load_input)
from googlenet_chainer.labels import class_fields, model_class_names
from googlenet_chainer.model_file import load_model
from googlenet_chainer.console import shown
from googlenet_chainer.model_store import (CAFFEMODEL_NAME,
                                           default_caffemodel, default_model,
                                           ensure_model)
from googlenet_chainer.mpi import (Single, add_communicator_option,
                                   on_root, on_root_with_model, run_main,
                                   shard)
from googlenet_chainer.results import (Output, check_outputs, save_features,
                                       save_rows)

SAMPLE_IMAGE = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                            'sample_images', 'cat.png')


def check_arguments(args):
    """Rank 0's checks before any work, and the model made if need be;
    returns (the model's path, the inputs as (name, source) pairs)."""
    if args.features and (args.csv or args.json or args.probabilities):
        raise UserError('--features saves pool5 vectors instead of classes, '
                        'so --{} would have no classes to write: classify '
                        'and extract features in two runs'.format(
                            'csv' if args.csv else 'json' if args.json
                            else 'probabilities'))
    paths = args.paths if (args.urls or args.paths) else [SAMPLE_IMAGE]
    items = expand_inputs(args.urls, paths)
    check_outputs(args, paths, items)
    if args.json and args.csv == '-':
        raise UserError('--json and --csv - both print to stdout: give --csv '
                        'a file name')
    model_path = args.model
    if model_path is None:
        model_path = default_model()
        ensure_model(model_path, args.caffemodel or default_caffemodel(),
                     given=args.caffemodel is not None)
    return model_path, items


def classify(args, comm=Single()):
    """Prints (or saves the features of) every input in input order.

    Under MPI rank 0 checks the arguments, makes the model if need be and
    lists the inputs; each rank then scores its contiguous share of them
    (mpi.shard) and rank 0 prints its own as they come, then the others' in
    rank order: the same output as one process.
    """
    model_path, items = on_root(comm, lambda: check_arguments(args))

    def prepared(item):
        return network_input(load_input(item[1], args.max_bytes, args.timeout,
                                        args.max_pixels), args.oversample)

    # Decoding starts now, while the model loads: a 3000x2000 JPEG takes one
    # core longer to decode and resize (75 ms) than the forward pass takes
    # for it on two (25 ms).
    with decoded_ahead(prepared, shard(items, comm), args.batchsize) as ahead:
        model, labels = on_root_with_model(
            comm, lambda: load_with_labels(model_path, args.labels),
            lambda labels: load_model(model_path, classify=True)[0])
        device = get_device(args.device, comm)
        model.to_device(device)
        own = outcomes(Predictor(model, device, 10 if args.oversample else 1),
                       ahead, args.batchsize, pool5=bool(args.features))
        if comm.rank:
            comm.gather(list(own))
        # Rank 0's verdict, exit code or error, is every rank's.
        return on_root(comm, lambda: report(args, labels, itertools.chain(
            own, others(comm)), [name for name, _ in items]))


def load_with_labels(model_path, label_file):
    """(the model, its class names), on rank 0: a bad model or --labels is
    one line from there."""
    model, stored = load_model(model_path, classify=True)
    return model, model_class_names(model.n_classes, label_file, stored)


def others(comm):
    """The other ranks' outcomes in rank order, gathered only once rank
    0's own are done (a generator: chained after them)."""
    for part in comm.gather(None)[1:]:
        yield from part


def report(args, labels, results, names):
    """Prints each (name, outcome) as it comes, and keeps its pool5 vector
    for --features or its probabilities for --probabilities; writes the
    outputs asked for. On Ctrl-C the outputs hold what was done, and a line
    says where to go on from. ``names``: every input's, in order. Returns
    the exit code: 1 if an input failed."""
    output = Output(args.json, args.csv, min(args.top, len(labels)))
    fields = class_fields(labels)
    kept, kept_names, done = [], [], 0
    try:
        for name, outcome in results:
            if isinstance(outcome, UserError):
                output.error(name, outcome)
            else:
                if not args.features:
                    output.result(name, top_predictions(outcome, fields,
                                                         args.top))
                if args.features or args.probabilities:
                    kept.append(outcome[None])
                    kept_names.append(name)
            sys.stdout.flush()
            done += 1
    except KeyboardInterrupt:
        written = [(option, path) for option, path in (
            ('--csv', args.csv), ('--features', args.features),
            ('--probabilities', args.probabilities))
            if path not in (None, '-') and (option == '--csv' or kept)]
        if done and written:
            _write(args, output, kept_names, kept)
            print(_where_to_go_on(written, done, names), file=sys.stderr)
        raise
    _write(args, output, kept_names, kept)
    return 1 if output.failed else 0


def _where_to_go_on(written, done, names):
    """The line after Ctrl-C: which files hold the ``done`` first of
    ``names``, and how the rest are classified. A second run needs files of
    its own: given the same, it would write over the rows done.
    ``written``: (option, path) of each file written."""
    return ('interrupted after {} of {} inputs: {} hold{} their results; the '
            'first not done is {}: give it and those after it to a second '
            'run with another {} name (the same name would be written over)'
            .format(done, len(names),
                    ' and '.join(shown(path) for _, path in written),
                    '' if len(written) > 1 else 's', shown(names[done]),
                    ' and '.join(option for option, _ in written)))


def _write(args, output, kept_names, kept):
    """Writes --csv, and --features or --probabilities, with the results
    there are; says so below the table."""
    output.close()
    if not kept:
        return
    if args.features:
        save_features(args.features, kept_names, kept)
    else:
        save_rows(args.probabilities, kept_names, kept)
    if args.json or args.csv == '-':
        return  # stdout holds JSON or CSV alone
    print('wrote {} of {} input{} to {}'.format(
        'pool5 features' if args.features else 'the probabilities',
        len(kept_names), '' if len(kept_names) == 1 else 's',
        shown(args.features or args.probabilities)))


def build_parser():
    parser = cli.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('paths', nargs='*',
                        help='image files or folders of images')
    parser.add_argument('-u', '--url', dest='urls', action='append',
                        default=[], help='an image URL (repeatable)')
    cli.add_model_option(parser)
    parser.add_argument('--caffemodel', default=None,
                        help='where the caffemodel is, or is downloaded to, '
                        'for the default model (default: {} in Chainer\'s '
                        'model folder)'.format(CAFFEMODEL_NAME))
    cli.add_labels_option(parser)
    parser.add_argument('--top', type=cli.positive_int, default=10,
                        help='how many classes to print (default: 10)')
    parser.add_argument('--oversample', action='store_true',
                        help='average the ten crops (corners, centre, '
                        'mirrored) as Caffe does')
    parser.add_argument('-b', '--batchsize', type=cli.positive_int,
                        default=8, help='images per forward pass (default: '
                        '8)')
    cli.add_device_option(parser)
    outputs = parser.add_argument_group('outputs')
    outputs.add_argument('--json', action='store_true',
                         help='one JSON object per input per line (a failed '
                         'input: {"input": ..., "error": ...})')
    outputs.add_argument('--csv', metavar='FILE',
                         help='also write one row per input (input, error, '
                         'then by rank the class index, class id, name and '
                         'probability) to FILE; "-" prints the rows '
                         'instead of the table')
    outputs.add_argument('--features', metavar='FILE',
                         help='save each input\'s 1024-d pool5 vector '
                         'instead of printing classes: FILE.npz (with the '
                         'input names) or FILE.npy (names in FILE.txt)')
    outputs.add_argument('--probabilities', metavar='FILE.npy',
                         help='also save every class\'s probability of each '
                         'input: an inputs x classes float32 array, in '
                         'input order, the input names in FILE.txt')
    limits = parser.add_argument_group('limits')
    cli.add_max_pixels_option(limits)
    limits.add_argument('--max-bytes', type=cli.positive_int,
                        default=MAX_DOWNLOAD_BYTES,
                        help='download size limit per image (default: '
                        '%(default)s)')
    limits.add_argument('--timeout', type=cli.positive_float, default=30,
                        help='seconds an image download may take in all '
                        '(default: %(default)s)')
    add_communicator_option(parser)
    return parser


def parse_arguments(argv=None):
    """The command line, files and options in any order.

    Intermixed: files may follow -u URL (plain parse_args refuses them).
    Everything after the first ``--`` is a path, one that starts with a
    dash included: parse_intermixed_args does not honour ``--`` itself (it
    reads ``-- -dash.jpg`` as -d ash.jpg).

    Args:
        argv: the arguments; None for sys.argv[1:].

    Returns:
        argparse.Namespace.
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    paths = []
    if '--' in argv:
        end = argv.index('--')
        argv, paths = argv[:end], argv[end + 1:]
    args = build_parser().parse_intermixed_args(argv)
    args.paths += paths
    return args


def main(argv=None):
    return run_main(classify, parse_arguments(argv))


def script(argv=None):
    """main() as the command runs it, in a process of its own: what the
    imports made (Chainer's hundreds of modules) lives until the exit, so
    it is frozen out of the garbage collector's walks, the one at the exit
    included (0.15 s of a one-image run, against 0.02 s)."""
    gc.freeze()
    return main(argv)


if __name__ == '__main__':
    sys.exit(script())
