import numpy as np
import pytest

from autocompress.errors import DataError
from examples.common.models import DET_MODEL_FILENAME, ort_predictor, rapidocr_model_dir
from examples.common.ocr_data import ocr_det_dataset
from examples.ocr_det.metric import iou_counts, make_iou_eval, total_iou
from examples.ocr_det.reader import build_det_data


def _mask(shape, *rects):
    mask = np.zeros(shape, np.uint8)
    for y0, y1, x0, x1 in rects:
        mask[..., y0:y1, x0:x1] = 1
    return mask


def test_perfect_prediction_scores_one():
    masks = _mask((2, 8, 8), (1, 4, 2, 7))
    probs = masks[:, None].astype(np.float32) * 0.9
    assert total_iou(probs, masks) == 1.0


def test_disjoint_prediction_scores_zero():
    masks = _mask((1, 8, 8), (0, 2, 0, 2))
    probs = _mask((1, 1, 8, 8), (5, 8, 5, 8)).astype(np.float32)
    assert total_iou(probs, masks) == 0.0


def test_known_partial_overlap_and_threshold():
    masks = _mask((1, 4, 8), (0, 4, 0, 4))  # 16 pixels
    probs = np.zeros((1, 1, 4, 8), np.float32)
    probs[..., :, 2:6] = 0.5  # 16 pixels, 8 of them inside the mask
    probs[..., :, 6:8] = 0.3  # exactly at the threshold: not text (DB uses >)
    assert iou_counts(probs, masks) == (8, 24)
    assert total_iou(probs, masks) == pytest.approx(1 / 3)
    assert total_iou(probs, masks, threshold=0.2) == pytest.approx(8 / 32)


def test_total_iou_pools_pixels_over_images():
    masks = np.stack([_mask((4, 4), (0, 4, 0, 4)), _mask((4, 4), (0, 1, 0, 1))])
    probs = np.stack([masks[0], np.zeros((4, 4), np.uint8)])[:, None].astype(np.float32)
    # image 1: 16/16, image 2: 0/1 -> pooled 16/17, not the mean of per-image IoUs (0.5)
    assert total_iou(probs, masks) == pytest.approx(16 / 17)


def test_both_empty_is_perfect_and_shape_mismatch_is_rejected():
    assert total_iou(np.zeros((1, 1, 4, 4)), np.zeros((1, 4, 4))) == 1.0
    with pytest.raises(DataError, match="does not match"):
        total_iou(np.zeros((1, 1, 4, 4)), np.zeros((1, 4, 5)))
    with pytest.raises(DataError, match="one-channel"):
        total_iou(np.zeros((1, 2, 4, 4)), np.zeros((1, 4, 4)))


def test_eval_callback_is_independent_of_batch_size():
    rng = np.random.default_rng(0)
    images = rng.normal(size=(5, 3, 8, 8)).astype(np.float32)
    masks = (rng.random((5, 8, 8)) > 0.5).astype(np.uint8)

    def predictor(feed):  # a "model" that thresholds its first channel
        return [1 / (1 + np.exp(-feed["x"][:, :1]))]

    scores = {bs: make_iou_eval(images, masks, batch_size=bs)(predictor) for bs in (1, 2, 5)}
    probs = 1 / (1 + np.exp(-images[:, :1]))
    assert scores[1] == scores[2] == scores[5] == pytest.approx(total_iou(probs, masks))


def test_real_det_model_finds_the_rendered_text():
    # Measured: 0.711 on these 8 scenes (seed 1, 640x640, fp32, ORT CPU).
    data = ocr_det_dataset(8, seed=1, size=(640, 640))
    predictor = ort_predictor(rapidocr_model_dir() / DET_MODEL_FILENAME)
    iou = make_iou_eval(data.inputs, data.masks, batch_size=4)(predictor)
    assert iou > 0.66
    shifted = np.roll(data.masks, 12, axis=1)  # the same masks 12 px lower: the metric must notice
    assert make_iou_eval(data.inputs, shifted, batch_size=4)(predictor) < iou - 0.3


def test_reader_builds_disjoint_train_and_eval_scenes():
    data = build_det_data(num_train=3, num_eval=2, image_size=96, batch_size=2, seed=4)
    batches = list(data.train_loader)
    assert [b["x"].shape[0] for b in batches] == [2, 1]
    assert data.eval_data.inputs.shape == (2, 3, 96, 96)
    train_images = np.concatenate([b["x"] for b in batches])
    assert not any(np.array_equal(e, t) for e in data.eval_data.inputs for t in train_images)
    assert data.eval_callback(lambda feed: [np.zeros((len(feed["x"]), 1, 96, 96), np.float32)]) == 0.0
