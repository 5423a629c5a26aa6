"""The figures of a run and of an evaluation, drawn with matplotlib's Agg
backend and written atomically: a run's curves, the confusion matrix, and
the most confused pairs where the classes are too many for a grid.

Class names are drawn whole, as written (never as mathtext), in the
installed fonts that have their glyphs (fonts.py finds them)."""
import textwrap

import numpy

from googlenet_chainer.files import atomic_write
from googlenet_chainer.fonts import drawable

# What training's LogReport calls each curve, in words.
CURVE_NAMES = {'main/loss': 'training loss',
               'validation/main/loss': 'validation loss',
               'main/accuracy': 'training accuracy',
               'validation/main/accuracy': 'validation accuracy'}
# A name is wrapped to lines of this many characters, not cut.
WRAP = 28


def _pyplot():
    """matplotlib's pyplot on the Agg backend (no display needed)."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    return plt


def _save(plt, fig, path):
    """Writes the figure as a PNG at path, atomically, with every label
    inside it (bbox 'tight': a long name widens the image, never is cut)."""
    with atomic_write(path) as f:
        fig.savefig(f, format='png', bbox_inches='tight', dpi=100)
    plt.close(fig)


def wrapped(name, width=WRAP):
    """A class name in lines, whole: never cut.

    Args:
        name: the name as it is to be drawn.
        width: the most characters per line.

    Returns:
        str: the name, broken at spaces where it has them (elsewhere where
        a word is longer than width) into lines of at most width.
    """
    return textwrap.fill(name, width) if len(name) > width else name


def with_note(label, note):
    """An axis label with a note below it.

    Args:
        label: the axis label.
        note: fonts.drawable's note, or ''.

    Returns:
        str: the label, then (if any) the note, wrapped.
    """
    return label + '\n\n' + textwrap.fill(note, 60) if note else label


def plot_confusion(confusion, class_names, path, normalized=False,
                   title='confusion matrix'):
    """Draws a confusion matrix with its counts in the cells, as a PNG.

    ``normalized`` colours each row by its share of the row's images (the
    recall on the diagonal) and writes the shares; a row without images
    stays 0, and a cell without images is left blank. Names are wrapped,
    never cut; one that no installed font can draw is drawn as its number
    (fonts.drawable), and a note says so. For up to reports.GRID_LIMIT
    classes: beyond, plot_pairs.

    Args:
        confusion: square image counts (an array or nested lists), rows
            the true class, columns the predicted one.
        class_names: the classes of the rows and columns, in order.
        path: the PNG file, written atomically.
        normalized: each row as shares of its images (two decimals)
            instead of counts.
        title: the figure's title, above the image count.

    Raises:
        UserError: path cannot be written (files.atomic_write).
    """
    import matplotlib
    plt = _pyplot()
    rc, labels, note = drawable(class_names)
    confusion = numpy.asarray(confusion)
    with matplotlib.rc_context(rc):
        fig = _draw_confusion(plt, confusion, [wrapped(n) for n in labels],
                              normalized, '{}\n({} images{})'.format(
                                  title, int(confusion.sum()),
                                  ', rows normalised' if normalized else ''),
                              note)
        _save(plt, fig, path)


def _draw_confusion(plt, confusion, labels, normalized, title, note):
    """plot_confusion's figure, drawn with pyplot (``plt``)."""
    if normalized:
        rows = confusion.sum(axis=1, keepdims=True)
        values = confusion / numpy.maximum(rows, 1)
        texts = numpy.vectorize('{:.2f}'.format)(values)
        top = 1.0
    else:
        values, texts = confusion, confusion.astype(str)
        top = max(int(confusion.max()), 1)
    size = max(4, 0.5 * len(labels) + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(values, cmap='Blues', vmin=0, vmax=top)
    ax.set_xticks(range(len(labels)), labels, rotation=90)
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel(with_note('predicted class', note))
    ax.set_ylabel('true class')
    ax.set_title(title)
    small = 'small' if len(labels) > 12 else 'medium'
    for (i, j), v in numpy.ndenumerate(values):
        if v:  # empty cells left blank: the images stand out
            ax.text(j, i, texts[i, j], ha='center', va='center',
                    fontsize=small, color='white' if v > top / 2 else 'black')
    return fig


def plot_pairs(pairs, class_names, path, normalized=False,
               title='most confused pairs'):
    """Draws the most confused pairs of classes as bars, as a PNG.

    What plot_confusion's grid would show of many classes, readable: a bar
    per pair, labelled 'true -> predicted', the first at the top. Names are
    wrapped, never cut, or drawn as their number (fonts.drawable).

    Args:
        pairs: reports.most_confused's list, in the order to draw.
        class_names: the classes of the matrix they come from, in the
            order of the report's per-class table.
        path: the PNG file, written atomically.
        normalized: bars of the share of the true class's images instead
            of the image counts.
        title: the figure's title.

    Raises:
        UserError: path cannot be written (files.atomic_write).
    """
    import matplotlib.ticker
    plt = _pyplot()
    rc, labels, note = drawable(class_names)
    label = dict(zip(class_names, (wrapped(name, 2 * WRAP)
                                   for name in labels)))
    texts = ['{}\n\u2192 {}'.format(label[p['true']], label[p['predicted']])
             for p in pairs]
    # Each bar as high as its label's lines, so that no two labels meet.
    heights = numpy.array([text.count('\n') + 1.5 for text in texts])
    middles = numpy.cumsum(heights) - heights / 2
    values = [p['share' if normalized else 'images'] for p in pairs]
    with matplotlib.rc_context(rc):
        fig, ax = plt.subplots(figsize=(10, 0.17 * heights.sum() + 1.2))
        ax.barh(middles, values, height=heights - 0.5, color='tab:blue')
        ax.set_yticks(middles, texts, fontsize='small')
        ax.set_ylim(heights.sum(), 0)  # the first pair at the top
        for y, value in zip(middles, values):
            ax.text(value, y, ' {:.1%}'.format(value) if normalized
                    else ' {}'.format(value), va='center', fontsize='small')
        ax.set_xlabel(with_note('share of the true class\'s images'
                                if normalized else 'images', note))
        if normalized:
            ax.xaxis.set_major_formatter(
                matplotlib.ticker.PercentFormatter(1.0))
        else:
            ax.xaxis.set_major_locator(
                matplotlib.ticker.MaxNLocator(integer=True))
        ax.set_title('{}: the {} most confused pairs of {} classes\n'
                     '(true \u2192 predicted, by {})'.format(
                         title, len(pairs), len(class_names),
                         'share' if normalized else 'images'))
        if not pairs:
            ax.text(0.5, 0.5, 'no image was misclassified', ha='center',
                    transform=ax.transAxes)
        _save(plt, fig, path)


def plot_curves(log, keys):
    """The curves plot_log draws, one per key.

    Args:
        log: LogReport's log, [{key: value}] per epoch.
        keys: the reported keys to draw.

    Returns:
        {key: ([epoch], [value])} of the log's entries that have the key.
    """
    return {key: ([entry['epoch'] for entry in log if key in entry],
                  [entry[key] for entry in log if key in entry])
            for key in keys}


def spans_decades(values, decades=2):
    """Whether values need a log scale to be seen.

    A spike of 1e7 over losses near 1, or a learning rate stepped down by
    10: on a linear scale all but the largest values lie on the axis.

    Args:
        values: numbers; those not finite are left out.
        decades: how many powers of 10 make a span.

    Returns:
        bool: True when all are positive and the largest is at least
        10 ** decades times the smallest.
    """
    values = [v for v in values if numpy.isfinite(v)]
    # Within rounding: 0.01 * 0.1 ** 2 is a hair over 1e-4.
    return bool(values) and min(values) > 0 and (
        max(values) >= 10 ** decades * min(values) * (1 - 1e-9))


def _loss_axis(ax, quantity, curves, log):
    """plot_log's axis of a loss: which loss, on a log scale where it
    spans two decades, else from 0."""
    ax.set_ylabel('{} ({}softmax cross-entropy)'.format(
        quantity, '0.3 (loss1 + loss2) + loss3, ' if any(
            key.endswith('/loss1') for entry in log for key in entry)
        else ''))
    values = [v for _, y in curves.values() for v in y if numpy.isfinite(v)]
    if spans_decades(values):
        ax.set_yscale('log')
    elif values:  # from 0: one epoch's points are not the axis' ends
        ax.set_ylim(0, max(max(values), 1e-3) * 1.08)


def plot_log(log, keys, path, best=None):
    """Draws a quantity by epoch from a run's log, as a PNG.

    The curves are named in words (CURVE_NAMES); a loss is drawn on a log
    scale where it spans two decades (spans_decades), with the learning
    rate (the log's 'lr') on an axis of its own, logarithmic where it spans
    one, and its axis says whether it is the aux heads' weighted sum (the
    log has loss1); accuracy in percent. Epoch ticks are whole numbers, a
    run of one epoch included; the best epoch is marked.

    Args:
        log: LogReport's log, [{key: value}] per epoch.
        keys: the reported keys to draw, all of one quantity, e.g.
            ('main/loss', 'validation/main/loss').
        path: the PNG file, written atomically.
        best: None, or (epoch, validation accuracy) of the best epoch.

    Raises:
        UserError: path cannot be written (files.atomic_write).
    """
    import matplotlib.ticker
    plt = _pyplot()
    quantity = keys[0].rsplit('/', 1)[-1]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    curves = plot_curves(log, keys)
    for key, (x, y) in curves.items():
        ax.plot(x, y, marker='o', markersize=4, label=CURVE_NAMES.get(key,
                                                                      key))
    epochs = [entry['epoch'] for entry in log]
    if epochs:
        ax.set_xlim(min(epochs) - 0.5, max(epochs) + 0.5)
    ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(
        integer=True, min_n_ticks=1))
    ax.set_xlabel('epoch')
    ax.set_title('{} by epoch'.format(quantity.capitalize()))
    if quantity == 'accuracy':
        ax.set_ylabel('accuracy (share of the images classified right)')
        ax.yaxis.set_major_formatter(matplotlib.ticker.PercentFormatter(1.0))
        ax.set_ylim(0, 1.02)
    else:
        _loss_axis(ax, quantity, curves, log)
    if best is not None:
        # Beneath the curves, whose points it would hide at one epoch.
        ax.axvline(best[0], color='tab:green', linestyle='--', zorder=1,
                   label='best epoch {} (validation accuracy {:.1%})'
                   .format(*best))
    ax.grid(alpha=0.4)
    handles, labels = ax.get_legend_handles_labels()
    if quantity == 'loss':
        handles, labels = _learning_rate(ax, log, handles, labels)
    # Below the axes, where it hides no curve.
    ax.legend(handles, labels, fontsize='small', loc='upper center',
              bbox_to_anchor=(0.5, -0.15), ncol=2, frameon=False)
    _save(plt, fig, path)


def _learning_rate(ax, log, handles, labels):
    """Draws the log's 'lr' on a right-hand axis of ax, if the log has it;
    returns the legend's handles and labels with its line added."""
    x = [entry['epoch'] for entry in log if 'lr' in entry]
    if not x:
        return handles, labels
    y = [entry['lr'] for entry in log if 'lr' in entry]
    right = ax.twinx()
    # The curves over the rate's line: ax in front, its background clear.
    ax.set_zorder(right.get_zorder() + 1)
    ax.patch.set_visible(False)
    line, = right.plot(x, y, color='grey', linestyle=':',
                       drawstyle='steps-mid', label='learning rate (right '
                       'axis)', marker='.' if len(x) == 1 else None)
    right.set_ylabel('learning rate')
    if spans_decades(y, 1):
        right.set_yscale('log')
    else:
        right.set_ylim(bottom=0)
    return handles + [line], labels + [line.get_label()]
