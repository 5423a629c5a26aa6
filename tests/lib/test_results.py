"""results: what prediction prints."""
import csv
import json

from googlenet_chainer import results


def test_prediction_prints_control_characters_escaped(capsys, tmp_path):
    output = results.Output(False, str(tmp_path / 'p.csv'), 1)
    name = 'a\nb\x1b[2J\x07\r.png'
    output.result(name, [{'index': 0, 'class_id': 'ant', 'name': 'ant',
                          'probability': 0.5}])
    output.error(name, 'not an image')
    output.close()
    out, err = capsys.readouterr()
    assert out.splitlines()[0] == 'a\\nb\\x1b[2J\\x07\\r.png'
    assert len(out.splitlines()) == 2
    assert err == 'error: a\\nb\\x1b[2J\\x07\\r.png: not an image\n'
    with open(str(tmp_path / 'p.csv'), newline='') as f:
        rows = list(csv.reader(f))
    assert [row[0] for row in rows[1:]] == ['a\\nb\\x1b[2J\\x07\\r.png'] * 2
    output = results.Output(True, None, 1)
    output.result(name, [{'index': 0, 'class_id': 'ant', 'name': 'ant',
                          'probability': 0.5}])
    assert json.loads(capsys.readouterr().out)['input'] == (
        'a\\nb\\x1b[2J\\x07\\r.png')
