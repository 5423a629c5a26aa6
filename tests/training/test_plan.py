"""training.plan: the starting model's classifiers matched to the data's
classes."""
import numpy
import pytest

from googlenet_chainer import errors, model_file
from googlenet_chainer.training import plan

HEADS = ('loss1_fc2', 'loss2_fc2', 'loss3_fc')


def trained(path, names):
    """model_3 as a fine-tuned model of names: its heads trained."""
    model, _ = model_file.load_model(path)
    model.untrained_heads = ()
    return model, list(names)


def rows(model):
    return {name: (getattr(model, name).W.array.copy(),
                   getattr(model, name).b.array.copy()) for name in HEADS}


def test_a_fine_tuned_models_rows_follow_the_data_by_class_name(model_3):
    model, stored = trained(model_3, ['cat', 'checks', 'stripes'])
    before = rows(model)
    said = []
    plan.match_heads(model, stored, ['cat', 'checks', 'stripes'], 'm',
                     said.append)
    assert said == [] and all(
        numpy.array_equal(before[name][k], rows(model)[name][k])
        for name in HEADS for k in (0, 1))
    plan.match_heads(model, stored, ['stripes', 'cat', 'checks'], 'm',
                     said.append)
    after = rows(model)
    for name in HEADS:
        for k in (0, 1):
            assert numpy.array_equal(after[name][k], before[name][k][[2, 0,
                                                                      1]])
    assert said == ["m: its classifiers' rows taken by class name, in the "
                    "data's order (stripes, cat, checks)"]


def test_a_fine_tuned_model_of_other_classes_is_refused(model_3):
    model, stored = trained(model_3, ['cat', 'checks', 'stripes'])
    with pytest.raises(errors.UserError) as e:
        plan.match_heads(model, stored, ['checks', 'stripes', 'zebra'], 'm')
    assert str(e.value) == (
        "m was trained for the classes cat, checks, stripes, and the data's "
        "are checks, stripes, zebra: its classifier's rows would each serve "
        "another class; start from convert_caffe_model.py --classes 3 "
        "(fresh heads), or train on data of its classes")
    # A conversion's fresh heads serve no class yet: any data.
    model.untrained_heads = ('loss3_fc',)
    plan.match_heads(model, stored, ['checks', 'stripes', 'zebra'], 'm')
    plan.match_heads(model, None, ['checks', 'stripes', 'zebra'], 'm')


def test_every_rank_starts_from_the_same_rows(model_3, tmp_path):
    model, stored = trained(model_3, ['cat', 'checks', 'stripes'])
    path = str(tmp_path / 'tuned.model')
    model_file.save_model(path, model, stored)
    order = ['checks', 'stripes', 'cat']
    root, names = model_file.load_model(path, 'inc5b')
    plan.match_heads(root, names, order, path, lambda line: None)
    other = plan.starting_model(path, 'inc5b', order)
    assert all(numpy.array_equal(rows(root)[name][k], rows(other)[name][k])
               for name in HEADS for k in (0, 1))
