"""Natural photos that ship inside scikit-image and scikit-learn, so the examples run offline.

Only RGB photos that load without a download (no pooch fetch) are listed.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from PIL import Image

# skimage.data loaders of colour photos that are part of the wheel itself.
SKIMAGE_PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field", "stereo_motorcycle")
SKLEARN_PHOTOS = ("china.jpg", "flower.jpg")


@lru_cache(maxsize=1)
def natural_photos() -> dict[str, np.ndarray]:
    """Name -> RGB uint8 array of every bundled photo, loaded once per process."""
    import skimage.data
    from sklearn.datasets import load_sample_images

    photos: dict[str, np.ndarray] = {}
    for name in SKIMAGE_PHOTOS:
        image = getattr(skimage.data, name)()
        photos[name] = image[0] if isinstance(image, tuple) else image  # stereo pairs: left view
    samples = load_sample_images()
    for file_name, image in zip(samples.filenames, samples.images):
        short = file_name.replace("\\", "/").rsplit("/", 1)[-1]
        if short in SKLEARN_PHOTOS:
            photos[short.removesuffix(".jpg")] = image
    return photos


def random_crop_resized(
    rng: np.random.Generator,
    photo: np.ndarray,
    height: int,
    width: int,
    scale: tuple[float, float] = (0.35, 1.0),
    flip: bool = True,
) -> np.ndarray:
    """A random crop covering ``scale`` of the photo's area (aspect of the output), resized to (height, width)."""
    ph, pw = photo.shape[:2]
    area = rng.uniform(*scale) * ph * pw
    aspect = width / height
    crop_h = int(min(ph, round(np.sqrt(area / aspect))))
    crop_w = int(min(pw, round(crop_h * aspect)))
    crop_h = int(min(ph, round(crop_w / aspect)))
    y = int(rng.integers(0, ph - crop_h + 1))
    x = int(rng.integers(0, pw - crop_w + 1))
    crop = Image.fromarray(photo[y : y + crop_h, x : x + crop_w])
    resized = np.array(crop.resize((width, height), Image.BILINEAR))
    if flip and rng.random() < 0.5:
        resized = resized[:, ::-1]
    return np.ascontiguousarray(resized)
