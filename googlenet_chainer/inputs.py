"""What prediction takes: URLs, files and folders, in order, each loaded as
an image."""
import os

from googlenet_chainer.download import fetch_bytes
from googlenet_chainer.errors import UserError
from googlenet_chainer.images import DEFAULT_MAX_PIXELS, list_images, open_image

MAX_DOWNLOAD_BYTES = 50 * 1000 * 1000


def expand_inputs(urls, paths):
    """(name, source) pairs in order; a folder stands for the image files
    in it and its visible sub-folders, sorted by path (list_images: hidden
    files and folders are left out), as training finds a class's images.

    A source is a URL or a file path; problems found here come back as
    (name, UserError) so they are reported in place, like the others.
    """
    items = [(url, ImageURL(url)) for url in urls]
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
    if isinstance(source, UserError):
        raise source
    if isinstance(source, ImageURL) or '://' in source:
        return open_image(fetch_bytes(source, max_bytes, timeout),
                          max_pixels)
    if not os.path.exists(source):
        raise UserError('no such file')
    return open_image(source, max_pixels)
