"""The feature cache: what the frozen trunk makes of each image and view
(the frozen part's output at the cut, and the aux heads' inputs that branch
off before it), computed once into a RowCache and read back memory-mapped."""
import hashlib

import numpy

from googlenet_chainer.compat import chainer
from googlenet_chainer.console import progress
from googlenet_chainer.images import DEFAULT_MAX_PIXELS, READING
from googlenet_chainer.model_file import weights_digest
from googlenet_chainer.mpi import Single, on_root
from googlenet_chainer.training.loader import make_iterator
from googlenet_chainer.training.row_cache import RowCache
from googlenet_chainer.training.sampling import drawn_view
from googlenet_chainer.training.views import (DEFAULT_VIEWS, ViewDataset,
                                              describe, is_random,
                                              view_count)
from tuned_googlenet import INCEPTION, TAP_POOLS, cached_taps

# The side of each stage's output for a 224x224 crop: pool3 and pool4
# close inc3b and inc4e (tuned_googlenet.TRUNK).
SIDES = {'inc3a': 28, 'inc3b': 14, 'inc4a': 14, 'inc4b': 14, 'inc4c': 14,
         'inc4d': 14, 'inc4e': 7, 'inc5a': 7, 'inc5b': 7}
# Where the cache may cut: below inc3a nearly the whole network trains.
CUTS = tuple(SIDES)


def _channels(stage):
    _, out1, _, out3, _, out5, pool = INCEPTION[stage]
    return out1 + out3 + out5 + pool


def feature_shapes(cut='inc5b', aux=True):
    """What the cache keeps of each view, one shape per part.

    Args:
        cut: the last frozen stage, one of CUTS.
        aux: with the aux heads' inputs, where they branch off at or
            before the cut.

    Returns:
        [(channels, height, width)]: the 5/3 average pools of the taps up
        to the cut (tuned_googlenet.cached_taps: inc4a's 512x4x4, inc4d's
        528x4x4, pool5's 1024x1x1 at inc5b), then the cut's output unless
        the cut is inc5b, e.g. 832x7x7 at inc4e (after pool4).
    """
    shapes = []
    for name in cached_taps(cut, aux):
        k, s = TAP_POOLS[name]
        side = (SIDES[name] - k) // s + 1
        shapes.append((_channels(name), side, side))
    if cut != 'inc5b':
        shapes.append((_channels(cut), SIDES[cut], SIDES[cut]))
    return shapes


def feature_size(cut='inc5b', aux=True):
    """Floats per view: 17,664 at inc5b with the aux heads (about 70 KB),
    1,024 without them; 57,408 at inc4e.

    Args:
        cut, aux: as feature_shapes takes them.

    Returns:
        int: the floats of feature_shapes(cut, aux).
    """
    return sum(int(numpy.prod(s)) for s in feature_shapes(cut, aux))


def cache_summary(cut, aux, views, images):
    """What --cache-features keeps and trains on, in a line for the run.

    Args:
        cut, aux: as feature_shapes takes them.
        views: the training set's views (views.parse_views' spelling).
        images: (training images, validation images): the cache holds
            views' count of each training image and one of each
            validation image.

    Returns:
        str: the parts of each view by shape, their KB, the cache's MB in
        all, the views, and what trains.
    """
    names = ['pool5' if name == 'inc5b' else name + '\'s pool'
             for name in cached_taps(cut, aux)]
    names += [] if cut == 'inc5b' else [cut + '\'s output']
    parts = ', '.join('{} {}'.format(name, 'x'.join(map(str, shape)))
                      for name, shape in zip(names, feature_shapes(cut, aux)))
    count = view_count(views)
    view_bytes = feature_size(cut, aux) * 4
    return ('--cache-features at {}: {} KB per image and view ({}), {:.1f} '
            'MB in all; each epoch trains on {}, {}; validation on the '
            'centre crop; {} train'.format(
                cut, round(view_bytes / 1000), parts,
                (images[0] * count + images[1]) * view_bytes / 1e6,
                'one of each image\'s {} views'.format(count) if count > 1
                else 'each image\'s one view', describe(views),
                'the heads' if cut == 'inc5b' else
                'the stages after {} and the heads'.format(cut)))


class CachedFeatures(chainer.dataset.DatasetMixin):
    """Trunk features per image and view, as examples for the model.

    Training reads the view sampling.drawn_view draws (by the seed, the
    epoch and the example), validation view 0. An example is the float32
    arrays of feature_shapes, then the int32 label: the model's inputs
    (tuned_googlenet.GoogLeNet.forward).

    Args:
        features: float32 N x views x feature_size, cached_features'
            memory map.
        labels: the N class indices.
        shapes: feature_shapes of the rows.
        train: a drawn view, not view 0.
        seed: the run's --seed.
    """

    def __init__(self, features, labels, shapes, train, seed=0):
        self.features = features
        self.labels = labels
        self.shapes = shapes
        self.train = train
        self.seed = seed

    def __len__(self):
        return len(self.labels)

    def parts(self, i, view=0):
        """The arrays of feature_shapes of example i's view."""
        flat = self.features[i, view]
        parts, start = [], 0
        for shape in self.shapes:
            size = int(numpy.prod(shape))
            parts.append(numpy.array(flat[start:start + size]).reshape(
                shape))
            start += size
        return parts

    def get_example(self, index):
        if self.train:
            i, view = drawn_view(self.seed, index, len(self.labels),
                                 self.features.shape[1])
        else:
            i, view = int(index) % len(self.labels), 0
        return tuple(self.parts(i, view)) + (numpy.int32(self.labels[i]),)


def cache_key(model, digests, views=DEFAULT_VIEWS, aux=True, seed=0):
    """The feature cache's key (RowCache's).

    It changes with the cut and the frozen trunk's weights, the images'
    content, how they are read (images.READING), the views (and the seed,
    for random ones), or what is cached (--aux-heads); not with where the
    images or the cache are.

    Args:
        model: the GoogLeNet whose frozen stages compute the features.
        digests: the sha1 of each image's file, in the cache's row order.
        views: views.parse_views' spelling.
        aux: the aux heads' inputs are cached too.
        seed: the run's --seed (counted for random views only).

    Returns:
        str: a sha1 in hexadecimal.
    """
    digest = hashlib.sha1('{} {} {} {} {} {}\n'.format(
        READING, model.freeze_until, views,
        seed if is_random(views) else '',
        feature_size(model.freeze_until, aux),
        weights_digest(model, model.frozen_stages)).encode())
    for image in digests:
        digest.update(image.encode() + b'\n')
    return digest.hexdigest()


def block_length(batchsize, views):
    """Images per block of a cache: --val-batchsize, fewer for more than
    two views, so that a forward pass takes at most 2 x batchsize crops.

    Args:
        batchsize: --val-batchsize.
        views: views per image.

    Returns:
        int: at least 1.
    """
    return max(1, min(batchsize, 2 * batchsize // views))


def cached_features(predictor, images, path, batchsize, loaderjob,
                    loader_timeout, max_pixels=DEFAULT_MAX_PIXELS, show=True,
                    aux=True, comm=Single(), views=DEFAULT_VIEWS, seed=0):
    """What the frozen trunk makes of every image, computed once and kept.

    Reused while cache_key matches; a computation that was stopped goes on
    from its complete blocks; a damaged cache is recomputed with a note.
    Under MPI the blocks left are dealt out to the ranks in turn, each
    writing its own rows, and rank 0 records them after each round: a
    block is always one forward pass of the same images, so the bytes do
    not depend on the number of ranks.

    Args:
        predictor: an inference.Predictor of the model frozen at the cut;
            its crops are view_count(views).
        images: [(path, sha1 of the file)], the rows' images in order.
        path: the cache's NAME.npy (its index is NAME.json beside it).
        batchsize: --val-batchsize: block_length's images per block and
            forward pass (an index of this cache kept from before keeps
            its own block length).
        loaderjob, loader_timeout: the image loader's (loader.make_iterator).
        max_pixels: images.open_image's limit.
        show: a progress bar on a terminal (rank 0's).
        aux: cache the aux heads' inputs too, where the cut passes them.
        comm: mpi.Single or Distributed.
        views: views.parse_views' spelling: the views of each image.
        seed: the run's --seed, which draws random views.

    Returns:
        float32 N x views x feature_size(cut, aux), memory-mapped
        read-only.

    Raises:
        UserError: an image cannot be read, the loader fails, or a file of
            the cache cannot be written, or changed as the run started.
    """
    model, count = predictor.model, view_count(views)
    cache = RowCache(path, cache_key(model, [sha1 for _, sha1 in images],
                                     views, aux, seed),
                     (len(images), count, feature_size(model.freeze_until,
                                                       aux)),
                     block_length(batchsize, count))
    cache.block, cache.blocks = on_root(
        comm, lambda: _open(cache, len(images), views))
    cache.attach()
    pending = cache.pending()
    own = pending[comm.rank::comm.size]
    iterator = make_iterator(ViewDataset(
        [(images[j][0], j) for i in own for j in range(*cache.rows(i))],
        views, seed, max_pixels), cache.block, loaderjob, loader_timeout,
        repeat=False) if own else None
    try:
        _fill(cache, predictor, iterator, pending, own, aux, comm, show)
    finally:
        if iterator is not None:
            iterator.finalize()
    return cache.read()


def _open(cache, images, views):
    """Rank 0 opens the cache and says what is left to compute; returns
    the block length and digests for the other ranks."""
    if cache.open():
        done = cache.complete_rows()
        count = view_count(views)
        print('computing trunk features of {} images for {}{}: {} view{} '
              'of {} KB each ({})'.format(
                  images - done, cache.path, ' ({} done before)'.format(done)
                  if done else '', count, 's' if count > 1 else '',
                  round(cache.row_bytes / count / 1000), describe(views)))
    return cache.block, cache.blocks


def _fill(cache, predictor, iterator, pending, own, aux, comm, show):
    """Computes this rank's blocks (``own``) of those ``pending``, one a
    round on each rank, rank 0 committing each round's digests."""
    def rows(blocks):
        return sum(cache.rows(i)[1] - cache.rows(i)[0] for i in blocks)

    with progress(None, 'trunk features', show and not comm.rank,
                  total=rows(pending)) as bar:
        for step in range(-(-len(pending) // comm.size)):
            written = {}
            if step < len(own):
                written[own[step]] = cache.write(
                    own[step], predictor.trunk_features(next(iterator),
                                                        aux))
            gathered = comm.gather(written)
            if not comm.rank:
                done = {i: d for part in gathered for i, d in part.items()}
                cache.commit(done)
                bar.update(rows(done))
