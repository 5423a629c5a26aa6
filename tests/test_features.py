import os

import numpy
from PIL import Image

from chainer_compat import chainer

import googlenet_io
import googlenet_predict
import tuned_googlenet
from numeric import PATH_TERMS, assert_close

# pool5 sums the products of the whole path but loss3/classifier's 1024.
POOL5_TERMS = PATH_TERMS - 1024


def save_png(path, colour, rng):
    noise = rng.randint(-40, 40, (40, 50, 3))
    array = numpy.clip(numpy.array(colour) + noise, 0, 255)
    Image.fromarray(array.astype(numpy.uint8)).save(path)
    return str(path)


def test_features_are_pool5_in_input_order(model_1000, tmp_path, capsys,
                                           rng):
    paths = [save_png(tmp_path / name, colour, rng) for name, colour in
             (('b.png', (200, 40, 40)), ('a.png', (40, 200, 40)),
              ('c.png', (40, 40, 200)))]
    missing = str(tmp_path / 'missing.png')
    out = str(tmp_path / 'features.npz')
    code = googlenet_predict.main(['--model', model_1000, '--features', out,
                                   '-b', '2', paths[0], missing, paths[1],
                                   paths[2]])
    printed, err = capsys.readouterr()
    assert code == 1  # as prediction: the missing input fails, alone
    assert err == 'error: {}: no such file\n'.format(missing)
    assert printed == 'wrote pool5 features of 3 inputs to {}\n'.format(out)
    with numpy.load(out) as npz:
        assert list(npz['inputs']) == paths
        features = npz['features']
    assert features.shape == (3, 1024) and features.dtype == numpy.float32

    model, _ = tuned_googlenet.load_model(model_1000)
    x = numpy.stack([googlenet_io.preprocess(googlenet_io.open_image(p))
                     for p in paths])
    with chainer.no_backprop_mode(), chainer.using_config('train', False):
        expected = model.features(x)[2].array.reshape(3, 1024)
    assert_close(features, expected, terms=POOL5_TERMS)
    assert not numpy.allclose(features[0], features[1])

    npy = str(tmp_path / 'features.npy')
    assert googlenet_predict.main(['--model', model_1000, '--features', npy,
                                   paths[1]]) == 0
    capsys.readouterr()
    assert_close(numpy.load(npy), expected[1:2], terms=POOL5_TERMS)
    with open(str(tmp_path / 'features.txt'), 'rb') as f:
        assert f.read() == os.fsencode(paths[1]) + b'\n'  # reopens it


def test_features_file_name_is_checked_first(model_1000, tmp_path, capsys):
    code = googlenet_predict.main(['--model', model_1000, '--features',
                                   str(tmp_path / 'f.csv')])
    assert code == 1
    assert capsys.readouterr().err == (
        'error: --features {}: the file name must end in .npz or .npy\n'
        .format(tmp_path / 'f.csv'))
    assert not os.listdir(str(tmp_path))
