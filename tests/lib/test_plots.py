"""plots: what matplotlib draws."""
import numpy

from googlenet_chainer import plots


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
