import numpy as np
import pytest

from autocompress.errors import DataError
from examples.common.evaluation import make_agreement_eval
from examples.common.imagenet_photos import (
    CALIBRATION_PHOTOS,
    EVALUATION_PHOTOS,
    IMAGENET_MEAN,
    IMAGENET_STD,
    imagenet_normalize,
    imagenet_photo_split,
    photo_crops,
)
from examples.common.models import export_efficientnet_lite0, ort_predictor


def test_split_is_disjoint_by_photo_and_deterministic():
    a = imagenet_photo_split(6, 5, seed=2)
    b = imagenet_photo_split(6, 5, seed=2)
    assert a.calibration.shape == (6, 3, 224, 224) and a.evaluation.shape == (5, 3, 224, 224)
    assert set(a.calibration_sources) <= set(CALIBRATION_PHOTOS)
    assert set(a.evaluation_sources) <= set(EVALUATION_PHOTOS)
    assert not set(CALIBRATION_PHOTOS) & set(EVALUATION_PHOTOS)
    assert np.array_equal(a.calibration, b.calibration) and np.array_equal(a.evaluation, b.evaluation)
    assert not any(np.array_equal(c, e) for c in a.calibration for e in a.evaluation)


def test_crops_vary_and_unknown_photos_are_rejected():
    crops, _ = photo_crops(4, seed=0, photo_names=("coffee",), size=32)
    assert crops.shape == (4, 32, 32, 3) and len({c.tobytes() for c in crops}) == 4
    with pytest.raises(DataError, match="unknown photos"):
        photo_crops(1, seed=0, photo_names=("lena",))


def test_imagenet_normalisation():
    pixel = np.array([[[[255, 0, 128]]]], np.uint8)
    expected = (np.array([1.0, 0.0, 128 / 255]) - IMAGENET_MEAN) / IMAGENET_STD
    np.testing.assert_allclose(imagenet_normalize(pixel)[0, :, 0, 0], expected, rtol=1e-6)


def test_exported_efficientnet_agrees_with_itself_and_recognises_the_cat(tmp_path):
    path = export_efficientnet_lite0(tmp_path / "efficientnet_lite0.onnx")
    predictor = ort_predictor(path)
    crops, _ = photo_crops(12, seed=0, photo_names=("chelsea",))
    inputs = imagenet_normalize(crops)
    assert make_agreement_eval(predictor, inputs, batch_size=5)(predictor) == 1.0
    logits = predictor({"x": inputs})[0]
    assert logits.shape == (12, 1000)
    cats = {281, 282, 285}  # tabby, tiger cat, Egyptian cat
    assert np.mean([c in cats for c in logits.argmax(axis=1)]) >= 0.75

    def constant(feed):
        return [np.eye(1000, dtype=np.float32)[np.zeros(len(feed["x"]), int)]]

    assert make_agreement_eval(predictor, inputs, batch_size=5)(constant) == 0.0
