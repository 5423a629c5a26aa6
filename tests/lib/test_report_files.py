"""report_files and page: the files a report is kept in, read back."""
import csv
import io
import os

import numpy
from PIL import Image

from googlenet_chainer import labels, report_files, reports
from googlenet_chainer.files import atomic_write

from helpers import Page
from image_fixtures import two_tone

NAMES = ['<b>', 'A & B', '\u732b', 'n01440764 tench, Tinca tinca']


def scored_images(tmp_path, probs, truth):
    """A Scored of small images, one per row, in class folders."""
    pairs = []
    for i, label in enumerate(truth):
        folder = tmp_path / 'data' / 'c{}'.format(label)
        folder.mkdir(parents=True, exist_ok=True)
        path = str(folder / '{}.png'.format(i))
        two_tone((40 * i, 90, 200), (300, 200)).save(path)
        pairs.append((path, label))
    return report_files.Scored(numpy.array(probs, numpy.float32), pairs,
                               NAMES, 10 ** 6)


def test_page_shows_the_most_confident_mistakes_inline_names_escaped(
        tmp_path, monkeypatch):
    probs = [[0.1, 0.7, 0.1, 0.1],    # 0 <b> taken for A & B, 0.7
             [0.05, 0.05, 0.9, 0.0],  # 1 <b> taken for cat, 0.9
             [0.6, 0.2, 0.1, 0.1],    # 2 right
             [0.2, 0.1, 0.1, 0.6],    # 3 A & B taken for tench, 0.6
             [0.1, 0.8, 0.05, 0.05],  # 4 <b> taken for A & B, 0.8
             [0.1, 0.1, 0.7, 0.1]]    # 5 right
    scored = scored_images(tmp_path, probs, [0, 0, 0, 1, 0, 2])
    os.unlink(scored.pairs[1][0])  # gone since it was scored
    report = reports.evaluation_report(scored.probs, scored.pairs, NAMES)
    out = str(tmp_path / 'out')
    os.mkdir(out)
    monkeypatch.setattr(report_files, 'MISTAKES_SHOWN', 3)
    report_files.write_report_files(out, report,
                                    reports.format_evaluation(report),
                                    scored, 'test')
    assert sorted(os.listdir(out)) == sorted(report_files.FILES)
    page = Page(os.path.join(out, 'report.html'))
    # The three most confident of the four mistakes (0.9, 0.8, 0.7), in
    # groups by pair: <b> for cat first, then <b> for A & B.
    assert page.mistakes == [os.path.join('c0', '1.png'),
                             os.path.join('c0', '4.png'),
                             os.path.join('c0', '0.png')]
    # Every image is inline: the two thumbnails as small JPEGs (the file
    # that is gone is named instead).
    thumbnails = [Image.open(io.BytesIO(data))
                  for data in page.inline_images()]
    assert [(t.format, max(t.size)) for t in thumbnails] == [
        ('JPEG', 128)] * 2
    assert 'cannot show: no such file' in page.text
    # Names are text, escaped: no <b> tag, the & and the name in Japanese
    # read back as written.
    assert 'b' not in page.tags
    for name in NAMES:
        assert name in page.text
    assert '<b> taken for A & B' in ' '.join(page.text.split())


def test_predictions_csv_is_the_scores_row_by_row(tmp_path):
    rng = numpy.random.RandomState(0)
    probs = rng.dirichlet(numpy.ones(4), 5)
    truth = [3, 1, 0, 2, 3]
    scored = report_files.Scored(probs.astype(numpy.float32),
                                 [('a/{}.png'.format(i), label)
                                  for i, label in enumerate(truth)],
                                 NAMES, 10 ** 6)
    rows = report_files.predictions_rows(scored)
    path = tmp_path / 'p.csv'
    with atomic_write(str(path)) as f:
        text = io.StringIO()
        csv.writer(text).writerows(rows)
        f.write(text.getvalue().encode('utf-8'))
    with open(path, newline='', encoding='utf-8') as f:
        table = list(csv.DictReader(f))
    assert list(table[0])[:8] == [
        'input', 'true_index', 'true_class_id', 'true_name',
        'predicted_index', 'predicted_class_id', 'predicted_name', 'correct']
    for row, (path, label), p in zip(table, scored.pairs, scored.probs):
        order = numpy.argsort(-p, kind='stable')
        assert (row['input'], int(row['true_index'])) == (path, label)
        assert int(row['predicted_index']) == order[0]
        assert row['correct'] == str(order[0] == label)
        # Four classes: all four ranks, probabilities to the last digit.
        assert [int(row['index_{}'.format(k)]) for k in range(1, 5)] == \
            list(order)
        assert [float(row['probability_{}'.format(k)])
                for k in range(1, 5)] == [float(p[j]) for j in order]
    # Names that are not all synset_words.txt lines: the name as both.
    assert {(row['true_class_id'], row['true_name']) for row in table} == {
        (NAMES[label], NAMES[label]) for label in truth}
    # ImageNet's: the wnid and the words apart.
    imagenet = labels.read_labels(labels.SYNSET_WORDS)[:4]
    rows = report_files.predictions_rows(scored._replace(
        class_names=imagenet))
    assert rows[1][1:4] == [3, 'n01491361', 'tiger shark, Galeocerdo cuvieri']


def test_many_classes_show_their_most_confused_pairs(tmp_path):
    """Beyond GRID_LIMIT classes the figures, the text and the page give
    the most confused pairs: a grid of so many would be unreadable (and
    the 1000-class one ran out of memory)."""
    n = reports.GRID_LIMIT + 10
    names = ['class {}'.format(i) for i in range(n)]
    truth = numpy.arange(n)
    probs = numpy.full((n, n), 0.1 / (n - 1), numpy.float32)
    probs[truth, (truth + truth % 2) % n] = 0.9  # odd classes taken for +1
    scored = report_files.Scored(probs, [(str(tmp_path / '{}.png'.format(i)),
                                          label)
                                         for i, label in enumerate(truth)],
                                 names, 10 ** 6)
    report = reports.evaluation_report(probs, scored.pairs, names)
    text = reports.format_evaluation(report)
    report_files.write_report_files(str(tmp_path), report, text, scored,
                                    'test')
    assert 'confusion matrix (rows' not in text
    assert '      1 100.0%  class 1 -> class 2' in text.splitlines()
    page = Page(str(tmp_path / 'report.html'))
    assert 'Most confused pairs' in page.text and 'table' in page.tags
    assert 'true \\ predicted' not in page.text
    # No thumbnail of the files that are not there, each said so.
    assert page.inline_images() == [] and page.text.count(
        'cannot show: no such file') == len(page.mistakes) == n // 2
