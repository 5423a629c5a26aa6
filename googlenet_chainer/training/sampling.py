"""Which example and which random draw each training step gets: from the
seed, the epoch and the example's index alone, never from which process loads
it or what it loaded before, so runs repeat with or without loader processes
and across resumes."""
import numpy

from googlenet_chainer.compat import chainer


def example_rng(seed, index, n):
    """The random generator of one example's draw, and which example.

    SeededOrder offsets epoch k's indices by k * n, so the draw depends on
    the seed, the epoch and the example only, never on which process loads
    it or what it loaded before.

    Args:
        seed: the run's --seed.
        index: a sampled index, epoch * n + example (SeededOrder's), or an
            example's own index (epoch 0: an iterator in dataset order).
        n: the dataset's length.

    Returns:
        (a numpy.random.Generator seeded with [seed, epoch, example], the
        example's index in 0..n - 1).
    """
    epoch, example = divmod(int(index), n)
    return numpy.random.default_rng([seed, epoch, example]), example


def drawn_view(seed, index, n, views):
    """Which example, and which of its cached views, a training step reads.

    Args:
        seed: the run's --seed.
        index: a sampled index (example_rng's).
        n: the dataset's length.
        views: the views cached per example.

    Returns:
        (the example's index in 0..n - 1, a view in 0..views - 1), drawn
        from example_rng: by the seed, the epoch and the example alone.
    """
    rng, example = example_rng(seed, index, n)
    return example, int(rng.integers(views))


def image_rng(seed, image):
    """The random generator of one image's own views (the feature cache's
    random crops), whichever process computes them.

    Seeded with [seed, image, 0, 1]: never one of example_rng's streams,
    which numpy's SeedSequence reads as [seed, epoch, example, 0].

    Args:
        seed: the run's --seed.
        image: the image's row in its set.

    Returns:
        a numpy.random.Generator.
    """
    return numpy.random.default_rng([seed, image, 0, 1])


class SeededOrder(chainer.iterators.OrderSampler):
    """Epoch k's shuffle: a permutation seeded by (seed, k), offset by k * n.

    The epoch is read back from the previous order, which iterators keep in
    their snapshots, so a resumed run draws the orders an uninterrupted one
    would. The first pass over the data is epoch 1 (Chainer's iterators
    pass arange(n) as the order before it). Datasets take the index modulo
    their length (example_rng).

    Args:
        seed: the run's --seed.
    """

    def __init__(self, seed):
        self.seed = seed

    def __call__(self, current_order, current_position):
        n = len(current_order)
        # The iterator's first call passes arange(n): epoch 0, next is 1.
        epoch = int(numpy.min(current_order)) // n + 1
        order = numpy.random.default_rng([self.seed, epoch]).permutation(n)
        return order + epoch * n


class Shard(chainer.dataset.DatasetMixin):
    """Examples [begin, end) of a dataset: one rank's share under MPI.

    Index k * len(shard) + i, SeededOrder's epoch k, is example begin + i
    of epoch k of the whole dataset: each rank draws its crops and views
    by epoch.

    Args:
        dataset: a DatasetMixin that draws by example_rng (ImageDataset,
            CachedFeatures).
        begin, end: the share's bounds, ChainerMN's scatter_index's.
    """

    def __init__(self, dataset, begin, end):
        self.dataset = dataset
        self.begin = begin
        self.end = end

    def __len__(self):
        return self.end - self.begin

    def get_example(self, index):
        epoch, i = divmod(int(index), len(self))
        return self.dataset.get_example(epoch * len(self.dataset) +
                                        self.begin + i)
