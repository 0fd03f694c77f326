import numpy as np
import pytest

from examples.common.ocr_data import ocr_det_dataset, render_det_scene
from examples.common.text_render import (
    TextBox,
    draw_text_lines,
    light_background,
    line_alpha,
    load_font,
    shrink_box,
    text_region_mask,
)


def test_line_alpha_is_cropped_to_the_exact_ink():
    alpha = line_alpha("Type gpq 42", load_font("DejaVuSans.ttf", 30))
    for edge in (alpha[0], alpha[-1], alpha[:, 0], alpha[:, -1]):
        assert edge.max() > 0, "every border row/column of the ink box must touch ink"


def test_boxes_enclose_exactly_the_drawn_ink_and_do_not_overlap():
    rng = np.random.default_rng(3)
    background = np.full((320, 320, 3), 255, np.uint8)
    image, boxes = draw_text_lines(rng, background, 8, (12, 30))
    assert len(boxes) >= 3
    inked = (image < 255).any(axis=2)
    inside = np.zeros_like(inked)
    for box in boxes:
        inside[box.y0 : box.y1, box.x0 : box.x1] = True
        region = inked[box.y0 : box.y1, box.x0 : box.x1]
        assert region[0].any() and region[-1].any() and region[:, 0].any() and region[:, -1].any()
    assert not (inked & ~inside).any(), "no ink outside the recorded boxes"
    assert inside.sum() == sum(b.width * b.height for b in boxes), "boxes overlap"


def test_mask_area_equals_the_sum_of_shrunk_box_areas():
    scene = render_det_scene(np.random.default_rng(5), 320, 320)
    areas = [(x1 - x0) * (y1 - y0) for x0, y0, x1, y1 in map(shrink_box, scene.boxes)]
    assert scene.mask.dtype == np.uint8 and set(np.unique(scene.mask)) <= {0, 1}
    assert int(scene.mask.sum()) == sum(areas) > 0
    for box in scene.boxes:
        x0, y0, x1, y1 = shrink_box(box)
        assert box.x0 <= x0 < x1 <= box.x1 and box.y0 <= y0 < y1 <= box.y1
        assert scene.mask[y0:y1, x0:x1].all()


def test_shrink_follows_the_db_offset_formula():
    box = TextBox(10, 20, 110, 40, "w")  # 100 x 20
    offset = 100 * 20 * (1 - 0.5**2) / (2 * 120)  # 6.25
    assert shrink_box(box, 0.5) == (16, 26, 104, 34)
    assert round(10 + offset) == 16
    assert shrink_box(box, 1.0) == (10, 20, 110, 40)
    assert shrink_box(TextBox(0, 0, 3, 3, "x"), 0.0) == (1, 1, 2, 2)
    x0, y0, x1, y1 = shrink_box(TextBox(0, 0, 1000, 2, "thin"), 0.0)  # rounding would leave no row
    assert (y0, y1) == (1, 2) and x1 - x0 > 990


def test_mask_is_empty_without_boxes():
    assert text_region_mask([], 8, 8).sum() == 0


def test_light_background_is_light_and_seeded():
    a = light_background(np.random.default_rng(1), 64, 96)
    b = light_background(np.random.default_rng(1), 64, 96)
    assert a.shape == (64, 96, 3) and np.array_equal(a, b)
    assert a.mean() > 150


def test_det_dataset_is_deterministic_per_seed():
    a = ocr_det_dataset(3, seed=11, size=(128, 160))
    b = ocr_det_dataset(3, seed=11, size=(128, 160))
    c = ocr_det_dataset(3, seed=12, size=(128, 160))
    assert a.inputs.shape == (3, 3, 128, 160) and a.inputs.dtype == np.float32
    assert a.masks.shape == (3, 128, 160)
    assert np.array_equal(a.inputs, b.inputs) and np.array_equal(a.masks, b.masks)
    assert [s.boxes for s in a.scenes] == [s.boxes for s in b.scenes]
    assert not np.array_equal(a.inputs, c.inputs)


def test_det_inputs_are_bgr_scaled_to_minus_one_one():
    data = ocr_det_dataset(1, seed=0, size=(64, 64))
    rgb = data.scenes[0].image.astype(np.float32)
    np.testing.assert_allclose(data.inputs[0, 0], rgb[..., 2] / 127.5 - 1.0, atol=1e-6)
    np.testing.assert_allclose(data.inputs[0, 2], rgb[..., 0] / 127.5 - 1.0, atol=1e-6)


@pytest.mark.parametrize("size", [(100, 128), (32, 32)])
def test_det_dataset_rejects_sizes_the_model_cannot_take(size):
    from autocompress.errors import DataError

    with pytest.raises(DataError, match="multiples of 32"):
        ocr_det_dataset(1, seed=0, size=size)
