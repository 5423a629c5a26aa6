"""inference: the batched path."""
from googlenet_chainer import images, inference, model_file
from googlenet_chainer.devices import get_device

from image_fixtures import make_images
from numeric import assert_probabilities_close


def test_oversample_scores_the_ten_crop_average(five_class_model, tmp_path,
                                                rng):
    [(path, _)] = make_images(str(tmp_path), {'bee': (90, 90, 30)}, 1, rng)
    model, _ = model_file.load_model(five_class_model)
    probs, kept, bad = inference.predict_dataset(
        inference.Predictor(model, get_device('@numpy'), crops=10),
        [(path, 1)], batchsize=4)
    assert (kept, bad) == ([(path, 1)], [])
    crops = images.ten_crops(images.open_image(path))
    assert_probabilities_close(probs, model.predict(crops).mean(
        axis=0, keepdims=True))
