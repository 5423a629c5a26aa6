"""plots and fonts: what matplotlib draws."""
import warnings

import numpy
import pytest

from googlenet_chainer import fonts, plots


def test_confusion_plot_draws_names_literally(tmp_path, monkeypatch):
    import matplotlib.text
    drawn = []
    original = matplotlib.text.Text.draw

    def record(self, renderer):
        if self.get_text():
            drawn.append((self.get_text(), self.get_parse_math()))
        return original(self, renderer)
    monkeypatch.setattr(matplotlib.text.Text, 'draw', record)
    names = ['$x^2$', 'a_b', '50%', 'back\\slash']
    plots.plot_confusion(numpy.eye(4, dtype=int), names,
                         str(tmp_path / 'c.png'))
    labels = [(text, math) for text, math in drawn if text in names]
    assert sorted({text for text, _ in labels}) == sorted(names)
    assert not any(math for _, math in labels)


def drawn_figures(monkeypatch):
    """The figures plots saves, kept open to be looked at."""
    figures = []

    def keep(plt, fig, path):
        fig.canvas.draw()  # lays the ticks out as saving would
        figures.append(fig)
    monkeypatch.setattr(plots, '_save', keep)
    return figures


def tick_labels(axis):
    return [t.get_text() for t in axis.get_ticklabels() if t.get_text()]


@pytest.mark.parametrize('fonts_found', [True, False])
def test_names_in_any_script_are_drawn_whole_or_numbered(
        tmp_path, monkeypatch, fonts_found):
    """Japanese names are drawn in an installed font that has them, or,
    where none has, as their row number with a note: never as empty boxes
    with 'Glyph missing' warnings, never cut to their last characters."""
    if not fonts_found:
        monkeypatch.setattr(fonts, 'installed_fonts', lambda: [])
    figures = drawn_figures(monkeypatch)
    names = ['\u732b', '\u30a2\u30e1\u30ea\u30ab\u30f3\u30fb\u30b7\u30e7'
             '\u30fc\u30c8\u30d8\u30a2\u30fc', 'a dog with a name longer '
             'than any line of a label', 'hamster']
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter('always')
        plots.plot_confusion(numpy.eye(4, dtype=int), names,
                             str(tmp_path / 'c.png'))
        plots.plot_pairs([{'true': names[0], 'predicted': names[1],
                           'images': 2, 'share': 0.5}], names,
                         str(tmp_path / 'p.png'))
    assert not [str(w.message) for w in seen if 'missing' in str(w.message)]
    rc, drawable, note = fonts.drawable(names)
    ax = figures[0].axes[0]
    for axis in (ax.xaxis, ax.yaxis):  # long names wrapped, whole
        assert [label.replace('\n', ' ') for label in tick_labels(axis)] \
            == drawable
    assert drawable[2:] == names[2:]
    if fonts_found and drawable == names:
        return  # this machine has a font with the glyphs
    assert drawable[:2] == ['#0', '#1'] and note.startswith(
        '#N: class index N')
    assert note.split()[0] in ax.get_xlabel()
    assert tick_labels(figures[1].axes[0].yaxis) == ['#0\n\u2192 #1']


def test_curves_explain_themselves(tmp_path, monkeypatch):
    figures = drawn_figures(monkeypatch)
    one = [{'epoch': 1, 'main/loss': 1.9, 'validation/main/loss': 2.2,
            'lr': 0.01}]
    spike = [{'epoch': e, 'main/loss': loss, 'validation/main/loss': 1.0,
              'main/loss1': 1.0, 'lr': 0.01 * 0.1 ** (e // 3)}
             for e, loss in enumerate([2.0, 6.7e7, 1.5, 1.2, 1.0, 0.9], 1)]
    keys = ('main/loss', 'validation/main/loss')
    plots.plot_log(one, keys, str(tmp_path / 'a.png'), (1, 0.25))
    plots.plot_log(spike, keys, str(tmp_path / 'b.png'), (4, 0.5))
    plots.plot_log(spike, ('main/accuracy', 'validation/main/accuracy'),
                   str(tmp_path / 'c.png'))
    for fig in figures:
        ax = fig.axes[0]
        assert ax.get_xlabel() == 'epoch'
        assert all(float(t).is_integer() for t in ax.get_xticks()
                   if ax.get_xlim()[0] <= t <= ax.get_xlim()[1])
    loss, spiked, accuracy = (fig.axes for fig in figures)
    assert [t for t in loss[0].get_xticks() if 0.5 <= t <= 1.5] == [1]
    assert loss[0].get_title() == 'Loss by epoch'
    # Which loss: loss3's, or the sum the aux heads add to.
    assert loss[0].get_ylabel() == 'loss (softmax cross-entropy)'
    assert spiked[0].get_ylabel() == ('loss (0.3 (loss1 + loss2) + loss3, '
                                      'softmax cross-entropy)')
    legend = [t.get_text() for t in loss[0].get_legend().get_texts()]
    assert legend == ['training loss', 'validation loss',
                      'best epoch 1 (validation accuracy 25.0%)',
                      'learning rate (right axis)']
    assert loss[1].get_ylabel() == 'learning rate'
    # The spike spans decades: a log scale, as does the stepped rate.
    assert loss[0].get_yscale() == 'linear'
    assert (spiked[0].get_yscale(), spiked[1].get_yscale()) == ('log', 'log')
    assert accuracy[0].get_title() == 'Accuracy by epoch'
    assert len(accuracy) == 1  # the rate is drawn with the loss
