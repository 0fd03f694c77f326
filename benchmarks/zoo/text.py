"""What the zoo's text models share: greedy CTC decoding, exact-match scoring, rendered glyphs and lines, and
charsets and tables read from package files."""

from __future__ import annotations

import ast
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from autocompress.errors import DataError
from benchmarks.zoo.spec import Outputs
from examples.common.text_render import (
    blend,
    contrasting_color,
    light_background,
    line_alpha,
    random_font,
    random_phrase,
)

CTC_BLANK = 0
Score = Callable[[Sequence[Outputs], Sequence[Outputs], list[str]], float]


def ctc_greedy(indices: np.ndarray, charset: Sequence[str]) -> str:
    """Best-path CTC decoding: collapse repeated indices, drop the blank (index 0), map to characters."""
    indices = np.asarray(indices).reshape(-1)
    if indices.size == 0:
        return ""
    first_of_run = np.concatenate([[True], indices[1:] != indices[:-1]])
    kept = indices[first_of_run & (indices != CTC_BLANK)]
    return "".join(charset[int(i)] for i in kept if int(i) < len(charset))


def exact_match_score(decode: Callable[[Outputs], str]) -> Score:
    """A recogniser's `score`: the fraction of outputs whose decoded text equals the rendered text."""

    def score(outputs: Sequence[Outputs], _fp32: Sequence[Outputs], texts: list[str]) -> float:
        if len(outputs) != len(texts) or not texts:
            raise DataError(f"exact match needs one output per rendered text, got {len(outputs)} and {len(texts)}")
        return float(np.mean([decode(out) == text for out, text in zip(outputs, texts)]))

    return score


def module_constant(path: Path, name: str) -> object:
    """A literal constant assigned at the top level of a package's Python file, read without running the file (the
    package may import dependencies that are not installed)."""
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == name for t in node.targets):
            return ast.literal_eval(node.value)
    raise DataError(f"{path} assigns no literal {name!r}")


def dictionary_lines(path: Path) -> list[str]:
    """One character per line, as PaddleOCR's `BaseRecLabelDecode` reads its dictionary files (split on newlines
    only: a dictionary may hold other line-breaking characters as entries)."""
    lines = path.read_text(encoding="utf-8").split("\n")
    if lines[-1] == "":
        lines.pop()
    return [line.strip("\r\n") for line in lines]


def rotated_glyph(rng: np.random.Generator, char: str, size: int, max_degrees: float) -> np.ndarray:
    """Coverage [h, w] of one character in a random DejaVu face, rotated by up to `max_degrees` either way, as
    captcha generators draw each character on its own."""
    alpha = line_alpha(char, random_font(rng, size, size))
    angle = float(rng.uniform(-max_degrees, max_degrees))
    image = Image.fromarray((alpha * 255).astype(np.uint8)).rotate(angle, resample=Image.BILINEAR, expand=True)
    return np.asarray(image, dtype=np.float32) / 255.0


def draw_clutter(rng: np.random.Generator, image: np.ndarray, lines: int, dots: int) -> None:
    """Random thin lines and dots in random colours, drawn in place: the interference captchas add."""
    height, width = image.shape[:2]
    canvas = Image.fromarray(image)
    draw = ImageDraw.Draw(canvas)
    for _ in range(lines):
        points = [(int(rng.integers(0, width)), int(rng.integers(0, height))) for _ in range(2)]
        draw.line(points, fill=tuple(int(v) for v in rng.integers(0, 200, 3)), width=int(rng.integers(1, 3)))
    for _ in range(dots):
        x, y = int(rng.integers(0, width)), int(rng.integers(0, height))
        draw.point((x, y), fill=tuple(int(v) for v in rng.integers(0, 256, 3)))
    image[...] = np.asarray(canvas)


def render_word_line(
    rng: np.random.Generator, max_aspect: float, font_sizes: tuple[int, int]
) -> tuple[np.ndarray, str]:
    """An RGB uint8 crop around one line of vocabulary words, no wider than `max_aspect` times its height (fewer words
    until it fits), and its text."""
    for words in range(3, 0, -1):
        text = random_phrase(rng, 1, words)
        alpha = line_alpha(text, random_font(rng, *font_sizes))
        pad = int(round(alpha.shape[0] * rng.uniform(0.15, 0.4)))
        height, width = alpha.shape[0] + 2 * pad, alpha.shape[1] + 2 * pad
        if width <= max_aspect * height:
            break
    line = light_background(rng, height, width)
    ink = line[pad : pad + alpha.shape[0], pad : pad + alpha.shape[1]]
    blend(line, alpha, pad, pad, contrasting_color(rng, ink))
    return line, text
