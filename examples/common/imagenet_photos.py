"""ImageNet-style inputs for EfficientNet-Lite0 from the bundled natural photos.

Calibration and evaluation crops come from disjoint photos, so a compressed model is never judged on
the pictures it was calibrated on. There are no ImageNet labels offline; the metric is agreement with
the fp32 model's top-1 class, which is what compression must preserve.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from autocompress.errors import DataError

from .photos import natural_photos, random_crop_resized

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)
INPUT_SIZE = 224
# Evaluation photos show objects EfficientNet-Lite0 recognises confidently (tabby cat, espresso, palace,
# motor scooter), so top-1 agreement is a meaningful signal; the rest calibrate.
EVALUATION_PHOTOS = ("chelsea", "coffee", "china", "stereo_motorcycle")
CALIBRATION_PHOTOS = ("astronaut", "rocket", "hubble_deep_field", "flower")


def imagenet_normalize(images_rgb: np.ndarray) -> np.ndarray:
    """[N, H, W, 3] RGB uint8 -> [N, 3, H, W] float32 with ImageNet mean and std."""
    scaled = images_rgb.astype(np.float32) / 255.0
    return np.ascontiguousarray(((scaled - IMAGENET_MEAN) / IMAGENET_STD).transpose(0, 3, 1, 2))


def photo_crops(
    n: int, seed: int, photo_names: tuple[str, ...], size: int = INPUT_SIZE
) -> tuple[np.ndarray, list[str]]:
    """``n`` random crops (25-100 % of a photo's area, random flips) of the named photos, and their sources."""
    photos = natural_photos()
    unknown = sorted(set(photo_names) - set(photos))
    if unknown:
        raise DataError(f"unknown photos {unknown}; available: {sorted(photos)}")
    rng = np.random.default_rng(seed)
    sources = [photo_names[int(i)] for i in rng.integers(0, len(photo_names), size=n)]
    crops = np.stack([random_crop_resized(rng, photos[name], size, size, scale=(0.25, 1.0)) for name in sources])
    return crops, sources


@dataclass(frozen=True)
class PhotoSplit:
    """Normalised calibration and evaluation inputs [N, 3, 224, 224] and the photo each crop came from."""

    calibration: np.ndarray
    evaluation: np.ndarray
    calibration_sources: list[str]
    evaluation_sources: list[str]


def imagenet_photo_split(num_calibration: int, num_evaluation: int, seed: int = 0) -> PhotoSplit:
    if num_calibration < 1 or num_evaluation < 1:
        raise DataError(f"both sets need at least one image, got {num_calibration} and {num_evaluation}")
    calibration, calibration_sources = photo_crops(num_calibration, seed, CALIBRATION_PHOTOS)
    evaluation, evaluation_sources = photo_crops(num_evaluation, seed + 1, EVALUATION_PHOTOS)
    return PhotoSplit(
        calibration=imagenet_normalize(calibration),
        evaluation=imagenet_normalize(evaluation),
        calibration_sources=calibration_sources,
        evaluation_sources=evaluation_sources,
    )
