"""The figures of a run and of an evaluation, drawn with matplotlib's Agg
backend and written atomically."""
import numpy

from googlenet_chainer.files import atomic_write


def plot_confusion(confusion, class_names, path, normalized=False,
                   title='confusion matrix'):
    """Draws a confusion matrix with its counts in the cells, as a PNG.

    ``normalized`` colours each row by its share of the row's images (the
    recall on the diagonal) and writes the shares; a row without images
    stays 0. Class names are drawn as written, never as mathtext.

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
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    # Class names are text: $, _, % and backslashes are drawn as written.
    with matplotlib.rc_context({'text.parse_math': False}):
        _draw_confusion(plt, numpy.asarray(confusion), class_names, path,
                        normalized, title)


def _draw_confusion(plt, confusion, class_names, path, normalized, title):
    """plot_confusion's figure, drawn with pyplot (``plt``) and saved."""
    if normalized:
        rows = confusion.sum(axis=1, keepdims=True)
        values = confusion / numpy.maximum(rows, 1)
        labels = numpy.vectorize('{:.2f}'.format)(values)
        top = 1.0
    else:
        values, labels = confusion, confusion.astype(str)
        top = max(int(confusion.max()), 1)
    size = max(4, 0.5 * len(class_names) + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(values, cmap='Blues', vmin=0, vmax=top)
    ax.set_xticks(range(len(class_names)), class_names, rotation=90)
    ax.set_yticks(range(len(class_names)), class_names)
    ax.set_xlabel('predicted')
    ax.set_ylabel('true')
    ax.set_title('{}\n({} images{})'.format(
        title, int(confusion.sum()),
        ', rows normalised' if normalized else ''))
    for (i, j), v in numpy.ndenumerate(values):
        ax.text(j, i, labels[i, j], ha='center', va='center',
                color='white' if v > top / 2 else 'black')
    fig.tight_layout()
    with atomic_write(path) as f:
        fig.savefig(f, format='png')
    plt.close(fig)


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


def plot_log(log, keys, path):
    """Draws reported values by epoch, a line per key, as a PNG.

    Args:
        log: LogReport's log, [{key: value}] per epoch.
        keys: the reported keys to draw, e.g. ('main/loss',
            'validation/main/loss').
        path: the PNG file, written atomically.

    Raises:
        UserError: path cannot be written (files.atomic_write).
    """
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    import matplotlib.ticker
    fig, ax = plt.subplots()
    for key, (x, y) in plot_curves(log, keys).items():
        ax.plot(x, y, marker='x', label=key)
    ax.set_xlabel('epoch')
    ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    ax.grid()
    ax.legend()
    with atomic_write(path) as f:
        fig.savefig(f, format='png')
    plt.close(fig)
