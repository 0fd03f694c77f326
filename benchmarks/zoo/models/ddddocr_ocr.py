"""ddddocr's text-captcha recogniser (`ddddocr/common.onnx`, which ddddocr loads as its "beta" model): a residual CNN
with SiLU, an LSTM and a CTC head over 8210 characters.

The model declares its output as [1, seqlen], but returns [T, 1, 8210] (batch on axis 1); its batch is fixed to 1.
Data: 160x60 captchas rendered offline, 4 to 6 lower-case letters and digits, each in its own DejaVu face, size, angle
and colour, with interference lines and dots on a light noisy background. The labels are the rendered strings and the
metric is the exact match of the decoded text.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image

from autocompress.errors import DataError
from benchmarks.zoo.spec import EvalSet, Feed, Outputs, ZooModel, package_file
from benchmarks.zoo.text import ctc_greedy, draw_clutter, exact_match_score, module_constant, rotated_glyph
from examples.common.text_render import blend, light_background

CAPTCHA_HEIGHT, CAPTCHA_WIDTH = 60, 160
INPUT_HEIGHT = 64
# Lower-case letters and digits whose DejaVu glyphs cannot be confused with another character (no o/0, l/1, g/9);
# the model reads most letters as lower case, as captcha services compare case-insensitively.
ALPHABET = "abcdefhkmnprstuvwxy2345678"
MARGIN = 4
CALIBRATION_SEED, EVALUATION_SEED = 1700, 1701


def onnx_file(_work: Path) -> Path:
    return package_file("ddddocr", "common.onnx")


@lru_cache(maxsize=1)
def charset() -> list[str]:
    """The model's classes: `CHARSET_BETA` of ddddocr's `charsets.py` (index 0 is the CTC blank)."""
    return list(module_constant(package_file("ddddocr", "charsets.py"), "CHARSET_BETA"))


def _glyphs(rng: np.random.Generator, text: str) -> list[np.ndarray]:
    """One rotated glyph per character, shrunk until the string fits the captcha's width."""
    size = int(rng.integers(30, 40))
    while True:
        glyphs = [rotated_glyph(rng, char, size, max_degrees=20.0) for char in text]
        fits_width = sum(g.shape[1] for g in glyphs) <= CAPTCHA_WIDTH - 2 * MARGIN
        if fits_width and max(g.shape[0] for g in glyphs) < CAPTCHA_HEIGHT:
            return glyphs
        size -= 3


def render_captcha(rng: np.random.Generator) -> tuple[np.ndarray, str]:
    """An RGB uint8 captcha [60, 160, 3] and its text."""
    text = "".join(rng.choice(list(ALPHABET), int(rng.integers(4, 7))))
    glyphs = _glyphs(rng, text)
    image = light_background(rng, CAPTCHA_HEIGHT, CAPTCHA_WIDTH)
    slack = CAPTCHA_WIDTH - 2 * MARGIN - sum(g.shape[1] for g in glyphs)
    gap = min(slack // (len(glyphs) + 1), 8)
    x = MARGIN + (slack - gap * (len(glyphs) - 1)) // 2
    for glyph in glyphs:
        height, width = glyph.shape
        y = int(rng.integers(0, CAPTCHA_HEIGHT - height + 1))
        blend(image, glyph, x, y, tuple(int(v) for v in rng.integers(0, 110, 3)))
        x += width + gap
    draw_clutter(rng, image, lines=int(rng.integers(1, 4)), dots=int(rng.integers(30, 120)))
    return image, text


def preprocess(image_rgb: np.ndarray) -> np.ndarray:
    """[1, 1, 64, W] float32 in [0, 1]; follows `ddddocr.core.ocr_engine.OCREngine._preprocess_image` (height 64 with
    the aspect kept, Lanczos, then grayscale, then /255)."""
    image = Image.fromarray(image_rgb)
    width = int(image.size[0] * (INPUT_HEIGHT / image.size[1]))
    gray = image.resize((width, INPUT_HEIGHT), Image.LANCZOS).convert("L")
    return (np.asarray(gray, dtype=np.float32) / 255.0)[None, None]


def _captchas(n: int, seed: int) -> tuple[list[Feed], list[str]]:
    rng = np.random.default_rng(seed)
    rendered = [render_captcha(rng) for _ in range(n)]
    return [{"input1": preprocess(image)} for image, _ in rendered], [text for _, text in rendered]


def calibration(n: int) -> list[Feed]:
    return _captchas(n, CALIBRATION_SEED)[0]


def evaluation(n: int) -> EvalSet:
    feeds, texts = _captchas(n, EVALUATION_SEED)
    return EvalSet(feeds=feeds, labels=texts)


def decode(outputs: Outputs) -> str:
    """Text of one [T, 1, C] output; follows `OCREngine._process_text_output` (argmax, then CTC collapse). A model
    whose output took another shape (such as the declared [1, seqlen]) computes something else and is refused."""
    logits = outputs[0]
    if logits.ndim != 3 or logits.shape[1:] != (1, len(charset())):
        raise DataError(
            f"ddddocr's output must be [T, 1, {len(charset())}] (what the model computes), got {logits.shape}"
        )
    return ctc_greedy(logits[:, 0, :].argmax(axis=-1), charset())


MODEL = ZooModel(
    name="ddddocr_ocr",
    family="OCR recognition",
    requirement="ddddocr==1.6.1",
    metric="exact match of decoded captcha text",
    onnx_file=onnx_file,
    calibration=calibration,
    evaluation=evaluation,
    score=exact_match_score(decode),
    features="CNN + LSTM + CTC, opset 12, declared output [1, seqlen] but real [T, 1, 8210] (batch on axis 1), "
    "batch fixed 1",
    calibration_size=32,
    evaluation_size=48,
)
