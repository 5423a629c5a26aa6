"""reports: scores and their text."""
import json
import os

import numpy

from googlenet_chainer import reports


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
    reports.write_report_files(out, report, format_evaluation, 'test')
    with open(os.path.join(out, 'report.txt'), encoding='utf-8') as f:
        assert 'caf\\xe9' in f.read()


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
