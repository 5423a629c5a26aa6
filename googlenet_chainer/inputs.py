"""What prediction takes: URLs, files and folders, in order, each loaded as
an image. A problem with one input is reported in its place, and the others
still run."""
import os

from googlenet_chainer.download import fetch_bytes
from googlenet_chainer.web import shown_url
from googlenet_chainer.errors import UserError
from googlenet_chainer.images import (DEFAULT_MAX_PIXELS, list_images,
                                      open_image)

MAX_DOWNLOAD_BYTES = 50 * 1000 * 1000


def expand_inputs(urls, paths):
    """Prediction's inputs as (name, source) pairs, in order.

    A folder stands for the image files in it and its visible sub-folders,
    sorted by path (list_images: hidden files and folders are left out), as
    training finds a class's images. Problems found here come back as
    (name, UserError) so that they are reported in place, like the others.

    Args:
        urls: the URLs given with -u, in order.
        paths: files and folders, in order.

    Returns:
        [(name, source)]: the URLs first, each as an ImageURL, then each
        path's: the path itself for a file (checked only when loaded), a
        folder's image files, or a UserError for a folder that cannot be
        read or holds no images.
    """
    items = [(shown_url(url), ImageURL(url)) for url in urls]
    for path in paths:
        if os.path.isdir(path):
            try:
                images, _ = list_images(path, recursive=True)
            except UserError as e:
                items.append((path, e))
                continue
            if not images:
                items.append((path, UserError('folder without images')))
            items += [(image, image) for image in images]
        else:
            items.append((path, path))
    return items


class ImageURL(str):
    """An input given with -u: always fetched, never opened as a file."""


def load_input(source, max_bytes, timeout, max_pixels=DEFAULT_MAX_PIXELS):
    """The decoded image of one source of expand_inputs.

    Args:
        source: an ImageURL, or text with ``://`` that is no file's path
            (downloaded; a file named so is opened), a file path, or the
            UserError expand_inputs found for it.
        max_bytes: the download limit, in bytes.
        timeout: seconds a download may take in all.
        max_pixels: open_image's limit (width x height).

    Returns:
        The RGB PIL image (images.open_image).

    Raises:
        UserError: the source's own error, a missing file, or a download
            or decoding that failed.
    """
    if isinstance(source, UserError):
        raise source
    if isinstance(source, ImageURL) or (
            '://' in source and not os.path.lexists(source)):
        return open_image(fetch_bytes(source, max_bytes, timeout),
                          max_pixels)
    if not os.path.exists(source):
        raise UserError('no such file')
    return open_image(source, max_pixels)
