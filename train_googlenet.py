"""Fine-tunes GoogLeNet's replaced heads on your own images.

    python convert_caffe_model.py --classes N
    python train_googlenet.py --train DATA [--val DATA] [--cache-features]
    python train_googlenet.py --resume latest --out DIR [--epoch N]

DATA is a folder with one sub-folder of images per class (the folder names,
sorted, are the class names) or a list file of ``path label`` lines. The trunk
is frozen up to --freeze-until; the best model by validation accuracy is saved
with its class names, so googlenet_predict.py --model prints them.
"""
import sys

if __name__ == '__main__':
    # Nothing is written during the imports below (a second or more).
    from googlenet_chainer.interrupts import exit_on_early_interrupt
    exit_on_early_interrupt()


import numpy  # noqa: E402

import tuned_googlenet  # noqa: E402
from googlenet_chainer import cli, interrupts  # noqa: E402
from googlenet_chainer.mpi import (Single,  # noqa: E402
                                   add_communicator_option,
                                   on_root_with_model, run_main)
from googlenet_chainer.training import run_folder  # noqa: E402
from googlenet_chainer.training.plan import (  # noqa: E402
    plan_run, starting_model)
from googlenet_chainer.training.final_report import (  # noqa: E402
    report_best_model)
from googlenet_chainer.training.optimizers import (  # noqa: E402
    OPTIMIZERS, POLICIES)
from googlenet_chainer.training.trainer import (  # noqa: E402
    build_trainer, set_up_model, training_sets)
from googlenet_chainer.training.views import (  # noqa: E402
    DEFAULT_VIEWS, parse_views)


def train(args, comm=Single()):
    """A run as the command line gives it, step by step. Under MPI (comm a
    Distributed) rank 0 alone checks the run and its data and writes every
    file of the run; each rank computes its share of the feature cache and
    trains on its shard of the examples."""
    with run_folder.resumable_failures(args.out, comm.rank), \
            numpy.errstate(over='ignore', invalid='ignore'):
        # A diverging loss is reported by StopOnNonFinite in one line, not
        # by numpy's overflow warnings on the way there.
        model, plan = on_root_with_model(
            comm, lambda: plan_run(args, comm.size),
            lambda plan: starting_model(plan.args.model,
                                        plan.config['freeze_until'],
                                        plan.class_names))
        args = plan.args  # a resumed run's options are those it recorded
        device = set_up_model(args, model, plan, comm)
        train_set, val_set = training_sets(args, plan, model, device, comm)
        trainer = build_trainer(args, plan, model, train_set, val_set,
                                device, comm)
        try:
            trainer.run(show_loop_exception_msg=False)
            if not comm.rank:
                report_best_model(args, plan, trainer, val_set, device)
        finally:
            run_folder.release(args.out)


def main(argv=None):
    return interrupts.run_interruptibly(run_main, train,
                                        parse_arguments(argv))


def parse_arguments(argv=None):
    """The command line, with ``given``: the options it gives (told from
    the defaults by cli.parse_arguments), which a resumed run checks
    against those it recorded. --train is required for a new run only.

    Args:
        argv: the arguments; None for sys.argv[1:].

    Returns:
        argparse.Namespace.
    """
    parser = build_parser()
    args = cli.parse_arguments(parser, argv)
    if args.train is None and not args.resume:
        parser.error('the following arguments are required: --train (or '
                     '--resume latest, which takes it from run.json)')
    return args


def build_parser():
    parser = cli.ArgumentParser(description=__doc__.split('\n')[0])
    data = parser.add_argument_group('data')
    data.add_argument('--train',
                      help='folder of class folders, or a list file '
                      '(required for a new run, --resume takes the run\'s: '
                      'no default)')
    data.add_argument('--val', help='validation data (default: hold out '
                      '--val-ratio of --train)')
    data.add_argument('--val-ratio', type=float, default=0.1,
                      help='share of each class held out when there is no '
                      '--val, strictly between 0 and 1 (default: '
                      '%(default)s)')
    data.add_argument('--root', default=None,
                      help='paths in list files are relative to this '
                      '(default: the list file\'s folder)')
    data.add_argument('--labels', help='class names of a list file, one per '
                      'line, in label order (default: the label numbers)')
    cli.add_max_pixels_option(data)

    model = parser.add_argument_group('model and heads')
    model.add_argument('--model', default='tuned_googlenet.model',
                       help='the starting model, made by convert_caffe_'
                       'model.py --classes N (default: %(default)s)')
    model.add_argument('--freeze-until', type=str.lower,
                       default=tuned_googlenet.DEFAULT_FREEZE_UNTIL,
                       help='last frozen trunk layer, or none (default: '
                       '%(default)s: only the heads train)')
    model.add_argument('--aux-heads', choices=('on', 'off'), default='on',
                       help='off: train loss3 alone and cache without the '
                       'aux heads\' inputs (4 KB per view instead of 70 KB '
                       'at inc5b); with the trunk frozen the aux heads do '
                       'not change loss3\'s classifier (default: '
                       '%(default)s, the original\'s three heads)')
    model.add_argument('--cache-features', action='store_true',
                       help='compute the frozen part once per image and '
                       'view, at a --freeze-until from inc3a to inc5b, and '
                       'train the layers above it on that (default: off)')
    model.add_argument('--cache-views', type=parse_views,
                       default=DEFAULT_VIEWS, metavar='N|"N random"',
                       help='views cached per training image, one drawn '
                       'each epoch: 1 (centre crop), 2 (and its mirror), 10 '
                       '(Caffe\'s ten crops), or "N random" (crops of random '
                       'scale and aspect, seeded per image; default: '
                       '%(default)s)')

    optimisation = parser.add_argument_group('optimisation')
    optimisation.add_argument('--batchsize', '-B', type=cli.positive_int,
                              default=32, help='images per training step '
                              '(default: %(default)s)')
    optimisation.add_argument('--epoch', '-E', type=cli.positive_int,
                              default=10, help='passes over the training '
                              'set (default: %(default)s)')
    optimisation.add_argument(
        '--optimizer', choices=tuple(OPTIMIZERS), default='momentum',
        help='; '.join('{}: {}'.format(*item) for item in OPTIMIZERS.items())
        + ' (default: %(default)s)')
    optimisation.add_argument('--lr', type=cli.positive_float, default=0.01,
                              help='learning rate (default: %(default)s)')
    optimisation.add_argument(
        '--lr-policy', choices=POLICIES, default='fixed',
        help='fixed; step: times --gamma every --lr-step epochs; poly: lr * '
        '(1 - iteration / iterations) ** --power, as Caffe\'s GoogLeNet '
        'quick_solver; cosine: lr * (1 + cos(pi * iteration / iterations)) '
        '/ 2 (default: %(default)s)')
    optimisation.add_argument('--warmup', type=cli.non_negative_float,
                              default=0, metavar='EPOCHS',
                              help='epochs of linear warm-up: update k of W '
                              'runs at k / W of the policy\'s rate (default: '
                              '%(default)s)')
    optimisation.add_argument('--lr-step', type=cli.positive_int, default=5,
                              help='epochs between steps of --lr-policy step '
                              '(default: %(default)s)')
    optimisation.add_argument('--gamma', type=cli.positive_float,
                              default=0.1, help='factor of each step of '
                              '--lr-policy step (default: %(default)s)')
    optimisation.add_argument('--power', type=cli.positive_float,
                              default=0.5, help='exponent of --lr-policy '
                              'poly (default: %(default)s)')
    optimisation.add_argument('--momentum', type=cli.unit_fraction,
                              default=0.9, help='MomentumSGD\'s momentum '
                              '(default: %(default)s)')
    optimisation.add_argument('--weight-decay', type=cli.non_negative_float,
                              default=2e-4, help='L2 weight decay; with '
                              'adamw decoupled, lr x this of each weight an '
                              'update, as PyTorch\'s AdamW (default: '
                              '%(default)s)')
    optimisation.add_argument('--label-smoothing', type=cli.unit_fraction,
                              default=0.0, metavar='EPS',
                              help='targets 1 - EPS on the class and EPS '
                              'spread over all classes (default: '
                              '%(default)s)')
    optimisation.add_argument(
        '--class-weight', choices=('none', 'balanced'), default='none',
        help='balanced: weight the loss by inverse class frequency in the '
        'training set (default: %(default)s)')
    optimisation.add_argument('--seed', type=cli.random_seed, default=0,
                              help='seeds the validation split, the shuffle, '
                              'the crops and mirrors, and dropout (default: '
                              '%(default)s)')
    optimisation.add_argument('--patience', type=cli.positive_int,
                              default=None, help='stop when validation '
                              'accuracy has not improved for N epochs '
                              '(default: run all --epoch)')

    run = parser.add_argument_group('run folder and snapshots')
    run.add_argument('--out', '-o', default='result',
                     help='the run\'s folder: configuration, log, plots, '
                     'snapshots, report (default: %(default)s)')
    run.add_argument('--output', default=None,
                     help='the best model (default: OUT/tuned_googlenet.'
                     'model)')
    run.add_argument('--resume', help='a snapshot of this run to continue '
                     'from, or "latest" for the newest in --out, with the '
                     'options the run recorded: give only those that may '
                     'change, such as --epoch (default: a new run)')
    run.add_argument('--snapshot-interval', action=cli.SnapshotInterval,
                     nargs='+', default=(1, 'epoch'), metavar=('N', 'UNIT'),
                     help='how often to snapshot: N epoch or N iteration, '
                     'UNIT epoch or iteration (a bare N counts iterations; '
                     'default: 1 epoch)')
    run.add_argument('--keep-snapshots', type=cli.positive_int, default=2,
                     help='newest snapshots kept, the older deleted '
                     '(default: %(default)s)')

    loading = parser.add_argument_group('loading and devices')
    loading.add_argument('--val-batchsize', type=cli.positive_int,
                         default=32, help='images per validation batch '
                         '(default: %(default)s)')
    loading.add_argument('--loaderjob', '-j', type=cli.non_negative_int,
                         default=2, help='image-decoding processes, 0 for '
                         'none (default: %(default)s)')
    loading.add_argument('--loader-timeout', type=cli.positive_float,
                         default=60, help='seconds to wait for a batch from '
                         'the loader processes before stopping (default: '
                         '%(default)s)')
    cli.add_device_option(loading)
    cli.add_progress_option(loading)
    add_communicator_option(loading)
    return parser


if __name__ == '__main__':
    sys.exit(main())
