"""Compares images.open_image with Caffe's reader, OpenCV's imread.

    pip install --no-deps opencv-python-headless==4.14.0.94
    python tools/decode_parity.py [FOLDER]

Writes the same small pictures in every pixel mode and container this
toolkit reads (or decodes the images in FOLDER), reads each with both, and
prints per file the largest difference of a sample (0..255) and the mean.
pixels.py's rules were set from this table; a difference of 1 is rounding
(OpenCV's own readers differ so), more is a different picture.
"""
import os
import sys
import tempfile

import cv2
import numpy
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(
    __file__))))
from googlenet_chainer.errors import UserError  # noqa: E402
from googlenet_chainer.images import open_image  # noqa: E402


def write_battery(folder):
    """Files of one noisy and one smooth picture in many modes."""
    rng = numpy.random.RandomState(0)
    noisy = rng.randint(0, 256, (37, 53, 3)).astype(numpy.uint8)
    rows, cols = numpy.mgrid[0:37, 0:53]
    smooth = numpy.stack([cols * 4, rows * 6, (cols + rows) * 2], -1).astype(
        numpy.uint8)
    alpha = rng.randint(0, 256, (37, 53)).astype(numpy.uint8)
    grey16 = rng.randint(0, 65536, (37, 53)).astype(numpy.uint16)
    rgb16 = rng.randint(0, 65536, (37, 53, 3)).astype(numpy.uint16)
    pil = {
        'rgb.png': (noisy, {}), 'rgba.png': (numpy.dstack([noisy, alpha]), {}),
        'l.png': (noisy[..., 0], {}), 'rgb.bmp': (noisy, {}),
        'rgb.gif': (noisy, {}), 'rgb.ppm': (noisy, {}),
        'rgba.tif': (numpy.dstack([noisy, alpha]), {}),
        'rgba.webp': (numpy.dstack([noisy, alpha]), {'lossless': True}),
        'q95.jpg': (smooth, {'quality': 95}),
        'progressive.jpg': (smooth, {'quality': 90, 'progressive': True}),
        'grey.jpg': (smooth[..., 0], {'quality': 90}),
        'lossy.webp': (smooth, {'quality': 90}),
    }
    for name, (array, options) in pil.items():
        Image.fromarray(array).save(os.path.join(folder, name), **options)
    Image.fromarray(noisy).quantize(64).save(os.path.join(folder, 'p.png'))
    Image.fromarray(smooth).convert('CMYK').save(
        os.path.join(folder, 'cmyk.jpg'), quality=95)
    Image.fromarray(noisy).convert('CMYK').save(
        os.path.join(folder, 'cmyk.tif'))
    for orientation in range(1, 9):
        exif = Image.Exif()
        exif[0x0112] = orientation
        for ext in ('jpg', 'png', 'webp'):
            Image.fromarray(smooth).save(os.path.join(
                folder, 'orientation{}.{}'.format(orientation, ext)),
                exif=exif.tobytes(), quality=95, lossless=True)
    for ext in ('png', 'tif', 'pgm'):
        cv2.imwrite(os.path.join(folder, 'grey16.' + ext), grey16)
    for ext in ('png', 'tif', 'ppm'):
        cv2.imwrite(os.path.join(folder, 'rgb16.' + ext), rgb16)
    with open(os.path.join(folder, 'grey10.pgm'), 'wb') as f:
        f.write(b'P5 53 37 1023\n' + (grey16 >> 6).astype('>u2').tobytes())


def compare(folder):
    """(name, largest difference, mean difference or a reason) per file."""
    for name in sorted(os.listdir(folder)):
        path = os.path.join(folder, name)
        theirs = cv2.imread(path, cv2.IMREAD_COLOR)
        try:
            ours = numpy.asarray(open_image(path))
        except UserError as e:
            yield name, None, 'refused here: {}'.format(e)
            continue
        if theirs is None:
            yield name, None, 'OpenCV cannot read it'
        elif theirs.shape != ours.shape:
            yield name, None, 'shapes {} here, {} OpenCV'.format(
                ours.shape, theirs.shape)
        else:
            diff = numpy.abs(ours.astype(int) - theirs[..., ::-1])
            yield name, int(diff.max()), '{:.3f}'.format(diff.mean())


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    with tempfile.TemporaryDirectory() as scratch:
        folder = argv[0] if argv else scratch
        if not argv:
            write_battery(folder)
        print('{:<22} {:>4}  {}'.format('file', 'max', 'mean'))
        for name, largest, rest in compare(folder):
            print('{:<22} {:>4}  {}'.format(
                name, '-' if largest is None else largest, rest))


if __name__ == '__main__':
    main()
