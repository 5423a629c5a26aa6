"""Pixel conventions: what Pillow decodes, read as RGB the way Caffe's
reader, OpenCV's ``cv::imread(path, IMREAD_COLOR)``, reads the same file.

Each rule below was measured against OpenCV 4.14's imread on files of every
mode (tools/decode_parity.py repeats the comparison); where the two readers
disagree by more than rounding, the file is read as OpenCV reads it or
refused, saying why.
"""
import numpy
from PIL import Image

from googlenet_chainer.errors import UserError

# Modes Pillow converts to RGB by their definition; alpha is dropped, as
# cv::imread(IMREAD_COLOR) drops it (for PNG, WebP, BMP, GIF).
RGB_READABLE = {'1', 'L', 'P', 'RGB', 'RGBA', 'RGBX', 'RGBa', 'LA', 'PA',
                'CMYK', 'YCbCr', 'HSV'}
SIXTEEN_BIT = {'I;16', 'I;16L', 'I;16B', 'I;16N'}
# TIFF tags: BitsPerSample and ExtraSamples (1 associated alpha, 2
# unassociated; TIFF 6.0, section 18).
BITS_PER_SAMPLE = 258
EXTRA_SAMPLES = 338


def check_maxval(image):
    """UserError for a PNM (PGM, PPM) whose maxval is not 255 or 65535.

    Call it on an opened image before it is loaded (Pillow keeps the
    maxval in its tile until then). OpenCV reads such a file unscaled (a
    binary 10-bit PGM as values 0..3 of 255, nearly black) or scaled (the
    same picture written as text), while Pillow always scales: no reading
    is Caffe's, so the file is refused.

    Args:
        image: a PIL.Image.Image, opened and not yet loaded.

    Raises:
        UserError: the maxval is another one, with it named.
    """
    if image.format != 'PPM' or not image.tile:
        return
    args = image.tile[0].args
    maxval = args[-1] if isinstance(args, tuple) else None
    if isinstance(maxval, int) and maxval not in (255, 65535):
        raise UserError('a PNM image of maxval {} (not 255 or 65535), which '
                        'Caffe\'s reader (OpenCV) does not scale; save it as '
                        'PNG'.format(maxval))


def as_rgb(image):
    """image in mode RGB, as cv::imread(IMREAD_COLOR) reads its file.

    Samples are scaled by the range of their type: 16 bits to their high
    byte (OpenCV's PNG, TIFF and PGM readers; Pillow's for 16-bit RGB),
    float (mode F, which OpenCV cannot read) taken as 0..1 as skimage's
    img_as_float does for Caffe's classify.py. Transparency is dropped,
    except in an 8-bit RGBA TIFF, whose colours OpenCV reads premultiplied
    by alpha (libtiff's RGBA reader). A CMYK JPEG is read with OpenCV's
    formula (below), one level above Pillow's in most pixels.

    Args:
        image: a loaded PIL.Image.Image, EXIF orientation applied.

    Returns:
        PIL.Image.Image in mode RGB.

    Raises:
        UserError: a mode without an honest RGB reading (LAB, 32-bit
            integers, premultiplied La), by name; float samples that are
            not finite or lie outside 0..1.
    """
    mode = image.mode
    if mode == 'CMYK' and image.format in ('JPEG', 'MPO'):
        return _cmyk_jpeg(image)
    if mode == 'RGBA' and _premultiplied_by_opencv(image):
        rgba = numpy.asarray(image, dtype=numpy.uint32)
        colour = (rgba[..., :3] * rgba[..., 3:] + 127) // 255
        return Image.fromarray(colour.astype(numpy.uint8), 'RGB')
    if mode == 'RGB':
        return image
    if mode in RGB_READABLE:
        return image.convert('RGB')
    if mode in SIXTEEN_BIT or (mode == 'I' and image.format == 'PPM'):
        # Pillow reads a PGM of maxval 65535 as mode I.
        grey = numpy.asarray(image, dtype=numpy.uint32) >> 8
    elif mode == 'F':
        grey = _float_grey(numpy.asarray(image, dtype=numpy.float64))
    else:
        raise UserError('pixel mode {} has no RGB reading this toolkit '
                        'trusts; save the image as 8- or 16-bit RGB or '
                        'grey'.format(mode))
    return Image.fromarray(grey.astype(numpy.uint8), 'L').convert('RGB')


def _cmyk_jpeg(image):
    """OpenCV's CMYK to RGB (icvCvt_CMYK2BGR_8u_C4C3R) on a JPEG's stored
    samples, which both readers take as Adobe's inverted ones: Pillow
    inverts them on decoding, so stored = 255 - Pillow's."""
    cmyk = numpy.asarray(image, dtype=numpy.int32)
    white = 255 - cmyk[..., 3:]
    rgb = white - ((cmyk[..., :3] * white) >> 8)
    return Image.fromarray(rgb.astype(numpy.uint8), 'RGB')


def _premultiplied_by_opencv(image):
    """Whether OpenCV reads this RGBA image's colours times alpha: an 8-bit
    TIFF whose extra sample is declared alpha."""
    if image.format != 'TIFF':
        return False
    def tag(number):
        value = image.tag_v2.get(number, ())
        return value if isinstance(value, tuple) else (value,)
    return tag(BITS_PER_SAMPLE) == (8, 8, 8, 8) and tag(EXTRA_SAMPLES) in (
        (1,), (2,))


def _float_grey(array):
    """A float image's samples as 0..255, rounded; UserError for samples
    that are not finite or lie outside 0..1."""
    if not numpy.isfinite(array).all():
        raise UserError('float samples that are NaN or infinite')
    if array.min() < 0 or array.max() > 1:
        # 9 digits: a float32 just over 1 does not print as 1.
        raise UserError('float samples outside 0..1 ({:.9g}..{:.9g}); '
                        'float images are read as 0..1'.format(
                            array.min(), array.max()))
    return numpy.rint(array * 255.0)
