"""Images and labelled image folders made for the tests, and the options of
the training and MPI tests."""
import io
import os
import struct
import zlib

import numpy
from PIL import Image

# What training runs in tests pass to stay quiet and in one process.
QUIET = ['--no-progress', '--loaderjob', '0']
# The features fixture's run (conftest); the MPI tests compute the same
# cache on two ranks. Blocks of 4 images make five of the 18 training images.
FEATURES_ARGV = ['--cache-features', '--val-ratio', '0.25',
                 '--val-batchsize', '4']
COLOURS = {'blue': (30, 40, 220), 'green': (30, 200, 40), 'red': (220, 30, 30)}


def two_tone(color, size, mode='RGB'):
    """Image.new(mode, size, color) with its right half in the opposite
    colour (255 - each of R, G, B or L; alpha kept): an image of one
    colour throughout is refused, as there is nothing in it to classify."""
    image = Image.new(mode, size, color)
    if isinstance(color, int):
        other = 255 - color
    else:
        other = tuple(255 - c for c in color[:3]) + tuple(color[3:])
    image.paste(other, (size[0] // 2, 0, size[0], size[1]))
    return image


def make_dataset(root, per_class, colours=COLOURS):
    """One folder of per_class noisy PNGs per colour; returns root."""
    rng = numpy.random.RandomState(0)
    for name, colour in colours.items():
        os.makedirs(os.path.join(root, name), exist_ok=True)
        for i in range(per_class):
            noise = rng.randint(-30, 30, (40 + i, 50, 3))
            array = numpy.clip(numpy.array(colour) + noise, 0, 255)
            Image.fromarray(array.astype(numpy.uint8)).save(
                os.path.join(root, name, '{}.png'.format(i)))
    return str(root)


PHOTO = numpy.random.RandomState(5).randint(0, 256, (40, 50, 3)).astype(
    numpy.uint8)
GREY = PHOTO[:, :, 1]


def write_png(path, array, bit_depth, colour_type, width=None, height=None):
    """A PNG written by hand, for what Pillow does not write (16-bit RGB) or
    would refuse to (a header declaring more pixels than the body holds)."""
    height = height or array.shape[0]
    width = width or array.shape[1]
    raw = b''.join(b'\0' + row.astype('>u2' if bit_depth == 16 else 'u1')
                   .tobytes() for row in array)

    def chunk(kind, data):
        return (struct.pack('>I', len(data)) + kind + data
                + struct.pack('>I', zlib.crc32(kind + data)))
    ihdr = struct.pack('>IIBBBBB', width, height, bit_depth, colour_type,
                       0, 0, 0)
    with open(path, 'wb') as f:
        f.write(b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', ihdr)
                + chunk(b'IDAT', zlib.compress(raw)) + chunk(b'IEND', b''))
    return str(path)


def write_pixel_formats(tmp_path):
    """The same grey and colour picture in the pixel formats Caffe's readers
    scale: 8 and 16 bits, float, PGM, RGB(A) of 16 bits."""
    Image.fromarray(GREY).save(tmp_path / 'grey8.png')
    Image.fromarray(GREY.astype(numpy.uint16) * 257).save(
        tmp_path / 'grey16.png')
    Image.fromarray(GREY.astype(numpy.uint16) * 257).save(
        tmp_path / 'grey16.tif')
    Image.fromarray(GREY.astype(numpy.float32) / 255).save(
        tmp_path / 'float01.tif')
    with open(tmp_path / 'grey16.pgm', 'wb') as f:  # Pillow's mode I
        f.write(b'P5\n50 40\n65535\n'
                + (GREY.astype('>u2') * 257).tobytes())
    Image.fromarray(PHOTO).save(tmp_path / 'rgb8.png')
    write_png(tmp_path / 'rgb16.png', PHOTO.astype(numpy.uint16) * 257,
              16, 2)
    rgba = numpy.concatenate([PHOTO, numpy.full((40, 50, 1), 9, numpy.uint8)],
                             axis=2)
    write_png(tmp_path / 'rgba16.png', rgba.astype(numpy.uint16) * 257, 16, 6)


def make_classes(root, counts, size=(50, 40), ext='.png'):
    """Class folders of solid-ish images: {name: how many}; names may be
    bytes (not UTF-8)."""
    rng = numpy.random.RandomState(0)
    root = os.fsencode(str(root))
    for k, (name, count) in enumerate(sorted(
            (os.fsencode(name), count) for name, count in counts.items())):
        os.makedirs(os.path.join(root, name), exist_ok=True)
        for i in range(count):
            colour = numpy.array([(70 * k) % 256, 120, 255 - 60 * k])
            noise = rng.randint(-20, 20, (size[1], size[0], 3))
            Image.fromarray(numpy.clip(colour + noise, 0, 255).astype(
                numpy.uint8)).save(os.path.join(
                    root, name, '{}{}'.format(i, ext).encode()))
    return os.fsdecode(root)


def make_images(folder, colours, per_class, rng):
    """[(path, class name)] of small noisy images in class folders."""
    made = []
    for name, colour in colours.items():
        os.makedirs(os.path.join(folder, name), exist_ok=True)
        for i in range(per_class):
            noise = rng.randint(-60, 60, (40, 50, 3))
            array = numpy.clip(numpy.array(colour) + noise, 0, 255)
            path = os.path.join(folder, name, '{}.png'.format(i))
            Image.fromarray(array.astype(numpy.uint8)).save(path)
            made.append((path, name))
    return made


def png_bytes(color=(200, 30, 30), size=(40, 30), mode='RGB', fmt='PNG'):
    """A two_tone image's file, in memory."""
    buf = io.BytesIO()
    two_tone(color, size, mode).save(buf, fmt)
    return buf.getvalue()


def jpeg_bytes(array, **options):
    """An array's JPEG file (quality 90), in memory."""
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, 'JPEG', quality=90, **options)
    return buf.getvalue()


def random_images(rng, n, h, w):
    """float32 n x 3 x h x w network inputs, uniform over a BGR-minus-mean
    image's range."""
    return rng.uniform(-120, 130, (n, 3, h, w)).astype(numpy.float32)
