"""pixels: each mode read as Caffe's reader (OpenCV's imread) reads it.

The expected values are worked out from the conventions, not read from
OpenCV: tools/decode_parity.py compares with OpenCV itself.
"""
import numpy
import pytest
from PIL import Image

from googlenet_chainer.errors import UserError
from googlenet_chainer.images import open_image

from image_fixtures import write_png


def pixels(path):
    return numpy.asarray(open_image(str(path))).astype(int)


def test_16_bit_grey_reads_as_its_high_byte(tmp_path):
    # 0x80FF is 128.99 levels of 255: OpenCV keeps 128, as Pillow does for
    # 16-bit RGB; rounding 0x80FF / 257 would make 129.
    levels = numpy.array([[0x0000, 0x00FF, 0x0100, 0x80FF, 0xFF00, 0xFFFF]],
                         numpy.uint16)
    write_png(tmp_path / 'grey16.png', levels, 16, 0)
    with open(tmp_path / 'grey16.pgm', 'wb') as f:
        f.write(b'P5 6 1 65535\n' + levels.astype('>u2').tobytes())
    for name in ('grey16.png', 'grey16.pgm'):
        assert pixels(tmp_path / name)[0, :, 0].tolist() == [
            0, 0, 1, 128, 255, 255], name


def test_a_cmyk_jpeg_reads_with_opencvs_formula(tmp_path):
    # Stored (Adobe, inverted) c' = 255 - C and k' = 255 - K; OpenCV's red
    # is k' - ((255 - c') * k' >> 8) = (255 - K) - (C * (255 - K) >> 8).
    # Flat 8x8 blocks at quality 100 and no subsampling decode exactly.
    cmyk = numpy.zeros((8, 24, 4), numpy.uint8)
    cmyk[:, 0:8] = (128, 0, 0, 0)
    cmyk[:, 8:16] = (0, 64, 200, 100)
    cmyk[:, 16:24] = (0, 0, 0, 255)
    Image.fromarray(cmyk, 'CMYK').save(tmp_path / 'cmyk.jpg', quality=100,
                                      subsampling=0)
    got = pixels(tmp_path / 'cmyk.jpg')
    assert got[4, 4].tolist() == [255 - (128 * 255 >> 8), 255, 255]
    assert got[4, 12].tolist() == [155, 155 - (64 * 155 >> 8),
                                   155 - (200 * 155 >> 8)]
    assert got[4, 20].tolist() == [0, 0, 0]


def test_an_8_bit_rgba_tiff_reads_premultiplied_and_a_png_drops_alpha(
        tmp_path):
    # libtiff's RGBA reader, through which OpenCV reads an 8-bit TIFF,
    # multiplies an unassociated alpha in: (v * a + 127) // 255.
    rgba = numpy.array([[[200, 100, 50, 128], [10, 20, 30, 255],
                         [250, 250, 250, 0]]], numpy.uint8)
    Image.fromarray(rgba, 'RGBA').save(tmp_path / 'a.tif')
    Image.fromarray(rgba, 'RGBA').save(tmp_path / 'a.png')
    assert pixels(tmp_path / 'a.tif')[0].tolist() == [
        [100, 50, 25], [10, 20, 30], [0, 0, 0]]
    assert pixels(tmp_path / 'a.png')[0].tolist() == rgba[0, :, :3].tolist()


@pytest.mark.parametrize('header, samples', [
    (b'P5 3 1 1023\n', numpy.array([0, 512, 1023], '>u2').tobytes()),
    (b'P5 3 1 100\n', bytes([0, 50, 100])),
    (b'P2 3 1 100\n', b'0 50 100\n'),
])
def test_a_pnm_of_another_maxval_is_refused_naming_it(tmp_path, header,
                                                      samples):
    (tmp_path / 'x.pgm').write_bytes(header + samples)
    with pytest.raises(UserError) as e:
        open_image(str(tmp_path / 'x.pgm'))
    maxval = header.split()[-1].decode()
    assert str(e.value) == (
        "a PNM image of maxval {} (not 255 or 65535), which Caffe's reader "
        "(OpenCV) does not scale; save it as PNG".format(maxval))
