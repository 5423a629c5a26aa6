"""What a finished run reports: its best model scored on the validation set."""
import sys

import numpy

from googlenet_chainer.inference import Predictor, predict_dataset
from googlenet_chainer.model_file import load_model
from googlenet_chainer.reports import (best_epoch, class_report,
                                       confusion_matrix, report_text,
                                       write_report_files)


def report_best_model(args, plan, trainer, val_set, device):
    """Rank 0's end of a run: the best model scored and reported.

    Says whether --patience stopped the run early, scores the best model
    (plan.output) on the whole validation set, prints the report and keeps
    it in --out (reports.write_report_files: JSON, text, the confusion
    matrix drawn plain and normalised).

    Args:
        args: train_googlenet.py's options.
        plan: the run's run_folder.Plan.
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
    labels, probs = validation_probabilities(
        args, plan, Predictor(model, device), val_set)
    confusion = confusion_matrix(labels, probs.argmax(axis=1),
                                 model.n_classes)
    report = class_report(confusion, plan.class_names)
    report['best_epoch'], report['best_validation_accuracy'] = \
        best_epoch(log)
    report['unreadable'] = plan.unreadable
    text = report_text(report)
    print(text)
    write_report_files(args.out, report, text, 'validation confusion matrix')
    print('best model: {}'.format(plan.output))


def validation_probabilities(args, plan, predictor, val_set):
    """The best model's probabilities of the validation images.

    From the feature cache with --cache-features (the stages above the
    cut on each image's cached output), else from the images (an image
    that became unreadable since the data report is left out, with a
    warning on stderr).

    Args:
        args: the options (--cache-features, --val-batchsize,
            --max-pixels).
        plan: the run's run_folder.Plan (its val_pairs).
        predictor: an inference.Predictor of the best model, frozen at
            the run's cut, one crop.
        val_set: the whole validation set; with --cache-features a
            CachedFeatures.

    Returns:
        (labels, float32 N x classes probabilities), one row per image
        scored.
    """
    if args.cache_features:
        step = args.val_batchsize
        probs = [predictor.probabilities_from_cache(numpy.stack([
            val_set.parts(j)[-1]
            for j in range(i, min(i + step, len(val_set)))]))
            for i in range(0, len(val_set), step)]
        return val_set.labels, numpy.concatenate(probs)
    probs, kept, bad = predict_dataset(predictor, plan.val_pairs,
                                       args.val_batchsize, args.max_pixels)
    for line in bad:
        print('warning: skipped unreadable {}'.format(line),
              file=sys.stderr, flush=True)
    return [label for _, label in kept], probs
