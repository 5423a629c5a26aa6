"""Small labelled image folders, and the options, of the training and MPI
tests."""
import os

import numpy
from PIL import Image

# What training runs in tests pass to stay quiet and in one process.
QUIET = ['--no-progress', '--loaderjob', '0']
# The features fixture's run (conftest); the MPI tests compute the same
# cache on two ranks. Blocks of 4 images make five of the 18 training images.
FEATURES_ARGV = ['--cache-features', '--val-ratio', '0.25',
                 '--val-batchsize', '4']
COLOURS = {'blue': (30, 40, 220), 'green': (30, 200, 40), 'red': (220, 30, 30)}


def two_tone(color, size, mode='RGB'):
    """Image.new(mode, size, color) with its right half in the opposite
    colour (255 - each of R, G, B or L; alpha kept): an image of one
    colour throughout is refused, as there is nothing in it to classify."""
    image = Image.new(mode, size, color)
    if isinstance(color, int):
        other = 255 - color
    else:
        other = tuple(255 - c for c in color[:3]) + tuple(color[3:])
    image.paste(other, (size[0] // 2, 0, size[0], size[1]))
    return image


def make_dataset(root, per_class, colours=COLOURS):
    """One folder of per_class noisy PNGs per colour; returns root."""
    rng = numpy.random.RandomState(0)
    for name, colour in colours.items():
        os.makedirs(os.path.join(root, name), exist_ok=True)
        for i in range(per_class):
            noise = rng.randint(-30, 30, (40 + i, 50, 3))
            array = numpy.clip(numpy.array(colour) + noise, 0, 255)
            Image.fromarray(array.astype(numpy.uint8)).save(
                os.path.join(root, name, '{}.png'.format(i)))
    return str(root)
