"""A training run in one process, step by step as train_googlenet.train
takes them, for tests that look between the steps."""
import collections

import train_googlenet
from googlenet_chainer.training.plan import plan_run
from googlenet_chainer.training.final_report import report_best_model
from googlenet_chainer.training.trainer import (build_trainer, set_up_model,
                                                training_sets)

Run = collections.namedtuple(
    'Run', 'args model plan device train_set val_set trainer')


def datasets_of(argv):
    """(args, model, plan, device, train set, validation set) of a run
    planned and with its feature cache computed, no trainer yet."""
    args = train_googlenet.parse_arguments(argv)
    model, plan = plan_run(args)
    args = plan.args
    device = set_up_model(args, model, plan)
    return (args, model, plan, device) + training_sets(args, plan, model,
                                                       device)


def start(argv):
    """A Run ready to run (resumed, if argv says --resume)."""
    args, model, plan, device, train_set, val_set = datasets_of(argv)
    return Run(args, model, plan, device, train_set, val_set,
               build_trainer(args, plan, model, train_set, val_set, device))


def finish(run):
    """Runs the trainer to its end and reports, as the script does."""
    run.trainer.run(show_loop_exception_msg=False)
    report_best_model(run.args, run.plan, run.trainer, run.val_set,
                      run.device)
