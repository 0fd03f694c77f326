"""Datasets on disk for the CLI: a folder of images or of .npy samples (format documented in DataSection)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image

from autocompress.config.global_section import DataSection
from autocompress.errors import DataError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


class FolderDataset:
    """Re-iterable over {input_name: batch} dicts read from `section.path`, sorted by file name."""

    def __init__(self, section: DataSection, input_name: str):
        self.section = section
        self.input_name = section.input_name or input_name
        root = Path(section.path)
        if not root.is_dir():
            raise DataError(f"data folder {section.path!r} does not exist")
        suffixes = IMAGE_SUFFIXES if section.format == "images" else (".npy",)
        self.files = sorted(p for p in root.rglob("*") if p.suffix.lower() in suffixes)
        if section.limit:
            self.files = self.files[: section.limit]
        if not self.files:
            raise DataError(f"data folder {section.path!r} holds no {section.format} files ({', '.join(suffixes)})")
        if section.format == "images" and not section.size:
            raise DataError(f"data folder {section.path!r}: images need `size: [H, W]` in the data section")

    def _load(self, path: Path) -> np.ndarray:
        if self.section.format == "npy":
            return np.load(path, allow_pickle=False)
        h, w = self.section.size
        with Image.open(path) as img:
            rgb = np.asarray(img.convert("RGB").resize((w, h), Image.BILINEAR), dtype=np.float32) / 255.0
        if self.section.bgr:
            rgb = rgb[..., ::-1]
        mean = np.asarray(self.section.mean, dtype=np.float32)
        std = np.asarray(self.section.std, dtype=np.float32)
        return ((rgb - mean) / std).transpose(2, 0, 1).astype(np.float32)

    def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
        bs = self.section.batch_size
        for start in range(0, len(self.files), bs):
            samples = [self._load(p) for p in self.files[start : start + bs]]
            yield {self.input_name: np.stack(samples)}

    def __len__(self) -> int:
        return -(-len(self.files) // self.section.batch_size)
