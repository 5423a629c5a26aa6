"""What a finished run reports: its best model scored on the validation set."""
import os

import numpy

from googlenet_chainer.console import shown
from googlenet_chainer.inference import Predictor, predict_dataset
from googlenet_chainer.model_file import load_model
from googlenet_chainer.report_files import Scored, write_report_files
from googlenet_chainer.reports import (best_epoch, evaluation_report,
                                       report_text)
from googlenet_chainer.training.views import changed_image
from googlenet_chainer.training.extensions import PlotLog


def report_best_model(args, plan, trainer, val_set, device):
    """Rank 0's end of a run: the best model scored and reported.

    Says whether --patience stopped the run early, scores the best model
    (plan.output) on the whole validation set, prints the report and keeps
    it in --out (report_files.write_report_files: report.html with the
    curves PlotLog drew, JSON, text, predictions.csv, the confusion
    figures).

    Args:
        args: train_googlenet.py's options.
        plan: the run's plan.Plan.
        trainer: the Trainer, run to its end.
        val_set: the whole validation set as training_sets made it.
        device: where the model runs.

    Raises:
        UserError: the best model cannot be loaded (model_file.load_model)
            or a report file cannot be written.
    """
    log = trainer.get_extension('LogReport').log
    if trainer.updater.epoch < args.epoch:
        print('stopped early at epoch {}: validation accuracy has not '
              'improved for {} epoch{} (--patience)'.format(
                  trainer.updater.epoch, args.patience,
                  '' if args.patience == 1 else 's'))
    model, _ = load_model(plan.output, plan.config['freeze_until'])
    model.to_device(device)
    pairs, probs = validation_probabilities(
        args, plan, Predictor(model, device), val_set)
    report = evaluation_report(probs, pairs, plan.class_names)
    report['best_epoch'], report['best_validation_accuracy'] = \
        best_epoch(log)
    report.update(model=shown(plan.output), data=', '.join(
        shown(path) for path in (args.train, args.val) if path),
        unreadable=plan.unreadable)
    text = report_text(report)
    print(text)
    write_report_files(
        args.out, report, text,
        Scored(probs, pairs, plan.class_names, args.max_pixels),
        'validation', [(caption, os.path.join(args.out, name))
                       for name, caption in PlotLog.CAPTIONS.items()
                       if os.path.exists(os.path.join(args.out, name))])
    print('best model: {}'.format(plan.output))


def validation_probabilities(args, plan, predictor, val_set):
    """The best model's probabilities of the validation images.

    From the feature cache with --cache-features (the stages above the
    cut on each image's cached output), else from the images, every one:
    a report on fewer than the epochs were scored on would not be theirs.

    Args:
        args: the options (--cache-features, --val-batchsize,
            --max-pixels).
        plan: the run's plan.Plan (its val_pairs).
        predictor: an inference.Predictor of the best model, frozen at
            the run's cut, one crop.
        val_set: the whole validation set; with --cache-features a
            CachedFeatures.

    Returns:
        ([(path, label)] of the images scored, float32 N x classes
        probabilities), a row per image.

    Raises:
        UserError: an image cannot be read any more (views.changed_image).
    """
    if args.cache_features:
        step = args.val_batchsize
        probs = [predictor.probabilities_from_cache(numpy.stack([
            val_set.parts(j)[-1]
            for j in range(i, min(i + step, len(val_set)))]))
            for i in range(0, len(val_set), step)]
        # The cache's rows are the validation images, in order.
        return plan.val_pairs, numpy.concatenate(probs)
    probs, kept, bad = predict_dataset(predictor, plan.val_pairs,
                                       args.val_batchsize, args.max_pixels)
    if bad:  # 'path: why', the first in the pairs' order
        scored = {path for path, _ in kept}
        path = next(path for path, _ in plan.val_pairs if path not in scored)
        raise changed_image(path, bad[0][len(path) + 2:])
    return kept, probs
