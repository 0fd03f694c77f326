"""The zoo's detection helpers: IoU, greedy NMS, one-to-one box matching and the F1 a detector is scored by."""

import numpy as np
import pytest

from autocompress.errors import DataError
from benchmarks.zoo.boxes import Detections, box_f1, corners_from_centers, f1_score, iou_matrix, matched_pairs, nms


def detections(boxes, scores=None, classes=None) -> Detections:
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    scores = np.linspace(1.0, 0.5, len(boxes)) if scores is None else np.asarray(scores, dtype=np.float64)
    classes = np.zeros(len(boxes), dtype=np.int64) if classes is None else np.asarray(classes, dtype=np.int64)
    return Detections(boxes, scores, classes)


def test_iou_of_identical_disjoint_and_half_overlapping_boxes():
    a = np.array([[0, 0, 10, 10]], dtype=float)
    b = np.array([[0, 0, 10, 10], [20, 20, 30, 30], [5, 0, 15, 10]], dtype=float)
    np.testing.assert_allclose(iou_matrix(a, b), [[1.0, 0.0, 50 / 150]])


def test_iou_with_inclusive_pixel_corners_counts_one_more_pixel_per_side():
    a = np.array([[0, 0, 9, 9]], dtype=float)
    b = np.array([[5, 0, 14, 9]], dtype=float)
    np.testing.assert_allclose(iou_matrix(a, b, pixel_offset=1.0), [[50 / 150]])


def test_corners_from_centers():
    np.testing.assert_allclose(corners_from_centers(np.array([[10.0, 20.0, 4.0, 6.0]])), [[8, 17, 12, 23]])


def test_nms_drops_overlapping_lower_scores_and_keeps_disjoint_boxes():
    boxes = np.array([[0, 0, 10, 10], [1, 0, 11, 10], [30, 30, 40, 40], [0, 0, 10, 9]], dtype=float)
    scores = np.array([0.6, 0.9, 0.5, 0.8])
    assert nms(boxes, scores, 0.5).tolist() == [1, 2]
    assert nms(boxes, scores, 0.95).tolist() == [1, 3, 0, 2]


def test_nms_limits_candidates_and_kept_boxes():
    boxes = np.array([[0, 0, 1, 1], [10, 10, 11, 11], [20, 20, 21, 21]], dtype=float)
    scores = np.array([0.3, 0.2, 0.9])
    assert nms(boxes, scores, 0.5, max_candidates=2).tolist() == [2, 0]
    assert nms(boxes, scores, 0.5, max_keep=1).tolist() == [2]


def test_matching_is_one_to_one_and_needs_the_same_class():
    reference = detections([[0, 0, 10, 10], [50, 50, 60, 60]], classes=[0, 1])
    twice_on_one = detections([[0, 0, 10, 10], [0, 0, 10, 11]], classes=[0, 0])
    assert matched_pairs(twice_on_one, reference) == 1
    wrong_class = detections([[50, 50, 60, 60]], classes=[0])
    assert matched_pairs(wrong_class, reference) == 0


def test_match_needs_the_iou_threshold():
    reference = detections([[0, 0, 10, 10]])
    assert matched_pairs(detections([[4, 0, 14, 10]]), reference, iou_threshold=0.5) == 0
    assert matched_pairs(detections([[4, 0, 14, 10]]), reference, iou_threshold=0.4) == 1


def test_box_f1_over_images():
    reference = [detections([[0, 0, 10, 10], [20, 20, 30, 30]]), detections([[0, 0, 5, 5]])]
    found = [detections([[0, 0, 10, 10]]), detections([[0, 0, 5, 5], [40, 40, 50, 50]])]
    assert box_f1(found, reference) == pytest.approx(2 * 2 / (3 + 3))
    assert box_f1(reference, reference) == 1.0
    assert box_f1([Detections.empty()], [Detections.empty()]) == 1.0
    assert box_f1([Detections.empty()], [reference[1]]) == 0.0


def test_box_f1_needs_one_detections_per_image_on_both_sides():
    with pytest.raises(DataError, match="one Detections per image"):
        box_f1([Detections.empty()], [])


def test_f1_score_decodes_both_sides():
    def decode(outputs):
        return detections(outputs[0])

    fp32 = [[np.array([[0, 0, 10, 10], [20, 20, 30, 30]], dtype=float)]]
    shifted = [[np.array([[0, 0, 10, 10], [26, 20, 36, 30]], dtype=float)]]
    score = f1_score(decode)
    assert score(fp32, fp32, None) == 1.0
    assert score(shifted, fp32, None) == pytest.approx(0.5)


def test_concatenate_and_take_keep_fields_together():
    parts = [detections([[0, 0, 1, 1]], [0.5], [3]), detections([[2, 2, 3, 3]], [0.7], [4])]
    joined = Detections.concatenate(parts)
    assert len(joined) == 2 and joined.classes.tolist() == [3, 4]
    taken = joined.take([1])
    assert taken.scores.tolist() == [0.7] and taken.boxes.tolist() == [[2, 2, 3, 3]]
    assert len(Detections.concatenate([])) == 0
