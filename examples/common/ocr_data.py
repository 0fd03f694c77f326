"""Rendered OCR data for PP-OCRv4 det and PP-OCR cls, preprocessed exactly as RapidOCR feeds the models.

Preprocessing follows rapidocr_onnxruntime 1.4.4 (``config.yaml`` and ``ch_ppocr_det``/``ch_ppocr_cls``):
both models take BGR images (RapidOCR reads with OpenCV) normalised as ``(x / 255 - 0.5) / 0.5``;
det needs height and width that are multiples of 32; cls resizes a line to height 48 keeping its aspect
ratio (width at most 192) and zero-pads it on the right to 192.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image

from autocompress.errors import DataError

from .photos import natural_photos, random_crop_resized
from .text_render import (
    TextScene,
    blend,
    contrasting_color,
    draw_text_lines,
    light_background,
    line_alpha,
    random_font,
    random_phrase,
    text_region_mask,
)

# Photos without text-like texture: on chelsea (fur, whiskers) and coffee (foam) the det model marks
# 1-3 % of the pixels as text, which would count as false positives against an all-background mask.
DET_PHOTO_BACKGROUNDS = ("astronaut", "rocket", "hubble_deep_field", "stereo_motorcycle", "china", "flower")
CLS_INPUT_SHAPE = (3, 48, 192)
CLS_LABELS = ("0", "180")


def normalize_bgr(images_rgb: np.ndarray) -> np.ndarray:
    """[N, H, W, 3] RGB uint8 -> [N, 3, H, W] float32 BGR scaled to [-1, 1], RapidOCR's det/cls input."""
    bgr = images_rgb[..., ::-1].astype(np.float32)
    return np.ascontiguousarray(((bgr / 255.0 - 0.5) / 0.5).transpose(0, 3, 1, 2))


def det_font_sizes(height: int) -> tuple[int, int]:
    """Font sizes in pixels that scale with the image, as text does in photos of documents and signs."""
    return max(10, height // 45), max(16, height // 13)


def render_det_scene(rng: np.random.Generator, height: int, width: int, photo_fraction: float = 0.5) -> TextScene:
    """Lines of text on a light gradient or a natural photo, with the mask the det model should predict."""
    if rng.random() < photo_fraction:
        name = DET_PHOTO_BACKGROUNDS[int(rng.integers(0, len(DET_PHOTO_BACKGROUNDS)))]
        background = random_crop_resized(rng, natural_photos()[name], height, width)
    else:
        background = light_background(rng, height, width)
    max_lines = max(3, height // 50)
    image, boxes = draw_text_lines(rng, background, max_lines, det_font_sizes(height))
    return TextScene(image=image, mask=text_region_mask(boxes, height, width), boxes=boxes)


@dataclass(frozen=True)
class OcrDetData:
    """Det model inputs [N, 3, H, W] float32, masks [N, H, W] uint8 and the scenes they came from."""

    inputs: np.ndarray
    masks: np.ndarray
    scenes: tuple[TextScene, ...]


def ocr_det_dataset(n: int, seed: int, size: tuple[int, int] = (640, 640), photo_fraction: float = 0.5) -> OcrDetData:
    """``n`` rendered text scenes of ``size`` (H, W); the same seed always gives the same data."""
    height, width = size
    if n < 1:
        raise DataError(f"ocr_det_dataset needs n >= 1 images, got {n}")
    if height % 32 or width % 32 or height < 64 or width < 64:
        raise DataError(f"PP-OCR det needs height and width that are multiples of 32 and >= 64, got {size}")
    rng = np.random.default_rng(seed)
    scenes = tuple(render_det_scene(rng, height, width, photo_fraction) for _ in range(n))
    inputs = normalize_bgr(np.stack([scene.image for scene in scenes]))
    masks = np.stack([scene.mask for scene in scenes])
    return OcrDetData(inputs=inputs, masks=masks, scenes=scenes)


def render_text_line(rng: np.random.Generator, photo_fraction: float = 0.3) -> np.ndarray:
    """A crop around one short line of text with a random margin, as det would hand it to cls."""
    alpha = line_alpha(random_phrase(rng, 1, 3), random_font(rng, 18, 40))
    ink_h, ink_w = alpha.shape
    pad_y = int(round(ink_h * rng.uniform(0.1, 0.4)))
    pad_x = int(round(ink_h * rng.uniform(0.1, 0.6)))
    height, width = ink_h + 2 * pad_y, ink_w + 2 * pad_x
    if rng.random() < photo_fraction:
        name = DET_PHOTO_BACKGROUNDS[int(rng.integers(0, len(DET_PHOTO_BACKGROUNDS)))]
        line = random_crop_resized(rng, natural_photos()[name], height, width, scale=(0.05, 0.3))
    else:
        line = light_background(rng, height, width)
    color = contrasting_color(rng, line[pad_y : pad_y + ink_h, pad_x : pad_x + ink_w])
    blend(line, alpha, pad_x, pad_y, color)
    return line


def cls_resize_pad(line_rgb: np.ndarray) -> np.ndarray:
    """One RGB line -> [3, 48, 192] float32, RapidOCR's ``TextClassifier.resize_norm_img`` with PIL resizing."""
    _, target_h, target_w = CLS_INPUT_SHAPE
    h, w = line_rgb.shape[:2]
    resized_w = min(target_w, int(math.ceil(target_h * w / h)))
    resized = np.asarray(Image.fromarray(line_rgb).resize((resized_w, target_h), Image.BILINEAR))
    padded = np.zeros(CLS_INPUT_SHAPE, dtype=np.float32)
    padded[:, :, :resized_w] = normalize_bgr(resized[None])[0]
    return padded


@dataclass(frozen=True)
class OcrClsData:
    """Cls model inputs [N, 3, 48, 192] float32 and labels [N] int64 (0: upright, 1: rotated by 180 degrees)."""

    inputs: np.ndarray
    labels: np.ndarray


def ocr_cls_dataset(n: int, seed: int, photo_fraction: float = 0.3) -> OcrClsData:
    """``n`` rendered text lines, half of them rotated by 180 degrees, in a seed-determined order."""
    if n < 2:
        raise DataError(f"ocr_cls_dataset needs n >= 2 lines (both orientations), got {n}")
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.arange(n) % 2).astype(np.int64)
    lines = [render_text_line(rng, photo_fraction) for _ in range(n)]
    inputs = np.stack([cls_resize_pad(np.rot90(line, 2) if label else line) for line, label in zip(lines, labels)])
    return OcrClsData(inputs=inputs, labels=labels)
