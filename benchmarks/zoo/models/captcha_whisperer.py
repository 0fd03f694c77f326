"""captcha-whisperer 0.1.0: a CRNN (CNN + unrolled LSTM as Gemm/Sigmoid/Tanh) with a CTC head, 37 classes.

Input `image` [B, 3, 60, 160] BGR in 0..255 (`captcha_whisperer.preprocess.preprocess_array`: no scaling);
output `logits` [20, B, 37] (batch on axis 1). Captchas of 4-6 characters are rendered offline with the DejaVu
fonts on a light noisy background, each character at its own height, with a couple of thin noise lines.
Metric: exact match of the greedy CTC decoding (`captcha_whisperer.recognizer.decode`) with the rendered string.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from benchmarks.zoo.feeds import accuracy, labelled_data
from benchmarks.zoo.spec import Outputs, ZooModel, package_file
from examples.common.text_render import FONT_FILES, blend, light_background, line_alpha, load_font

HEIGHT, WIDTH = 60, 160
LABELS = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ_"  # captcha_whisperer.constants.LABELS (index 36: CTC blank)
BLANK = len(LABELS) - 1
# The package's decoder never emits label 0 ('0'), so captchas are drawn without it.
CHARSET = LABELS[1:BLANK]
BATCH = 8


def model_file(_work: Path) -> Path:
    return package_file("captcha_whisperer", "models", "captcha_crnn.onnx")


def _noise_lines(rng: np.random.Generator, image: np.ndarray) -> None:
    """Two thin random dark lines across the image, drawn in place."""
    for _ in range(2):
        x0, x1 = sorted(rng.integers(0, WIDTH, 2))
        y0, y1 = rng.integers(0, HEIGHT, 2)
        xs = np.arange(x0, x1 + 1)
        ys = np.round(np.interp(xs, [x0, x1 + 1e-6], [y0, y1])).astype(int)
        image[ys.clip(0, HEIGHT - 1), xs.clip(0, WIDTH - 1)] = rng.integers(60, 140, 3)


def render_captcha(rng: np.random.Generator) -> tuple[np.ndarray, str]:
    """(RGB uint8 [60, 160, 3], text): characters spaced evenly, each at a random height."""
    text = "".join(rng.choice(list(CHARSET), int(rng.integers(4, 7))))
    image = light_background(rng, HEIGHT, WIDTH)
    font = load_font(FONT_FILES[int(rng.integers(0, 3))], int(rng.integers(26, 34)))
    alphas = [line_alpha(c, font)[: HEIGHT - 4] for c in text]
    total = sum(a.shape[1] for a in alphas)
    gap = max(1, (WIDTH - 10 - total) // (len(text) + 1))
    x = max(2, (WIDTH - total - gap * (len(text) - 1)) // 2)
    for alpha in alphas:
        y = int(rng.integers(2, max(3, HEIGHT - alpha.shape[0] - 2)))
        blend(image, alpha, x, y, tuple(int(v) for v in rng.integers(0, 90, 3)))
        x += alpha.shape[1] + gap
    _noise_lines(rng, image)
    return image, text


def _images(n: int, seed: int) -> tuple[np.ndarray, list[str]]:
    """n captchas as BGR float32 [n, 3, 60, 160] in 0..255 (preprocess_array), and their strings."""
    rng = np.random.default_rng(seed)
    rendered = [render_captcha(rng) for _ in range(n)]
    images = np.stack([image[..., ::-1].transpose(2, 0, 1) for image, _ in rendered]).astype(np.float32)
    return images, [text for _, text in rendered]


def decode(logits: np.ndarray) -> list[str]:
    """Greedy CTC over [T, B, C], as `captcha_whisperer.recognizer.decode`: steps 0..T-2, labels 1..36 only."""
    best = logits[:-1, :, 1:].argmax(axis=-1) + 1  # [T-1, B]
    texts = []
    for column in best.T:
        keep = np.r_[True, column[1:] != column[:-1]] & (column != BLANK)
        texts.append("".join(LABELS[i] for i in column[keep]))
    return texts


calibration, evaluation = labelled_data(_images, "image", BATCH)


def score(outputs: Sequence[Outputs], _reference: Sequence[Outputs], labels: Sequence[str]) -> float:
    decoded = [text for out in outputs for text in decode(out[0])]
    return accuracy(decoded, labels)


MODEL = ZooModel(
    name="captcha_whisperer",
    family="OCR recognition",
    requirement="captcha-whisperer==0.1.0",
    metric="exact match of CTC-decoded text",
    onnx_file=model_file,
    calibration=calibration,
    evaluation=evaluation,
    score=score,
    features="opset 17, CNN + unrolled LSTM (Gemm), output batch on axis 1, 169 Constant nodes",
)
