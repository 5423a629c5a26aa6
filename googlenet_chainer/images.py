"""Images as Caffe's reference reads them: decoding, refusals, preprocessing,
and finding image files in folders."""
import io
import os
import re
import stat
import threading
import warnings

import numpy
from PIL import Image, ImageOps, UnidentifiedImageError

from googlenet_chainer.console import shown
from googlenet_chainer.errors import UserError, one_line
from googlenet_chainer.pixels import RGB_READABLE, as_rgb, check_maxval

# Raised whenever a file's decoded pixels or their preprocessing change: the
# feature cache is keyed by it, so features of the old reading are not
# served for the new one (2: pixels.py's OpenCV conventions).
READING = 2
MEAN_BGR = numpy.array([104.0, 117.0, 123.0], dtype=numpy.float32)
RESIZE = 256
CROP = 224
CENTER = (RESIZE - CROP) // 2
# A 200 MP photo decodes to 600 MB of RGB; a PNG declaring far more is
# more likely a decompression bomb than a photo.
DEFAULT_MAX_PIXELS = 200 * 1000 * 1000
# Pillow's limit and the warnings filter are process-wide: one image opens
# at a time (prefetch's other threads resize meanwhile).
_OPENING = threading.Lock()


def open_image(source, max_pixels=DEFAULT_MAX_PIXELS):
    """A decoded RGB image from a path or bytes, EXIF orientation applied.

    Its pixels are those Caffe's reader (cv::imread) makes of the file:
    pixels.as_rgb has the conventions.

    Args:
        source: a path (str), the file's bytes, or a binary file object.
        max_pixels: the most pixels (width x height) to decode.

    Returns:
        PIL.Image.Image in mode RGB.

    Raises:
        UserError: the file is missing, a folder, not a regular file or
            unreadable; the image is over max_pixels (refused before it is
            decoded), not an image, truncated, undecodable, refused by
            pixels.py's conventions or of one colour throughout.
    """
    stream = io.BytesIO(source) if isinstance(source, bytes) else source
    if isinstance(source, str):
        _check_regular(source)
    with _OPENING:
        previous = Image.MAX_IMAGE_PIXELS
        try:
            # Pillow checks the declared size when it opens a file, before
            # decoding; its warning (at the limit) becomes the refusal.
            Image.MAX_IMAGE_PIXELS = max_pixels
            with warnings.catch_warnings():
                # Pillow's UserWarnings (corrupt EXIF data: the pixels
                # decode, the tags it cannot read are skipped) would print
                # two lines of its source per image among the results.
                warnings.filterwarnings('ignore', category=UserWarning,
                                        module='PIL')
                warnings.simplefilter('error', Image.DecompressionBombWarning)
                with Image.open(stream) as image:
                    check_maxval(image)
                    image.load()
                    _check_jpeg_end(image)
                    ImageOps.exif_transpose(image, in_place=True)
                    return _check_content(as_rgb(image), image.mode)
        except FileNotFoundError:
            raise UserError('no such file')
        except IsADirectoryError:
            raise UserError('is a folder')
        except PermissionError as e:
            raise UserError('cannot read: {}'.format(e.strerror))
        except (Image.DecompressionBombError,
                Image.DecompressionBombWarning) as e:
            raise UserError('larger than the pixel limit ({}; --max-pixels '
                            'raises it)'.format(_bomb_reason(e, max_pixels)))
        except UnidentifiedImageError:
            raise UserError('not an image')
        except (OSError, SyntaxError, ValueError) as e:
            text = one_line(e)
            if 'truncated' in text.lower() or 'broken data stream' in text:
                raise UserError('truncated image')
            raise UserError('cannot decode image ({})'.format(text))
        finally:
            Image.MAX_IMAGE_PIXELS = previous


def _check_jpeg_end(image):
    """UserError for a JPEG that ends in rows of exactly the grey a decoder
    fills in for missing data.

    Data cut short and closed with an end marker decodes without error:
    libjpeg decodes the blocks past the cut as zero coefficients, flat
    mid-grey in every channel (128; 127 in Pillow's inverted CMYK), from
    the cut to the end in scan order (in a progressive file, when the cut
    falls in its first scan), and Pillow passes its warning over. Nothing
    in the pixels tells that from a picture that really ends in that grey,
    so the message says both; a band matched by one about as tall at the
    top (letterboxing) is taken for content, as is an image grey throughout
    (_check_content's case). The last MCU row (8 or 16 pixel rows) is read
    first; the whole image only when it is grey.
    """
    # Pillow names a JPEG with an MPF segment of several images (many
    # cameras' files) MPO; its first image decodes as any JPEG's.
    if image.format not in ('JPEG', 'MPO') or image.mode not in (
            'L', 'RGB', 'CMYK'):
        return
    layers = getattr(image, 'layer', None) or []
    # One component is coded in 8x8 blocks whatever its sampling factor.
    mcu = 8 * max(v for _, _, v, _ in layers) if len(layers) > 1 else 8
    height = image.height
    last_row = (height - 1) // mcu * mcu
    extrema = image.crop((0, last_row, image.width, height)).getextrema()
    bands = extrema if image.mode != 'L' else (extrema,)
    fill = 127 if image.mode == 'CMYK' else 128
    if any(band != (fill, fill) for band in bands):
        return
    grey = (numpy.asarray(image) == fill).reshape(height, -1).all(axis=1)
    if grey.all():
        return
    begin = height - int(numpy.argmin(grey[::-1]))
    # Letterboxing: a band at the top too, as tall give or take the MCU row
    # where each band meets the picture (its blocks ring, not exactly grey).
    if grey[:max(1, height - begin - mcu)].all():
        return
    raise UserError('truncated image, or one that really ends in flat grey: '
                    'its rows from {} on are exactly the grey a JPEG decoder '
                    'fills in for missing data (save such a picture as PNG '
                    'to classify it)'.format(begin))


def _check_content(image, mode):
    """image, or UserError if it is one colour throughout: a blank frame
    (a lens cap, a failed capture, an empty canvas) has no object in it,
    and the network would still name one with confidence. ``mode`` is the
    file's: 16-bit and float samples are judged once read at 8 bits (a
    level of 65535 apart makes the same network input), and said so."""
    # A 16x16 sample settles a photo in microseconds; the whole image is
    # read (40 ms for 6 MP) only when the sample is one colour.
    sample = image.resize((min(16, image.width), min(16, image.height)),
                          Image.Resampling.NEAREST)
    if any(low != high for low, high in sample.getextrema()):
        return image
    extrema = image.getextrema()
    if all(low == high for low, high in extrema):
        raise UserError('one colour throughout{} (RGB {}): nothing to '
                        'classify'.format(
                            '' if mode in RGB_READABLE else
                            ' once read at 8 bits',
                            ', '.join(str(low) for low, _ in extrema)))
    return image


def _bomb_reason(exc, max_pixels):
    """The refusal's reason: Pillow's pixel count against the limit."""
    numbers = [int(n) for n in re.findall(r'\d+', str(exc))]
    pixels = numbers[0] if numbers else None
    return '{} pixels > {}'.format(pixels, max_pixels) if pixels else (
        'over {} pixels'.format(max_pixels))


def resized_bgr(image, size=RESIZE):
    """The image squashed to 256x256, channels BGR, minus the mean.

    Resized bilinearly, the aspect ratio not kept, as Caffe's classify.py
    resizes to its image dims (256,256).

    Args:
        image: an RGB PIL image (open_image's).
        size: the side resized to; 256 as Caffe's.

    Returns:
        float32 size x size x 3 (HWC), 0..255 less MEAN_BGR (ImageNet's).
    """
    image = image.resize((size, size), Image.BILINEAR)
    array = numpy.asarray(image, dtype=numpy.float32)[:, :, ::-1]
    return array - MEAN_BGR


def crop(array, top=CENTER, left=CENTER, mirror=False):
    """A 224x224 crop of a resized_bgr array, as the network takes it.

    Args:
        array: float32 256 x 256 x 3, resized_bgr's.
        top: the crop's first row; the centre crop's by default.
        left: the crop's first column; the centre crop's by default.
        mirror: whether to flip the crop left to right.

    Returns:
        float32 3 x 224 x 224 (CHW), C-contiguous.
    """
    patch = array[top:top + CROP, left:left + CROP]
    if mirror:
        patch = patch[:, ::-1]
    return numpy.ascontiguousarray(patch.transpose(2, 0, 1))


def preprocess(image):
    """Caffe's reference input: the centre 224 crop of the 256x256 image.

    Args:
        image: an RGB PIL image (open_image's).

    Returns:
        float32 3 x 224 x 224, as crop returns it.
    """
    return crop(resized_bgr(image))


def ten_crops(image):
    """Caffe's oversample: four corners and the centre, each also mirrored.

    Args:
        image: an RGB PIL image (open_image's).

    Returns:
        float32 10 x 3 x 224 x 224: the top-left, top-right, bottom-left
        and bottom-right corners, the centre, then the same five mirrored.
    """
    array = resized_bgr(image)
    far = RESIZE - CROP
    offsets = [(0, 0), (0, far), (far, 0), (far, far), (CENTER, CENTER)]
    return numpy.stack([crop(array, top, left, mirror)
                        for mirror in (False, True)
                        for top, left in offsets])


def network_input(image, oversample=False):
    """The network's input for one image.

    Args:
        image: an RGB PIL image (open_image's).
        oversample: Caffe's ten crops instead of the centre crop.

    Returns:
        float32 1 x 3 x 224 x 224 (the centre crop), or 10 x 3 x 224 x 224
        (ten_crops) with ``oversample``.
    """
    return ten_crops(image) if oversample else preprocess(image)[None]


def image_suffixes():
    """The file name endings Pillow registers for its formats.

    A few, such as .pdf, it can only write: such a file is then reported
    as undecodable rather than passed over.

    Returns:
        set of str: the endings, lower case with the dot ('.jpg').
    """
    return set(Image.registered_extensions())


def is_hidden(name):
    """Whether a name is one that is never data.

    Args:
        name: a file or folder name, without its folder.

    Returns:
        bool: True for dot-files and dot-folders (macOS's ._NAME companions
        among them) and for the __MACOSX folder that macOS zips carry.
    """
    return name.startswith('.') or name == '__MACOSX'


def _check_regular(path):
    """Refuses a FIFO, device or socket by its name: opening a FIFO would
    wait for a writer forever."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return  # open() says what is wrong, in open_image's words
    if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
        raise UserError('not a regular file (a FIFO, device or socket)')


def _kind(entry):
    """'folder' or 'file' for a directory entry, links followed; None for
    anything else: a FIFO, device or socket, a link in a loop (ELOOP) or
    to nothing, an entry gone."""
    try:
        return 'folder' if entry.is_dir() else (
            'file' if entry.is_file() else None)
    except OSError:
        return None


def _above(entry, top):
    """Whether a folder entry is a link to top or to a folder holding it."""
    if not entry.is_symlink():
        return False
    target = os.path.realpath(entry.path)
    return top == target or top.startswith(target.rstrip(os.sep) + os.sep)


def list_images(folder, recursive=False):
    """The image files in a folder, and what was left out.

    A file is an image file when its ending is one of image_suffixes();
    whether it decodes is for open_image to say.

    Args:
        folder: the folder.
        recursive: also the visible sub-folders at any depth, following
            links, each folder once, but for a link to the folder or one
            that holds it (a loop, which would list a class folder's
            siblings as its own); else sub-folders go uncounted.

    Returns:
        (paths, skipped): the image files, sorted, and {reason: count} of
        the entries left out: 'hidden' (is_hidden, folders too), 'not a
        regular file' (a FIFO, device or socket, a dangling or looping
        link), 'link to a folder above it' or 'not an image file (.EXT)'
        ('no extension' if none).

    Raises:
        UserError: a folder to list cannot be read (named in the message).
    """
    suffixes = image_suffixes()
    images, skipped, seen = [], {}, set()
    top = os.path.realpath(folder)
    pending = [folder]
    while pending:
        current = pending.pop()
        try:
            info = os.stat(current)
            if (info.st_dev, info.st_ino) in seen:
                continue  # a link back to a folder already listed
            seen.add((info.st_dev, info.st_ino))
            entries = list(os.scandir(current))
        except OSError as e:
            raise UserError('cannot read folder {}: {}'.format(
                shown(current), e.strerror or e))
        for entry in entries:
            kind = _kind(entry)
            if is_hidden(entry.name):
                reason = 'hidden'
            elif kind == 'folder' and recursive and _above(entry, top):
                reason = 'link to a folder above it'
            elif kind == 'folder':
                if recursive:
                    pending.append(entry.path)
                continue
            elif kind is None:
                # A FIFO would block a read; a dangling or looping link.
                reason = 'not a regular file'
            elif os.path.splitext(entry.name)[1].lower() in suffixes:
                images.append(entry.path)
                continue
            else:
                reason = 'not an image file ({})'.format(
                    shown(os.path.splitext(entry.name)[1].lower()) or
                    'no extension')
            skipped[reason] = skipped.get(reason, 0) + 1
    return sorted(images), skipped


def is_image(path):
    """Whether Pillow recognises the file (it reads only the header).

    Args:
        path: the file.

    Returns:
        bool: False for whatever Pillow fails to open, missing files too,
        and without opening it for what is not a regular file: a pipe
        (``<(...)``) would lose the bytes read, a FIFO without a writer
        would wait for ever.
    """
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            return False
        with Image.open(path):
            return True
    except Exception:  # any failure to recognise it means "not an image"
        return False
