"""reports: scores and their text."""
import json
import os

import numpy

from googlenet_chainer import report_files, reports


def test_undecodable_names_are_shown_escaped(tmp_path):
    """A class folder and file named in Latin-1 on a UTF-8 system: the
    report prints and stores them with the bytes escaped, no traceback."""
    name = b'caf\xe9'.decode('utf-8', 'surrogateescape')
    probs = numpy.array([[0.2, 0.8], [0.9, 0.1]], numpy.float32)
    pairs = [(os.path.join(str(tmp_path), name, name + '.png'), 0),
             ('b.png', 1)]
    report = reports.evaluation_report(probs, pairs, [name, 'tea'])
    assert report['classes'][0]['class'] == 'caf\\xe9'
    assert report['misclassified'][0]['input'].endswith('caf\\xe9.png')
    format_evaluation = reports.format_evaluation(report)
    format_evaluation.encode('utf-8')  # strict: no surrogates left
    json.dumps(report, ensure_ascii=False).encode('utf-8')
    out = str(tmp_path / 'eval')
    os.mkdir(out)
    report_files.write_report_files(
        out, report, format_evaluation,
        report_files.Scored(probs, pairs, [name, 'tea'], 10 ** 6), 'test')
    for written in ('report.txt', 'report.html', 'predictions.csv'):
        with open(os.path.join(out, written), encoding='utf-8') as f:
            assert 'caf\\xe9' in f.read(), written


def test_top_k_is_named_by_its_k():
    probs = numpy.array([[0.2, 0.5, 0.3], [0.6, 0.1, 0.3]], numpy.float32)
    report = reports.evaluation_report(
        probs, [('a.png', 2), ('b.png', 1)], ['x', 'y', 'z'])
    # Only a top-k that can be below 1: top-3 of 3 classes always is 1.
    assert (report['top_k'], report['top1'], report['top2']) == (2, 0.0, 0.5)
    assert 'top3' not in report and 'top5' not in report
    text = reports.format_evaluation(report)
    assert 'top-2 accuracy 0.5000 (1 of 2 images)' in text
    assert 'top-3' not in text
    two = reports.evaluation_report(probs[:1, :2], [('a.png', 1)],
                                    ['x', 'y'])
    assert two['top_k'] == 1 and 'top2' not in two
    assert reports.format_evaluation(two).splitlines()[:2] == [
        'top-1 accuracy 1.0000 (1 of 1 images)',
        'precision    recall        f1 support  class']


def test_averages_are_scikit_learns():
    """scikit-learn's own example of classification_report: y_true
    [0, 1, 2, 2, 2], y_pred [0, 0, 2, 2, 1]; its printed averages are
    macro 0.50 0.56 0.49 and weighted 0.70 0.60 0.61, support 5."""
    report = reports.class_report(reports.confusion_matrix(
        [0, 1, 2, 2, 2], [0, 0, 2, 2, 1], 4), ['a', 'b', 'c', 'never'])
    # Class 3, neither true nor predicted, is no part of the averages.
    for key, expected in (('macro_avg', (0.50, 0.56, 0.49)),
                          ('weighted_avg', (0.70, 0.60, 0.61))):
        row = report[key]
        assert [round(row[k], 2) for k in ('precision', 'recall', 'f1')] \
            == list(expected)
        assert row['support'] == 5
    text = reports.format_report(report).splitlines()
    assert text[5].split() == ['0.500', '0.556', '0.489', '5', 'macro',
                               'avg']
    assert text[6].split()[:3] == ['0.700', '0.600', '0.613']


def test_many_classes_give_their_most_confused_pairs_not_a_grid():
    n = reports.GRID_LIMIT + 1
    names = ['class {}'.format(i) for i in range(n)]
    truth = [0] * 4 + [1] * 2 + [2] * 3
    guess = [5] * 3 + [0] + [0] * 2 + [2] * 2 + [7]
    report = reports.class_report(reports.confusion_matrix(truth, guess, n),
                                  names)
    assert report['most_confused'] == [
        {'true': 'class 0', 'predicted': 'class 5', 'images': 3,
         'share': 0.75},
        {'true': 'class 1', 'predicted': 'class 0', 'images': 2,
         'share': 1.0},
        {'true': 'class 2', 'predicted': 'class 7', 'images': 1,
         'share': 1 / 3}]
    # By share, the whole of class 1 first.
    assert [p['true'] for p in reports.most_confused(
        report['confusion'], names, by='share')] == [
            'class 1', 'class 0', 'class 2']
    lines = reports.format_report(report).splitlines()
    start = lines.index('most confused pairs of the {} classes (images, '
                        'share of the true class\'s, true -> predicted):'
                        .format(n))
    assert [line.split() for line in lines[start + 1:]] == [
        ['3', '75.0%', 'class', '0', '->', 'class', '5'],
        ['2', '100.0%', 'class', '1', '->', 'class', '0'],
        ['1', '33.3%', 'class', '2', '->', 'class', '7']]
