"""inputs: what prediction takes, and how each is loaded."""
import numpy
from googlenet_chainer.inputs import ImageURL, expand_inputs, load_input

from image_fixtures import png_bytes, two_tone


def test_text_with_a_scheme_is_fetched_unless_it_is_a_files_path(
        tmp_path, monkeypatch, server):
    # A folder named 'shots:' makes 'shots://cat.png' a file's path.
    server.routes['/cat.png'] = png_bytes((220, 20, 20))
    (tmp_path / 'shots:').mkdir()
    two_tone((20, 20, 220), (40, 30)).save(tmp_path / 'shots:' / 'cat.png')
    monkeypatch.chdir(tmp_path)
    [(_, local)] = expand_inputs([], ['shots://cat.png'])
    [(_, remote)] = expand_inputs([], [server.url('/cat.png')])

    def colour(source):
        return numpy.asarray(load_input(source, 10 ** 6, 10))[10, 10]
    assert colour(local).tolist() == [20, 20, 220]
    assert colour(remote).tolist() == [220, 20, 20]
    assert colour(ImageURL(server.url('/cat.png'))).tolist() == [220, 20, 20]
