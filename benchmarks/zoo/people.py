"""Photos with people in them, for the zoo's face and person detectors: the bundled photos (the astronaut and the
cameraman show faces) tiled into mosaics, so that one image holds several people at different scales."""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from examples.common.photos import natural_photos, random_crop_resized

PEOPLE = ("astronaut", "camera")
OTHERS = ("chelsea", "coffee", "rocket", "stereo_motorcycle", "china", "flower")


@lru_cache(maxsize=1)
def photos() -> dict[str, np.ndarray]:
    """The bundled colour photos plus skimage's grayscale cameraman as RGB."""
    import skimage.data

    return {**natural_photos(), "camera": np.repeat(skimage.data.camera()[..., None], 3, axis=2)}


def render_mosaic(rng: np.random.Generator, tile_height: int, tile_width: int) -> np.ndarray:
    """An RGB uint8 2x2 mosaic of random crops (30-100 % of a photo, random flips); at least one tile shows a person."""
    names = [PEOPLE[int(rng.integers(0, len(PEOPLE)))]] + [str(rng.choice(PEOPLE + OTHERS)) for _ in range(3)]
    tiles = [
        random_crop_resized(rng, photos()[name], tile_height, tile_width, scale=(0.3, 1.0))
        for name in rng.permutation(names)
    ]
    return np.concatenate([np.concatenate(tiles[:2], axis=1), np.concatenate(tiles[2:], axis=1)], axis=0)
