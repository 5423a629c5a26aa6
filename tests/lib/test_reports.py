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
    assert (report['top_k'], report['top1'], report['top3']) == (3, 0.0, 1.0)
    assert 'top5' not in report
    assert 'top-3 accuracy 1.0000 (2 of 2 images)' in \
        reports.format_evaluation(report)
