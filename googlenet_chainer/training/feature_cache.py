"""The feature cache: the frozen trunk's outputs per image and view, computed
once into a RowCache and read back memory-mapped."""
import hashlib

import numpy

from googlenet_chainer.compat import chainer
from googlenet_chainer.console import progress, shown
from googlenet_chainer.errors import UserError
from googlenet_chainer.images import (CENTER, DEFAULT_MAX_PIXELS, READING,
                                      crop, open_image, resized_bgr)
from googlenet_chainer.model_file import weights_digest
from googlenet_chainer.mpi import Single, on_root
from googlenet_chainer.training.loader import make_iterator
from googlenet_chainer.training.row_cache import RowCache
from googlenet_chainer.training.sampling import example_rng

FEATURE_SHAPES = ((512, 4, 4), (528, 4, 4), (1024, 1, 1))


def feature_shapes(aux=True):
    """What the heads read of each view, one shape per input.

    Args:
        aux: the two aux pools and pool5; else pool5 alone (--aux-heads
            off).

    Returns:
        ((512, 4, 4), (528, 4, 4), (1024, 1, 1)), channels x height x
        width; ((1024, 1, 1),) without aux.
    """
    return FEATURE_SHAPES if aux else FEATURE_SHAPES[2:]


def feature_size(aux=True):
    """Floats per view: 17,664 with the aux heads (about 70 KB), else 1,024.

    Args:
        aux: with the aux heads' inputs.

    Returns:
        int: the floats of feature_shapes(aux).
    """
    return sum(int(numpy.prod(s)) for s in feature_shapes(aux))


class ViewDataset(chainer.dataset.DatasetMixin):
    """The centre crop of each image, and its mirror when views == 2.

    An example is float32 views x 3 x 224 x 224. Unlike ImageDataset, an
    image that cannot be read any more (it was when the data set was
    checked) raises UserError naming it: a cache row cannot be left out.

    Args:
        pairs: [(path, anything)]: the images, in order.
        views: 1 or 2.
        max_pixels: images.open_image's limit.
    """

    def __init__(self, pairs, views, max_pixels=DEFAULT_MAX_PIXELS):
        self.pairs = pairs
        self.views = views
        self.max_pixels = max_pixels

    def __len__(self):
        return len(self.pairs)

    def get_example(self, i):
        path = self.pairs[i][0]
        try:
            array = resized_bgr(open_image(path, self.max_pixels))
        except UserError as e:
            raise UserError('{}: {} (it changed after the images were '
                            'checked)'.format(shown(path), e))
        return numpy.stack([crop(array, CENTER, CENTER, mirror)
                            for mirror in (False, True)[:self.views]])


class CachedFeatures(chainer.dataset.DatasetMixin):
    """Trunk features per image and view, as examples for the heads.

    Training picks a view from example_rng, validation takes view 0. An
    example is the float32 arrays of feature_shapes (the aux heads' are
    there if the rows are that wide), then the int32 label.

    Args:
        features: float32 N x views x feature_size, cached_features'
            memory map.
        labels: the N class indices.
        train: a random view, not view 0.
        seed: the run's --seed.
    """

    def __init__(self, features, labels, train, seed=0):
        self.features = features
        self.labels = labels
        self.train = train
        self.seed = seed
        self.shapes = feature_shapes(features.shape[2] != feature_size(False))

    def __len__(self):
        return len(self.labels)

    def get_example(self, index):
        rng, i = example_rng(self.seed, index, len(self.labels))
        view = int(rng.integers(self.features.shape[1])) if self.train \
            else 0
        flat = self.features[i, view]
        parts, start = [], 0
        for shape in self.shapes:
            size = int(numpy.prod(shape))
            parts.append(numpy.array(flat[start:start + size]).reshape(
                shape))
            start += size
        return tuple(parts) + (numpy.int32(self.labels[i]),)


def cache_key(model, digests, views, aux=True):
    """The feature cache's key (RowCache's).

    It changes with the frozen trunk's weights, the images' content, how
    they are read (images.READING), the views, or what is cached
    (--aux-heads); not with where the images or the cache are.

    Args:
        model: the GoogLeNet whose frozen stages compute the features.
        digests: the sha1 of each image's file, in the cache's row order.
        views: 1 or 2.
        aux: the aux heads' inputs are cached too.

    Returns:
        str: a sha1 in hexadecimal.
    """
    digest = hashlib.sha1('{} {} {} {}\n'.format(
        READING, views, feature_size(aux),
        weights_digest(model, model.frozen_stages)).encode())
    for image in digests:
        digest.update(image.encode() + b'\n')
    return digest.hexdigest()


def cached_features(predictor, images, path, batchsize, loaderjob,
                    loader_timeout, max_pixels=DEFAULT_MAX_PIXELS, show=True,
                    aux=True, comm=Single()):
    """The trunk's features of every image, computed once and kept.

    Reused while cache_key matches; a computation that was stopped goes on
    from its complete blocks; a damaged cache is recomputed with a note.
    Under MPI the blocks left are dealt out to the ranks in turn, each
    writing its own rows, and rank 0 records them after each round: a
    block is always one forward pass of the same images, so the bytes do
    not depend on the number of ranks.

    Args:
        predictor: an inference.Predictor whose crops are the views per
            image (1: the centre crop; 2: and its mirror).
        images: [(path, sha1 of the file)], the rows' images in order.
        path: the cache's NAME.npy (its index is NAME.json beside it).
        batchsize: images per block, and per forward pass (an index of
            this cache kept from before keeps its own block length).
        loaderjob, loader_timeout: the image loader's (loader.make_iterator).
        max_pixels: images.open_image's limit.
        show: a progress bar on a terminal (rank 0's).
        aux: cache the aux heads' inputs too, not pool5 alone.
        comm: mpi.Single or Distributed.

    Returns:
        float32 N x views x feature_size(aux), memory-mapped read-only.

    Raises:
        UserError: an image cannot be read, the loader fails, or a file of
            the cache cannot be written, or changed as the run started.
    """
    views = predictor.crops
    cache = RowCache(path, cache_key(predictor.model,
                                     [sha1 for _, sha1 in images], views,
                                     aux),
                     (len(images), views, feature_size(aux)), batchsize)
    cache.block, cache.blocks = on_root(
        comm, lambda: _open(cache, len(images), views))
    cache.attach()
    pending = cache.pending()
    own = pending[comm.rank::comm.size]
    iterator = make_iterator(ViewDataset(
        [images[j] for i in own for j in range(*cache.rows(i))], views,
        max_pixels), cache.block, loaderjob, loader_timeout,
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
        print('computing trunk features of {} images ({} view{}) for '
              '{}{}'.format(images - done, views, 's' if views > 1 else '',
                            cache.path, ' ({} done before)'.format(done)
                            if done else ''))
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
