"""images: decoding as Caffe's readers do, refusals, preprocessing, listing."""
import io

import numpy
import pytest
from PIL import Image

from googlenet_chainer import errors, images
from googlenet_chainer.errors import UserError
from googlenet_chainer.images import open_image
from googlenet_chainer.prefetch import prefetch

from image_fixtures import jpeg_bytes, two_tone, write_pixel_formats


def test_16_bit_and_float_images_read_as_their_8_bit_selves(tmp_path):
    write_pixel_formats(tmp_path)

    def read(name):
        return images.preprocess(images.open_image(
            str(tmp_path / name)))
    modes = {name: Image.open(tmp_path / name).mode for name in (
        'grey16.png', 'grey16.tif', 'float01.tif', 'grey16.pgm')}
    assert modes == {'grey16.png': 'I;16', 'grey16.tif': 'I;16',
                     'float01.tif': 'F', 'grey16.pgm': 'I'}
    grey = read('grey8.png')
    for name in ('grey16.png', 'grey16.tif', 'float01.tif', 'grey16.pgm'):
        assert numpy.array_equal(read(name), grey), name
    rgb = read('rgb8.png')
    for name in ('rgb16.png', 'rgba16.png'):  # alpha dropped, as Caffe
        assert numpy.array_equal(read(name), rgb), name


def test_modes_without_an_rgb_reading_are_refused_by_name(tmp_path):
    Image.new('LAB', (20, 20)).save(tmp_path / 'lab.tif')
    Image.fromarray(numpy.full((20, 20), 7, numpy.int32)).save(
        tmp_path / 'int32.tif')
    Image.fromarray(numpy.full((20, 20), 3.5, numpy.float32)).save(
        tmp_path / 'float255.tif')
    Image.fromarray(numpy.full((20, 20), numpy.nan, numpy.float32)).save(
        tmp_path / 'nan.tif')
    reasons = {}
    for name in ('lab.tif', 'int32.tif', 'float255.tif', 'nan.tif'):
        with pytest.raises(errors.UserError) as e:
            images.open_image(str(tmp_path / name))
        reasons[name] = str(e.value)
    assert reasons['lab.tif'].startswith('pixel mode LAB has no RGB reading')
    assert reasons['int32.tif'].startswith('pixel mode I has no RGB reading')
    assert reasons['float255.tif'] == (
        'float samples outside 0..1 (3.5..3.5); float images are read as 0..1')
    assert reasons['nan.tif'] == 'float samples that are NaN or infinite'


def test_a_link_that_loops_is_passed_over(tmp_path):
    folder = tmp_path / 'cat'
    folder.mkdir()
    Image.new('RGB', (8, 8)).save(str(folder / 'a.png'))
    (folder / 'loop.jpg').symlink_to('loop.jpg')  # ELOOP when followed
    (folder / 'gone.jpg').symlink_to('nowhere.jpg')
    found, skipped = images.list_images(str(tmp_path), recursive=True)
    assert found == [str(folder / 'a.png')]
    assert skipped == {'not a regular file': 2}


def _position_image():
    """256x256, so the resize keeps every pixel: R = column, G = row."""
    cols, rows = numpy.meshgrid(numpy.arange(256), numpy.arange(256))
    array = numpy.stack([cols, rows, numpy.zeros_like(cols)], -1)
    return Image.fromarray(array.astype(numpy.uint8))


def test_solid_colour_becomes_bgr_minus_mean():
    x = images.preprocess(Image.new('RGB', (300, 200), (10, 20, 30)))
    assert x.shape == (3, 224, 224) and x.dtype == numpy.float32
    assert numpy.array_equal(x[:, 5, 7], [30 - 104, 20 - 117, 10 - 123])
    assert numpy.all(x == x[:, :1, :1])


def test_grey_is_replicated_and_alpha_dropped(tmp_path):
    two_tone(90, (64, 64), 'L').save(tmp_path / 'grey.png')
    grey = images.preprocess(
        images.open_image(str(tmp_path / 'grey.png')))
    assert numpy.array_equal(grey[:, 0, 0], [90 - 104, 90 - 117, 90 - 123])
    path = tmp_path / 'rgba.png'
    two_tone((10, 20, 30, 0), (64, 64), 'RGBA').save(path)
    rgba = images.preprocess(images.open_image(str(path)))
    assert numpy.array_equal(rgba[:, 0, 0], [30 - 104, 20 - 117, 10 - 123])


def test_centre_crop_starts_at_16():
    x = images.preprocess(_position_image())
    assert x[2, 0, 0] == 16 - 123 and x[1, 0, 0] == 16 - 117  # R, G
    assert x[2, 0, 223] == 239 - 123 and x[1, 223, 0] == 239 - 117


def test_ten_crops_are_corners_centre_and_mirrors():
    crops = images.ten_crops(_position_image())
    starts = [(c[1, 0, 0] + 117, c[2, 0, 0] + 123) for c in crops]
    assert starts[:5] == [(0, 0), (0, 32), (32, 0), (32, 32), (16, 16)]
    # Mirrored crops read the same window from its right edge.
    assert starts[5:] == [(0, 223), (0, 255), (32, 223), (32, 255),
                          (16, 239)]
    assert numpy.array_equal(crops[5], crops[0][:, :, ::-1])


def test_resize_is_pillow_bilinear_to_256():
    image = Image.fromarray(numpy.random.RandomState(0).randint(
        0, 256, (300, 400, 3)).astype(numpy.uint8))
    expected = numpy.asarray(image.resize((256, 256), Image.BILINEAR),
                             dtype=numpy.float32)
    x = images.preprocess(image)
    assert numpy.array_equal(x[0], expected[16:240, 16:240, 2] - 104)


def test_exif_orientation_is_applied(tmp_path):
    # Stored 40x20 with the left half red; orientation 6 means the viewer
    # rotates it 90 degrees clockwise, so red ends up on top.
    array = numpy.zeros((20, 40, 3), numpy.uint8)
    array[:, :20] = (255, 0, 0)
    array[:, 20:] = (0, 0, 255)
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / 'rotated.jpg'
    Image.fromarray(array).save(path, exif=exif, quality=95)
    image = images.open_image(str(path))
    assert image.size == (20, 40)
    top, bottom = image.getpixel((10, 5)), image.getpixel((10, 35))
    assert top[0] > 200 and top[2] < 50 and bottom[2] > 200


def test_a_camera_jpeg_with_several_images_cut_short_is_refused():
    # A JPEG with an MPF segment of two images (many cameras write one):
    # Pillow names it MPO.
    noise = numpy.random.RandomState(3).randint(0, 256, (100, 80, 3))
    frames = [Image.fromarray(noise.astype(numpy.uint8)),
              Image.fromarray(noise[::-1].astype(numpy.uint8))]
    buf = io.BytesIO()
    frames[0].save(buf, 'MPO', save_all=True, append_images=frames[1:])
    whole = buf.getvalue()
    assert Image.open(io.BytesIO(whole)).format == 'MPO'
    with pytest.raises(errors.UserError,
                       match=r'^truncated image, or one that really ends'):
        images.open_image(whole[:len(whole) * 3 // 20] + b'\xff\xd9')


@pytest.mark.parametrize('mode, options, height', [
    ('RGB', {'subsampling': 0}, 100), ('RGB', {'subsampling': 2}, 100),
    ('RGB', {'subsampling': 2}, 96), ('L', {}, 100), ('CMYK', {}, 100),
    ('RGB', {'progressive': True}, 100)])
def test_a_jpeg_cut_short_and_closed_is_refused(mode, options, height):
    # Heights that are and are not a whole number of MCU rows (8 or 16); a
    # progressive file cut in its first scan.
    noise = numpy.random.RandomState(1).randint(0, 256, (height, 80, 3))
    image = Image.fromarray(noise.astype(numpy.uint8)).convert(mode)
    buf = io.BytesIO()
    image.save(buf, 'JPEG', quality=90, **options)
    whole = buf.getvalue()
    assert images.open_image(whole).size == (80, height)
    first_scan = whole.index(b'\xff\xda')
    cuts = [first_scan + 100] if options.get('progressive') else [
        len(whole) * 3 // 10, len(whole) * 6 // 10]
    for cut in cuts:
        # Pillow itself finds some cuts: 'truncated image' alone.
        with pytest.raises(errors.UserError,
                           match=r'^truncated image(, or one that really '
                                 r'ends in flat grey: its rows from \d+ on|$)'):
            images.open_image(whole[:cut] + b'\xff\xd9')


def test_grey_bands_that_are_content_are_classified(tmp_path):
    """Bands of exactly the decoder's grey that a cut does not make: one
    matched at the top (letterboxing), an image grey throughout (one
    colour, said so), grey that is not the decoder's in every channel. A
    band at the bottom alone is refused, saying it may be content."""
    photo = numpy.random.RandomState(2).randint(0, 256, (100, 80, 3))
    photo = photo.astype(numpy.uint8)
    grey = numpy.full((36, 80, 3), 128, numpy.uint8)
    boxed = numpy.concatenate([grey[:28], photo, grey[:28]])
    for subsampling in (0, 2):
        image = images.open_image(jpeg_bytes(boxed, subsampling=subsampling))
        assert image.size == (80, len(boxed))
    with pytest.raises(errors.UserError,
                       match='or one that really ends in flat grey'):
        images.open_image(jpeg_bytes(numpy.concatenate([photo, grey])))
    # 127 is the decoder's grey in Pillow's inverted CMYK only.
    below = numpy.concatenate([photo, grey - 1])
    assert images.open_image(jpeg_bytes(below)).size == (80, len(below))
    # Grey that is not the decoder's in every channel is a photo's.
    band = photo[:96].copy()
    band[-8:] = (128, 128, 127)
    assert images.open_image(jpeg_bytes(band, subsampling=0)).size == (80,
                                                                       96)
    with pytest.raises(errors.UserError, match='^one colour'):
        images.open_image(jpeg_bytes(numpy.full((64, 64, 3), 128,
                                                numpy.uint8)))


def test_deep_samples_flat_at_8_bits_and_floats_over_1_say_so(tmp_path):
    deep = numpy.full((20, 30), 30000, numpy.uint16)
    deep[0, 0] = 30001  # one level of 65535: the same 8-bit input
    over = numpy.full((20, 30), 0.5, numpy.float32)
    over[3, 4] = numpy.nextafter(numpy.float32(1), numpy.float32(2))
    for array, name, message in [
            (deep, 'deep.png', 'one colour throughout once read at 8 bits '
             '(RGB 117, 117, 117): nothing to classify'),
            (over, 'over.tif', 'float samples outside 0..1 '
             '(0.5..1.00000012); float images are read as 0..1')]:
        path = str(tmp_path / name)
        Image.fromarray(array).save(path)
        with pytest.raises(errors.UserError) as e:
            images.open_image(path)
        assert str(e.value) == message


def test_images_opened_in_threads_keep_their_own_pixel_limits(tmp_path):
    from PIL import Image
    path = str(tmp_path / 'a.png')
    Image.fromarray(numpy.arange(6000, dtype=numpy.uint8).reshape(
        40, 50, 3)).save(path)
    default = Image.MAX_IMAGE_PIXELS

    def opened(limit):
        try:
            return open_image(path, limit).size
        except UserError as e:
            return str(e)
    limits = [1999, 2000, 10 ** 6] * 20
    for got, limit in zip(prefetch(opened, limits, ahead=8, workers=4),
                          limits):
        assert got[1].result() == ((50, 40) if limit >= 2000 else (
            'larger than the pixel limit (2000 pixels > 1999; '
            '--max-pixels raises it)'))
    assert Image.MAX_IMAGE_PIXELS == default
