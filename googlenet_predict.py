"""Classifies images with GoogLeNet, preprocessed exactly as Caffe's reference.

    python googlenet_predict.py -u IMAGE_URL
    python googlenet_predict.py photo.jpg folder/ --top 5 --json

Without --model it uses googlenet.model in Chainer's model folder
($CHAINER_DATASET_ROOT/pfnet/chainer/models); on the first run it converts
bvlc_googlenet.caffemodel there (downloading it first if it is missing). With
no inputs it classifies the bundled sample photo.
"""
import argparse
import csv
import gc
import io
import itertools
import json
import os
import sys
import zipfile

import numpy

from chainer_compat import chainer

import googlenet_caffe
import tuned_googlenet
from googlenet_data import model_class_names
from googlenet_io import (DEFAULT_MAX_PIXELS, UserError, atomic_write,
                          check_output_path, check_writable, fetch_bytes,
                          list_images, make_once, one_per_line, open_image,
                          positive_float, positive_int, prefetch,
                          preprocess, read_npy_header, save_npz, shown,
                          ten_crops, usable_cores, written_path)
from googlenet_mpi import Single, add_option, on_root, run_main, shard

HERE = os.path.dirname(os.path.abspath(__file__))
# The links model.predict runs through beyond the trunk.
PREDICTION_HEADS = ('loss3_fc',)
SAMPLE_IMAGE = os.path.join(HERE, 'sample_images', 'cat.png')
MAX_DOWNLOAD_BYTES = 50 * 1000 * 1000


def ensure_model(path, caffemodel):
    """Creates the 1000-class model from the caffemodel when it is missing.

    Holds path's lock, so that a second first run waits for the first and
    then uses its model. Refuses (UserError naming the layer) a caffemodel
    whose loss3/classifier cannot be copied: prediction would print a
    random classifier's guesses as ImageNet labels.
    """
    def make():
        print('no model at {}: converting {}'.format(path, caffemodel),
              file=sys.stderr)
        googlenet_caffe.ensure_caffemodel(caffemodel)
        googlenet_caffe.convert(caffemodel, path, n_classes=1000,
                                    required_heads=PREDICTION_HEADS,
                                    log=lambda line: None)
    make_once(path, make)


def expand_inputs(urls, paths):
    """(name, source) pairs in order; a folder stands for the image files
    in it and its visible sub-folders, sorted by path (list_images: hidden
    files and folders are left out), as training finds a class's images.

    A source is a URL or a file path; problems found here come back as
    (name, UserError) so they are reported in place, like the others.
    """
    items = [(url, ImageURL(url)) for url in urls]
    for path in paths:
        if os.path.isdir(path):
            try:
                images, _ = list_images(path, recursive=True)
            except UserError as e:
                items.append((path, e))
                continue
            if not images:
                items.append((path, UserError('folder without images')))
            items += [(image, image) for image in images]
        else:
            items.append((path, path))
    return items


class ImageURL(str):
    """An input given with -u: always fetched, never opened as a file."""


def load_input(source, max_bytes, timeout, max_pixels=DEFAULT_MAX_PIXELS):
    if isinstance(source, UserError):
        raise source
    if isinstance(source, ImageURL) or '://' in source:
        return open_image(fetch_bytes(source, max_bytes, timeout),
                          max_pixels)
    if not os.path.exists(source):
        raise UserError('no such file')
    return open_image(source, max_pixels)


def inputs_of(image, oversample=False):
    """The network's inputs for one image: float32 (1, 3, 224, 224), or
    its ten crops (10, 3, 224, 224) with oversample."""
    return ten_crops(image) if oversample else preprocess(image)[None]


class Predictor:
    """Runs batches of preprocessed inputs through the model on a device."""

    def __init__(self, model, device, oversample=False):
        self.model = model
        self.device = device
        self.crops = 10 if oversample else 1

    def __call__(self, arrays):
        x = self.device.send(numpy.concatenate(arrays))
        probs = chainer.backend.CpuDevice().send(self.model.predict(x))
        return probs.reshape(-1, self.crops, probs.shape[-1]).mean(axis=1)

    def features(self, arrays):
        """pool5, the 1024-d vector loss3/classifier reads, per input (the
        mean over the ten crops with oversample): float32 N x 1024."""
        x = self.device.send(numpy.concatenate(arrays))
        with chainer.no_backprop_mode(), chainer.using_config('train',
                                                              False):
            pool5 = self.model.features(x, aux=False)[2].array
        pool5 = chainer.backend.CpuDevice().send(pool5)
        return pool5.reshape(len(arrays), self.crops, -1).mean(axis=1)


def check_features_path(path):
    if not path.lower().endswith(('.npz', '.npy')):
        raise UserError('--features {}: the file name must end in .npz or '
                        '.npy'.format(path))


def feature_listing(path):
    """The .txt that holds the names of the features .npy at path: beside
    the file itself, a symlink's target (which atomic_write replaces), so
    the two always go together."""
    return os.path.splitext(written_path(path))[0] + '.txt'


def save_features(path, names, vectors):
    """FILE.npz holds ``features`` (N x 1024 float32) and ``inputs`` (the
    N input names); FILE.npy holds the array, with the names one per line
    in FILE.txt beside it. Written atomically, in input order."""
    vectors = numpy.concatenate(vectors).astype(numpy.float32)
    if path.lower().endswith('.npz'):
        with atomic_write(path) as f:
            save_npz(f, {'features': vectors,
                         'inputs': numpy.array(names, dtype=str)})
        return
    listing = feature_listing(path)
    # The file names' own bytes, so each line opens its file again; a name
    # with a line break is refused before either file is written.
    text = one_per_line(names, 'input', listing).encode('utf-8',
                                                        'surrogateescape')
    with atomic_write(path) as f:
        numpy.save(f, vectors)
    with atomic_write(listing) as f:
        f.write(text)


def top_predictions(probs, labels, k):
    """The k most probable classes, best first, as dicts of index, label and
    probability; probabilities that are not finite (a model with broken
    weights) are a UserError rather than NaN in the output."""
    if not numpy.isfinite(probs).all():
        raise UserError('the model gave non-finite probabilities (NaN or '
                        'infinity): its weights are broken')
    order = numpy.argsort(-probs, kind='stable')[:k]
    return [{'index': int(i), 'label': labels[i],
             'probability': float(probs[i])} for i in order]


class Output:
    """Prints each input's result, or its error, as it comes: a table (or
    one JSON object per line with --json) on stdout, errors on stderr; with
    a CSV path, also one row per input, written (atomically) at the end.

    Names are shown() so undecodable bytes in file names cannot crash a
    strict UTF-8 terminal.
    """

    def __init__(self, as_json, csv_path, top):
        self.as_json = as_json
        self.csv_path = csv_path
        self.rows = [csv_header(top)]
        self.failed = 0

    def result(self, name, predictions):
        name = shown(name)
        if self.as_json:
            print(json.dumps({'input': name, 'predictions': predictions},
                             allow_nan=False))
        elif self.csv_path != '-':
            print(name)
            width = max(3, len(str(len(predictions))))
            for rank, p in enumerate(predictions, 1):
                print('{:{}d} {:6.2f}% {}'.format(
                    rank, width, 100 * p['probability'], p['label']))
        self.rows.append([name, ''] + [
            value for p in predictions
            for value in (p['label'], repr(p['probability']))])

    def error(self, name, error):
        name = shown(name)
        self.failed += 1
        print('error: {}: {}'.format(name, error), file=sys.stderr)
        if self.as_json:
            print(json.dumps({'input': name, 'error': str(error)}))
        # As many fields as the header, as strict CSV readers want.
        self.rows.append([name, str(error)] + [''] * (len(self.rows[0]) - 2))

    def close(self):
        if self.csv_path is None:
            return
        text = io.StringIO()
        csv.writer(text).writerows(self.rows)
        if self.csv_path == '-':
            sys.stdout.write(text.getvalue())
            return
        with atomic_write(self.csv_path) as f:
            f.write(text.getvalue().encode('utf-8'))


def csv_header(top):
    return ['input', 'error'] + ['{}_{}'.format(field, rank)
                                 for rank in range(1, top + 1)
                                 for field in ('label', 'probability')]


def is_results_csv(path):
    """Whether path begins with the header Output writes."""
    start = ','.join(csv_header(1)).encode()
    with open(path, 'rb') as f:
        return f.read(len(start)) == start


def features_rows(path):
    """The number of rows of a features file save_features wrote (.npz
    or .npy, N x 1024 float32), or None for any other file."""
    try:
        if path.lower().endswith('.npz'):
            with zipfile.ZipFile(path) as archive:
                if sorted(archive.namelist()) != ['features.npy',
                                                  'inputs.npy']:
                    return None
                f = archive.open('features.npy')
        else:
            f = open(path, 'rb')
        with f:
            header = read_npy_header(f)
    except (OSError, ValueError, zipfile.BadZipFile):
        return None
    if header is None:
        return None
    shape, _, dtype = header
    if len(shape) != 2 or shape[1] != 1024 or dtype != numpy.float32:
        return None
    return shape[0]


def lists_rows_of(path, npy):
    """Whether path holds a line per row of the features file npy: the
    names save_features wrote beside it (a list file of the same name,
    Caffe's train.txt beside train.npy, is kept)."""
    rows = features_rows(npy)
    if rows is None:
        return False
    with open(path, 'rb') as f:
        return f.read().count(b'\n') == rows


# check_output_path's kinds: an existing output file is replaced only if
# it is what that option writes.
CSV_KIND = (is_results_csv, 'a CSV of results this project wrote')
FEATURES_KIND = (lambda path: features_rows(path) is not None,
                 'a features file this project wrote')


def check_outputs(args, paths, items):
    """Refuses, before any work, a --csv or --features file (or the .txt
    beside a .npy) that is one of the inputs, the files found in input
    folders (``items``, expand_inputs's) included, lies inside an input
    folder, is the model or the other output, is not a regular file, or
    whose folder is missing or cannot be written; and an input whose name
    the .txt beside a .npy could not hold on one line (save_features
    checks again what it writes)."""
    inputs = list(paths) + [source for _, source in items
                            if isinstance(source, str) and
                            not isinstance(source, ImageURL)]
    inputs += [args.model] if args.model else []
    outputs = [('--csv', args.csv, CSV_KIND)] if args.csv not in (
        None, '-') else []
    if args.features:
        check_features_path(args.features)
        outputs.append(('--features', args.features, FEATURES_KIND))
        if args.features.lower().endswith('.npy'):
            listing = feature_listing(args.features)
            outputs.append(('--features', listing, (
                lambda path: lists_rows_of(path, args.features),
                'the names of the features file {}'.format(
                    shown(args.features)))))
            one_per_line([name for name, _ in items], 'input', listing)
    for option, path, kind in outputs:
        check_output_path(path, inputs, option, kind=kind)
        check_writable(os.path.dirname(os.path.abspath(path)), option)
        inputs.append(path)


def classify(args, comm=Single()):
    """Prints (or saves the features of) every input in input order.

    Under MPI rank 0 checks the arguments, makes the model if need be and
    lists the inputs; each rank then scores its contiguous share of them
    (googlenet_mpi.shard) and rank 0 prints its own as they come, then the
    others' in rank order: the same output as one process.
    """
    def setup():
        paths = args.paths if (args.urls or args.paths) else [SAMPLE_IMAGE]
        items = expand_inputs(args.urls, paths)
        check_outputs(args, paths, items)
        if args.json and args.csv == '-':
            raise UserError('--json and --csv - both print to stdout: give '
                            '--csv a file name')
        model_path = args.model
        if model_path is None:
            model_path = googlenet_caffe.default_model()
            ensure_model(model_path, args.caffemodel
                         or googlenet_caffe.default_caffemodel())
        return model_path, items
    model_path, items = on_root(comm, setup)

    def prepared(item):
        return inputs_of(load_input(item[1], args.max_bytes, args.timeout,
                                    args.max_pixels), args.oversample)

    # Decoding starts now, while the model loads, and then keeps the next
    # batch ready while this one runs through the network, on every core: a
    # 3000x2000 JPEG takes one core longer to decode and resize (75 ms)
    # than the forward pass takes for it on two (25 ms).
    with prefetch(prepared, shard(items, comm), args.batchsize + 1,
                  workers=usable_cores()) as ahead:
        return _classify(args, comm, model_path, ahead)


def _classify(args, comm, model_path, ahead):
    """classify's part after the inputs started decoding: (name, future of
    the inputs) pairs of this rank's share come from ``ahead``."""
    model = None

    def load():  # on rank 0, so that a bad model or --labels is one line
        nonlocal model
        model, stored_names = tuned_googlenet.load_model(model_path,
                                                         classify=True)
        return model_class_names(model.n_classes, args.labels, stored_names)
    labels = on_root(comm, load)
    if model is None:  # another rank than 0
        model, _ = tuned_googlenet.load_model(model_path, classify=True)
    device = tuned_googlenet.get_device(
        args.device if args.gpu is None else args.gpu, comm)
    model.to_device(device)
    predictor = Predictor(model, device, args.oversample)
    mine = outcomes(predictor, ahead, args, labels)
    if comm.rank:
        comm.gather(list(mine))

    def report():
        output = Output(args.json, args.csv, min(args.top, len(labels)))
        vectors, vector_names = [], []

        def others():  # a generator: gathers only once mine is done
            for part in comm.gather(None)[1:]:
                yield from part

        # Rank 0's own share first, as it comes; then the others', which
        # they computed meanwhile.
        for name, outcome in itertools.chain(mine, others()):
            if isinstance(outcome, UserError):
                output.error(name, outcome)
            elif args.features:
                vectors.append(outcome[None])
                vector_names.append(name)
            else:
                output.result(name, outcome)
            sys.stdout.flush()
        output.close()
        if vectors:
            save_features(args.features, vector_names, vectors)
            print('wrote pool5 features of {} input{} to {}'.format(
                len(vector_names), '' if len(vector_names) == 1 else 's',
                shown(args.features)))
        return 1 if output.failed else 0
    # Rank 0's verdict, exit code or error, is every rank's.
    return on_root(comm, report)


def outcomes(predictor, ahead, args, labels):
    """(name, outcome) of each item of ``ahead`` ((name, source), future of
    its inputs), in order: its top predictions, its pool5 vector
    (--features), or the UserError that stopped it."""
    batch, names = [], []

    def run():
        done = []
        if batch and args.features:
            done = list(zip(names, predictor.features(batch)))
        elif batch:
            for name, probs in zip(names, predictor(batch)):
                try:
                    done.append((name, top_predictions(probs, labels,
                                                       args.top)))
                except UserError as e:
                    done.append((name, e))
        batch.clear()
        names.clear()
        return done

    for (name, _), inputs in ahead:
        try:
            inputs = inputs.result()
        except UserError as e:
            yield from run()  # the inputs before it first: input order
            yield name, e
            continue
        batch.append(inputs)
        names.append(name)
        if len(batch) == args.batchsize:
            yield from run()
    yield from run()


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('paths', nargs='*',
                        help='image files or folders of images')
    parser.add_argument('-u', '--url', dest='urls', action='append',
                        default=[], help='an image URL (repeatable)')
    parser.add_argument('--model', default=None,
                        help='a model this project wrote (default: {} in '
                        'Chainer\'s model folder, made from the caffemodel '
                        'on the first run)'.format(googlenet_caffe.MODEL_NAME))
    parser.add_argument('--caffemodel', default=None,
                        help='where the caffemodel is, or is downloaded to, '
                        'for the default model (default: {} in Chainer\'s '
                        'model folder)'.format(
                            googlenet_caffe.CAFFEMODEL_NAME))
    parser.add_argument('--labels', help='class names, one per line')
    parser.add_argument('--top', type=positive_int, default=10,
                        help='how many classes to print (default: 10)')
    parser.add_argument('--json', action='store_true',
                        help='one JSON object per input per line (a '
                        'failed input: {"input": ..., "error": ...})')
    parser.add_argument('--csv', metavar='FILE',
                        help='also write one row per input (input, error, '
                        'then label and probability by rank) to FILE; "-" '
                        'prints the rows instead of the table')
    parser.add_argument('--max-pixels', type=positive_int,
                        default=DEFAULT_MAX_PIXELS,
                        help='refuse images of more pixels (width x height;'
                        ' default: %(default)s)')
    parser.add_argument('--features', metavar='FILE',
                        help='save each input\'s 1024-d pool5 vector '
                        'instead of printing classes: FILE.npz (with the '
                        'input names) or FILE.npy (names in FILE.txt)')
    parser.add_argument('--oversample', action='store_true',
                        help='average the ten crops (corners, centre, '
                        'mirrored) as Caffe does')
    parser.add_argument('-b', '--batchsize', type=positive_int, default=8,
                        help='images per forward pass (default: 8)')
    parser.add_argument('-d', '--device', default='@numpy',
                        help='Chainer device spec, e.g. @numpy (the CPU) or '
                        '@cupy:0 (default: %(default)s)')
    parser.add_argument('-g', '--gpu', type=int, default=None,
                        help='the original\'s option: GPU id, -1 for the '
                        'CPU; -g N is -d @cupy:N (default: use --device)')
    parser.add_argument('--max-bytes', type=positive_int,
                        default=MAX_DOWNLOAD_BYTES,
                        help='download size limit per image (default: '
                        '%(default)s)')
    parser.add_argument('--timeout', type=positive_float, default=30,
                        help='seconds an image download may take in all '
                        '(default: %(default)s)')
    add_option(parser)
    return parser


def main(argv=None):
    # Intermixed: files may follow -u URL (plain parse_args refuses them).
    return run_main(classify, build_parser().parse_intermixed_args(argv))


def script(argv=None):
    """main() as the command runs it, in a process of its own: what the
    imports made (Chainer's hundreds of modules) lives until the exit, so
    it is frozen out of the garbage collector's walks, the one at the exit
    included (0.15 s of a one-image run, against 0.02 s)."""
    gc.freeze()
    return main(argv)


if __name__ == '__main__':
    sys.exit(script())
