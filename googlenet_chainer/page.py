"""report.html: a report as one page to look at, self-contained.

The summary, the curves, the most confident mistakes as thumbnails grouped
by the pair of classes confused, the confusion matrix (or its most
confused pairs) and the per-class scores. The page opens from the file
system anywhere: figures and thumbnails are inline (data: URIs), the style
is in the page, and nothing is fetched (no script, no web font); names are
drawn in the browser's fonts, so any script shows."""
import base64
import html
import io

from googlenet_chainer.errors import UserError
from googlenet_chainer.files import atomic_write
from googlenet_chainer.images import open_image
from googlenet_chainer.prefetch import prefetch, usable_cores

# A thumbnail's longer side, in pixels, and its JPEG quality.
THUMBNAIL = 128
QUALITY = 80
STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5em auto;
       max-width: 80em; padding: 0 1em; color: #222; }
h1 { font-size: 1.5em; } h2 { margin-top: 2em; border-bottom: 1px solid #ccc; }
h3 { font-size: 1em; margin: 1.2em 0 0.4em; }
table { border-collapse: collapse; }
td, th { padding: 0.2em 0.6em; text-align: left; vertical-align: top; }
td.n, th.n { text-align: right; font-variant-numeric: tabular-nums; }
.scores tr:nth-child(even) { background: #f4f4f4; }
.scores tr.avg { font-weight: bold; border-top: 2px solid #888; }
.scores tr.avg + tr.avg { border-top: none; }
.name { overflow-wrap: break-word; max-width: 32em; }
.wide { overflow-x: auto; }
.summary th { font-weight: normal; color: #555; }
.grid td { text-align: center; min-width: 1.6em; padding: 0.2em 0.2em;
           border: 1px solid #eee; }
.grid th.name { min-width: 12em; max-width: 22em; font-weight: normal; }
.grid td.right { outline: 2px solid #888; outline-offset: -2px; }
.grid th.n { text-align: center; }
.groups { display: flex; flex-wrap: wrap; gap: 0.5em 2.5em;
          align-items: flex-start; }
.group h3 { max-width: 22em; overflow-wrap: break-word; }
figure { display: inline-block; margin: 0 0.6em 0.6em 0; width: 132px;
         vertical-align: top; font-size: 0.8em; }
figure img, .missing { display: block; max-width: 128px; max-height: 128px; }
.missing { width: 128px; height: 96px; background: #eee; color: #a00;
           overflow: hidden; }
figcaption { overflow-wrap: anywhere; }
.wrong { color: #b00; } .right { color: #070; }
.curves { display: flex; flex-wrap: wrap; gap: 1em; }
.curves img { flex: 1 1 40%; min-width: 20em; max-width: 100%; }
.note { color: #555; }
"""


def _e(text):
    """text escaped for HTML, quotes included."""
    return html.escape(str(text), quote=True)


def thumbnail(path, max_pixels):
    """An image as a small inline JPEG.

    Args:
        path: the image file.
        max_pixels: images.open_image's limit.

    Returns:
        (data URI, None), or (None, why) where the image cannot be read.
    """
    try:
        image = open_image(path, max_pixels)
    except UserError as e:
        return None, str(e)
    image.thumbnail((THUMBNAIL, THUMBNAIL))
    buffer = io.BytesIO()
    image.save(buffer, format='JPEG', quality=QUALITY)
    return 'data:image/jpeg;base64,' + base64.b64encode(
        buffer.getvalue()).decode('ascii'), None


def inline_png(path):
    """A PNG file as a data: URI, for an <img> that needs no other file.

    Args:
        path: the PNG file.

    Returns:
        str: the data: URI.

    Raises:
        OSError: the file cannot be read.
    """
    with open(path, 'rb') as f:
        return 'data:image/png;base64,' + base64.b64encode(
            f.read()).decode('ascii')


def write_page(path, heading, summary, report, sections, max_pixels):
    """Writes report.html, atomically.

    Args:
        path: the page's file.
        heading: its title, e.g. 'Evaluation report: MODEL on the test
            set'.
        summary: [(what, value)] rows of the summary table, as text.
        report: reports.class_report's dict (its per-class scores,
            averages, accuracy, matrix and most confused pairs), with or
            without 'unreadable'.
        sections: {'curves': [(caption, PNG path)], 'mistakes':
            mistakes_html's list, 'folder': the folder their names are
            relative to, 'grid': whether to show the matrix as a grid
            (else its most confused pairs)}.
        max_pixels: images.open_image's limit for the thumbnails.

    Raises:
        UserError: the page cannot be written (files.atomic_write).
    """
    parts = ['<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset='
             '"utf-8">\n<title>{0}</title>\n<style>{1}</style>\n</head>\n'
             '<body>\n<h1>{0}</h1>\n'.format(_e(heading), STYLE),
             '<table class="summary">\n' + ''.join(
                 '<tr><th>{}</th><td class="name">{}</td></tr>\n'.format(
                     _e(what), _e(value)) for what, value in summary)
             + '</table>\n']
    if sections['curves']:
        parts.append('<h2>Curves</h2>\n<div class="curves">\n' + ''.join(
            '<img src="{}" alt="{}">\n'.format(inline_png(png), _e(caption))
            for caption, png in sections['curves']) + '</div>\n')
    wrong = report['images'] - sum(
        row[i] for i, row in enumerate(report['confusion']))
    parts.append(mistakes_html(sections['mistakes'], wrong,
                               sections['folder'], max_pixels))
    names = [row['class'] for row in report['classes']]
    parts.append(grid_html(report['confusion'], names) if sections['grid']
                 else pairs_html(report['most_confused'], len(names)))
    parts.append(scores_html(report))
    if report.get('unreadable'):
        parts.append('<h2>Left out</h2>\n<p>Files that could not be used:'
                     '</p>\n<ul>\n' + ''.join(
                         '<li>{}</li>\n'.format(_e(line))
                         for line in report['unreadable']) + '</ul>\n')
    parts.append('</body>\n</html>\n')
    with atomic_write(path) as f:
        f.write(''.join(parts).encode('utf-8'))


def mistakes_html(mistakes, wrong, folder, max_pixels):
    """The mistakes section: thumbnails grouped by the pair confused.

    Args:
        mistakes: [{'path': the file to read, 'input': its name as shown,
            'true', 'predicted': class names, 'probability': the predicted
            class's, 'true_probability': the true class's, 'pair_images':
            the images of that pair in all}], most confident first.
        wrong: the misclassified images in all.
        folder: the folder the names are relative to, as shown; '' for
            none.
        max_pixels: images.open_image's limit.

    Returns:
        str: the section's HTML; groups in the order of their most
        confident mistake, thumbnails in the given order within each.
    """
    if not mistakes:
        return '<h2>Mistakes</h2>\n<p>No image was misclassified.</p>\n'
    groups = {}
    for item in mistakes:
        groups.setdefault((item['true'], item['predicted']), []).append(item)
    with prefetch(lambda item: thumbnail(item['path'], max_pixels),
                  mistakes, len(mistakes), usable_cores()) as made:
        uri = {id(item): future.result() for item, future in made}
    if len(mistakes) < wrong:
        which = ('The {} of the {} misclassified images whose wrong class '
                 'was the most probable'.format(len(mistakes), wrong))
    else:
        which = 'All {} misclassified images'.format(wrong) if wrong > 1 \
            else 'The misclassified image'
    parts = ['<h2>Most confident mistakes</h2>\n<p class="note">{}, '
             'grouped by the pair of classes confused, with the probability '
             'the model gave the predicted class and the true one{}.</p>\n'
             '<div class="groups">\n'.format(
                 which, '; files in {}'.format(_e(folder)) if folder else '')]
    for (true, predicted), items in groups.items():
        n = items[0]['pair_images']
        parts.append('<section class="group"><h3><span class="right">{}'
                     '</span> taken for <span class="wrong">{}</span> <span '
                     'class="note">({} of {} image{})</span></h3>\n'.format(
                         _e(true), _e(predicted), len(items), n,
                         '' if n == 1 else 's'))
        parts += [_figure(item, *uri[id(item)]) for item in items]
        parts.append('</section>\n')
    return ''.join(parts) + '</div>\n'


def _figure(item, src, why):
    """One mistake's thumbnail (or why there is none) and its caption."""
    picture = ('<img src="{}" alt="{}">'.format(src, _e(item['input']))
               if src else '<div class="missing">cannot show: {}</div>'
               .format(_e(why)))
    return ('<figure class="mistake" data-input="{0}">{1}<figcaption>'
            '<span class="wrong">predicted {2:.1%}</span><br>'
            '<span class="right">true {3:.1%}</span><br>{0}</figcaption>'
            '</figure>\n'.format(_e(item['input']), picture,
                                 item['probability'],
                                 item['true_probability']))


def grid_html(confusion, names):
    """The confusion matrix section, as a table.

    Rows the true class (its index, from 0 as in predictions.csv, and
    name), columns the predicted one (its index, named in the tooltips),
    each cell shaded by its share of the row's images, the diagonal (the
    images right) framed.

    Args:
        confusion: square image counts (nested lists), rows the true class.
        names: the class of each row, in order.

    Returns:
        str: the section's HTML.
    """
    head = ''.join('<th class="n" title="{}">{}</th>'.format(_e(name), i)
                   for i, name in enumerate(names))
    rows = []
    for i, (name, row) in enumerate(zip(names, confusion)):
        total = max(sum(row), 1)
        cells = ''.join(_cell(name, names[j], v, v / total, i == j)
                        for j, v in enumerate(row))
        rows.append('<tr><th class="n">{}</th><th class="name">{}</th>{}'
                    '</tr>\n'.format(i, _e(name), cells))
    return ('<h2>Confusion matrix</h2>\n<p class="note">Rows: the true '
            'class, by its index (from 0, as predictions.csv\'s); columns: '
            'the predicted one, by the same index. A cell\'s shade is its '
            'share of the row\'s images; the framed diagonal holds the '
            'images classified right.</p>\n'
            '<div class="wide"><table class="grid">\n<tr><th></th><th>true '
            '\\ predicted</th>{}</tr>\n{}</table></div>\n'.format(
                head, ''.join(rows)))


def _cell(true, predicted, images, share, diagonal):
    """One cell of grid_html: its count, shaded by its share of the row;
    empty without images."""
    frame = ' class="right"' if diagonal else ''
    if not images:
        return '<td{}></td>'.format(frame)
    return ('<td{} style="background: rgba(31, 119, 180, {:.2f}); color: {}" '
            'title="{} \u2192 {}: {}">{}</td>'.format(
                frame, share, '#fff' if share > 0.5 else '#222', _e(true),
                _e(predicted), images, images))


def pairs_html(pairs, n_classes):
    """The most confused pairs section, for a matrix too large to show as a
    grid.

    Args:
        pairs: reports.most_confused's list.
        n_classes: the classes of the matrix.

    Returns:
        str: the section's HTML: a table of the pairs (images, share of the
        true class's, true class, predicted class), or a line saying none
        was misclassified.
    """
    rows = ''.join(
        '<tr><td class="n">{}</td><td class="n">{:.1%}</td><td class="name">'
        '{}</td><td class="name">{}</td></tr>\n'.format(
            p['images'], p['share'], _e(p['true']), _e(p['predicted']))
        for p in pairs)
    return ('<h2>Most confused pairs</h2>\n<p class="note">{} classes are too '
            'many for a grid: these are the pairs most often confused '
            '(report.json holds the whole matrix).</p>\n'
            '<table class="scores">\n<tr><th class="n">images</th><th '
            'class="n">share of the true class</th><th>true class</th><th>'
            'taken for</th></tr>\n{}</table>\n'.format(n_classes, rows)
            if pairs else '<h2>Most confused pairs</h2>\n<p>None: no image '
            'was misclassified.</p>\n')


def scores_html(report):
    """The per-class section.

    Args:
        report: reports.class_report's dict.

    Returns:
        str: the section's HTML: the accuracy, then a table of each
        class's precision, recall, F1 and support, by class index (from 0,
        the figures' #N), with the macro and weighted averages.
    """
    row = ('<tr{}><td class="n">{}</td><td class="name">{}</td>'
           '<td class="n">{:.3f}</td><td class="n">{:.3f}</td>'
           '<td class="n">{:.3f}</td><td class="n">{}</td></tr>\n').format
    rows = [row('', i, _e(r['class']), r['precision'], r['recall'], r['f1'],
                r['support']) for i, r in enumerate(report['classes'])]
    for key, what in (('macro_avg', 'macro average'),
                      ('weighted_avg', 'weighted average')):
        r = report[key]
        rows.append(row(' class="avg"', '', what, r['precision'],
                        r['recall'], r['f1'], r['support']))
    return ('<h2>Per class</h2>\n<p>Accuracy {:.1%} on {} images.</p>\n'
            '<table class="scores">\n<tr><th class="n">#</th><th>class</th>'
            '<th class="n">precision</th><th class="n">recall</th>'
            '<th class="n">F1</th><th class="n">support</th></tr>\n{}'
            '</table>\n'.format(report['accuracy'], report['images'],
                                ''.join(rows)))
