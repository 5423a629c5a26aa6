"""A float32 array larger than memory, filled in blocks on disk, resumable."""
import hashlib
import json
import os

import numpy

from googlenet_chainer.errors import UserError, one_line
from googlenet_chainer.files import atomic_write, read_npy_header


class RowCache:
    """A float32 array of rows kept on disk, filled in blocks, resumable.

    ``NAME.npy`` is a plain ``.npy`` file of the whole shape, created at once
    (sparse) and read back memory-mapped (``read``); ``NAME.json``, written
    atomically, records the key, the shape, the dtype, the block length (in
    rows) and the sha1 of each complete block (None for the others). Rows
    reach the file with ``pwrite`` and ``fsync`` (``write``) before the index
    says they are complete (``commit``), so a process killed at any moment
    leaves an index that promises only rows on disk, and the next ``open``
    carries on from there. Several processes may write disjoint blocks of
    the same file; one of them commits their digests.

    Writes do not go through a memory map: the pages of a mapped file count
    in the writer's resident memory, and a cache larger than RAM is the point.

    Args:
        path: the array's file, NAME.npy; the index is NAME.json beside it.
        key: a string that changes with whatever the rows are computed
            from (feature_cache.cache_key); a cache of another key is
            recomputed.
        shape: the array's shape, rows first.
        block: rows per block; an index of this key, shape and dtype
            keeps its own (open).
    """

    def __init__(self, path, key, shape, block):
        self.path = path  # NAME.npy
        self.index_path = os.path.splitext(path)[0] + '.json'
        self.key = key
        self.shape = tuple(int(n) for n in shape)
        self.block = int(block)
        self.dtype = numpy.dtype(numpy.float32)
        self.blocks = [None] * self.n_blocks
        self.offset = None

    @property
    def n_blocks(self):
        """Blocks of the array; the last may hold fewer rows."""
        return -(-self.shape[0] // self.block)

    @property
    def row_bytes(self):
        """Bytes of one row."""
        return int(numpy.prod(self.shape[1:], dtype=numpy.int64)) * \
            self.dtype.itemsize

    def rows(self, i):
        """The rows of block i.

        Args:
            i: a block index, 0..n_blocks - 1.

        Returns:
            (start, stop): the rows [start, stop).
        """
        return i * self.block, min((i + 1) * self.block, self.shape[0])

    def open(self, note=print):
        """Checks the files against the key; says what is left to compute.

        A damaged cache (an index that does not parse, a ``.npy`` that is
        missing, truncated or of another shape, a complete block whose bytes
        changed) is reported through note(line) and recomputed: the whole
        file, or only the changed blocks. A new or changed cache, or one
        damaged as a whole, is created anew: a sparse NAME.npy of zeros and
        an index without a complete block.

        Args:
            note: called with each line on what is recomputed and why.

        Returns:
            [int]: the indices of the blocks still to compute (all of them
            for a new or changed cache).

        Raises:
            UserError: what lies in NAME.npy's place is not a file and
                cannot be removed, or the index cannot be written.
        """
        index = self._read_index(note)
        if index is not None and index.get('key') == self.key and \
                index.get('shape') == list(self.shape) and \
                index.get('dtype') == self.dtype.str:
            self.block = int(index['block'])
            blocks = index['blocks']
            if self._open_file(note) and len(blocks) == self.n_blocks:
                self.blocks = blocks
                changed = [i for i, digest in enumerate(blocks)
                           if digest is not None and
                           self._digest(i) != digest]
                if changed:
                    note('{}: {} complete block{} changed on disk since '
                         'written: recomputing {}'.format(
                             self.path, len(changed),
                             's' if len(changed) > 1 else '',
                             'them' if len(changed) > 1 else 'it'))
                    for i in changed:
                        self.blocks[i] = None
                return self.pending()
        self._create()
        return self.pending()

    def pending(self):
        """The indices of the blocks not yet complete."""
        return [i for i, digest in enumerate(self.blocks) if digest is None]

    def complete_rows(self):
        """The rows of the complete blocks."""
        return sum(self.rows(i)[1] - self.rows(i)[0]
                   for i, digest in enumerate(self.blocks) if digest)

    def _read_index(self, note):
        """NAME.json as a dict; None when it is missing or damaged (said
        through note)."""
        if not os.path.exists(self.index_path):
            return None
        if not os.path.isfile(self.index_path):  # a FIFO would block
            note('{}: not a regular file: recomputing the cache'.format(
                self.index_path))
            return None
        try:
            with open(self.index_path) as f:
                index = json.load(f)
            if not isinstance(index, dict) or not isinstance(
                    index.get('blocks'), list) or int(index['block']) < 1:
                raise ValueError('not an index of this project')
        except (OSError, ValueError, KeyError, TypeError) as e:
            note('{}: damaged index ({}): recomputing the cache'.format(
                self.index_path, one_line(e)))
            return None
        return index

    def _open_file(self, note):
        """Whether NAME.npy is there whole, with the index's shape."""
        if not os.path.exists(self.path):
            note('{}: missing: recomputing it'.format(self.path))
            return False
        if not os.path.isfile(self.path):  # opening a FIFO would block
            note('{}: not a regular file: recomputing it'.format(self.path))
            return False
        try:
            with open(self.path, 'rb') as f:
                header = read_npy_header(f)
                if header is None:
                    raise ValueError('.npy format version neither 1.0 '
                                     'nor 2.0')
                shape, fortran, dtype = header
                self.offset = f.tell()
            size = os.path.getsize(self.path)
        except Exception as e:  # whatever numpy makes of foreign bytes
            problem = 'not a .npy file: {}'.format(one_line(e))
        else:
            expected = self.offset + self.row_bytes * self.shape[0]
            problem = (
                'holds {} {}, its index says {} {}'.format(
                    dtype, shape, self.dtype, self.shape)
                if (shape, dtype, fortran) != (self.shape, self.dtype, False)
                else '{} bytes where {} were written'.format(size, expected)
                if size != expected else None)
        if problem:
            note('{}: damaged ({}): recomputing it'.format(self.path,
                                                           problem))
        return problem is None

    def _create(self):
        """A new NAME.npy, sparse, and an index without a complete block."""
        if os.path.lexists(self.path) and not os.path.isfile(self.path):
            try:  # what _open_file found in the cache's place
                os.unlink(self.path)
            except OSError as e:
                raise UserError('cannot replace {}: {}'.format(
                    self.path, e.strerror or e))
        array = numpy.lib.format.open_memmap(self.path, mode='w+',
                                             dtype=self.dtype,
                                             shape=self.shape)
        self.offset = array.offset
        del array
        self.blocks = [None] * self.n_blocks
        self.commit({})

    def _digest(self, i):
        """The sha1 of block i's bytes on disk ('' when the file is short)."""
        start, stop = self.rows(i)
        size = (stop - start) * self.row_bytes
        with open(self.path, 'rb') as f:
            data = os.pread(f.fileno(), size, self.offset +
                            start * self.row_bytes)
        return hashlib.sha1(data).hexdigest() if len(data) == size else ''

    def attach(self):
        """Checks NAME.npy and finds its rows, before writing blocks.

        A process that writes blocks calls it once open has run, in it or
        in another process.

        Raises:
            UserError: NAME.npy is no longer the array the index describes.
        """
        if not self._open_file(note=print):
            raise UserError('{} changed while this run was starting'.format(
                self.path))

    def write(self, i, rows):
        """Writes block i to disk, synced, leaving the index as it is.

        Args:
            i: the block's index.
            rows: its rows, an array of the block's size (made float32).

        Returns:
            str: the sha1 of the block's bytes, for commit.

        Raises:
            ValueError: rows do not hold the block's number of floats.
        """
        data = numpy.ascontiguousarray(rows, self.dtype).tobytes()
        start, stop = self.rows(i)
        if len(data) != (stop - start) * self.row_bytes:
            raise ValueError('block {} takes {} rows'.format(i, stop - start))
        fd = os.open(self.path, os.O_WRONLY)
        try:
            os.pwrite(fd, data, self.offset + start * self.row_bytes)
            os.fsync(fd)
        finally:
            os.close(fd)
        return hashlib.sha1(data).hexdigest()

    def commit(self, digests):
        """Records written blocks as complete in the index (atomically).

        Args:
            digests: {block index: write's digest}; {} rewrites the index
                as it stands.

        Raises:
            UserError: the index cannot be written (files.atomic_write).
        """
        for i, digest in digests.items():
            self.blocks[i] = digest
        index = {'key': self.key, 'shape': list(self.shape),
                 'dtype': self.dtype.str, 'block': self.block,
                 'rows_complete': self.complete_rows(),
                 'blocks': self.blocks}
        with atomic_write(self.index_path, 'w') as f:
            json.dump(index, f)

    def read(self):
        """The whole array, memory-mapped read-only (a numpy.memmap)."""
        return numpy.load(self.path, mmap_mode='r')
