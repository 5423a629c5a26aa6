"""The views of each image that the feature cache keeps (--cache-views):
crops as Caffe takes them, or random crops of random scale and aspect, each
image's drawn from the seed and its row alone."""
import argparse
import math
import re

import numpy

from googlenet_chainer.compat import chainer
from googlenet_chainer.console import shown
from googlenet_chainer.errors import UserError
from googlenet_chainer.images import (CENTER, CROP, DEFAULT_MAX_PIXELS,
                                      crop, open_image, resized_bgr,
                                      ten_crops)
from googlenet_chainer.training.sampling import image_rng

FIXED = {'1': 'the centre crop',
         '2': 'the centre crop and its mirror',
         '10': 'Caffe\'s ten crops: the four corners and the centre, each '
               'mirrored'}
DEFAULT_VIEWS = '2'
MAX_RANDOM = 100
# torchvision's RandomResizedCrop, which timm's and Keras' ImageNet recipes
# also draw: a share of the image's area, and an aspect ratio drawn
# uniformly in its logarithm.
SCALE = (0.08, 1.0)
RATIO = (3 / 4, 4 / 3)


def parse_views(text):
    """An argparse type: --cache-views, the views cached per image.

    Args:
        text: '1', '2' or '10' (FIXED's crops), or 'N random' (N random
            crops, N from 1 to MAX_RANDOM).

    Returns:
        The canonical spelling: '1', '2', '10' or 'N random'.

    Raises:
        argparse.ArgumentTypeError: text is none of those.
    """
    match = re.fullmatch(r'\s*(\d+)\s*(random)?\s*', text)
    count = int(match.group(1)) if match else None
    if match and match.group(2) and 1 <= count <= MAX_RANDOM:
        return '{} random'.format(count)
    if match and not match.group(2) and str(count) in FIXED:
        return str(count)
    raise argparse.ArgumentTypeError(
        'expected 1, 2, 10 or "N random" (N from 1 to {}), got {!r}'.format(
            MAX_RANDOM, text))


def view_count(spec):
    """The views per image of a parse_views spec.

    Args:
        spec: parse_views' canonical spelling.

    Returns:
        int: N.
    """
    return int(spec.split()[0])


def is_random(spec):
    """Whether a parse_views spec draws its views (from the seed), which
    then belongs in the cache's key."""
    return spec.endswith('random')


def describe(spec):
    """A parse_views spec in words, for what the run prints."""
    return FIXED.get(spec) or '{} random crops of random scale and aspect, ' \
        'each mirrored at random'.format(view_count(spec))


def random_box(rng, width, height):
    """A random crop's box, as torchvision's RandomResizedCrop draws it.

    Ten tries at an area in SCALE of the image's and an aspect in RATIO
    that fit the image; else the whole image, its aspect brought into
    RATIO, centred.

    Args:
        rng: a numpy.random.Generator (sampling.image_rng).
        width, height: the image's size in pixels.

    Returns:
        (left, top, right, bottom), a PIL box of whole pixels.
    """
    for _ in range(10):
        area = width * height * rng.uniform(*SCALE)
        aspect = math.exp(rng.uniform(*(math.log(r) for r in RATIO)))
        w = int(round(math.sqrt(area * aspect)))
        h = int(round(math.sqrt(area / aspect)))
        if 0 < w <= width and 0 < h <= height:
            top = int(rng.integers(0, height - h + 1))
            left = int(rng.integers(0, width - w + 1))
            return left, top, left + w, top + h
    w = min(width, int(round(height * RATIO[1])))
    h = min(height, int(round(width / RATIO[0])))
    left, top = (width - w) // 2, (height - h) // 2
    return left, top, left + w, top + h


def image_views(image, spec, rng):
    """One image's views, as the network takes them.

    Args:
        image: an RGB PIL image (images.open_image's).
        spec: parse_views' spelling. Fixed views crop the image squashed to
            256x256 (images.resized_bgr); a random view is its box of the
            image itself squashed to 224x224, mirrored or not.
        rng: the image's generator (sampling.image_rng), for random views.

    Returns:
        float32 views x 3 x 224 x 224, BGR minus the mean.
    """
    if spec == '10':
        return ten_crops(image)
    if not is_random(spec):
        array = resized_bgr(image)
        return numpy.stack([crop(array, CENTER, CENTER, mirror)
                            for mirror in (False, True)[:view_count(spec)]])
    views = []
    for _ in range(view_count(spec)):
        box = random_box(rng, *image.size)
        mirror = bool(rng.integers(2))
        views.append(crop(resized_bgr(image.crop(box), CROP), 0, 0, mirror))
    return numpy.stack(views)


def changed_image(path, error):
    """The UserError of an image that cannot be read any more.

    Args:
        path: the image.
        error: why, as open_image said.

    Returns:
        UserError: naming it, and how the run goes on.
    """
    return UserError('{} cannot be read any more ({}): it changed after the '
                     'run checked its data; put it back and continue with '
                     '--resume latest, or start a run without it'.format(
                         shown(path), error))


class ViewDataset(chainer.dataset.DatasetMixin):
    """Each image's views (image_views), the random ones drawn from the seed
    and the image's row, whichever process or MPI rank computes them.

    An example is float32 views x 3 x 224 x 224. An image that cannot be
    read any more (it was when the data set was checked) raises
    changed_image's UserError: a cache row cannot be left out.

    Args:
        images: [(path, its row in the cache)], in order.
        spec: parse_views' spelling.
        seed: the run's --seed.
        max_pixels: images.open_image's limit.
    """

    def __init__(self, images, spec, seed=0, max_pixels=DEFAULT_MAX_PIXELS):
        self.images = images
        self.spec = spec
        self.seed = seed
        self.max_pixels = max_pixels

    def __len__(self):
        return len(self.images)

    def get_example(self, i):
        path, row = self.images[i]
        try:
            image = open_image(path, self.max_pixels)
        except UserError as e:
            raise changed_image(path, e)
        return image_views(image, self.spec, image_rng(self.seed, row))
