"""The models and data of the PTQ benchmark: each case is an fp32 ONNX file, calibration feeds and a metric.

Both quantizers read the same fp32 file (input shapes fixed except the batch) and the same calibration
batches; every variant is scored by the same eval callback.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
import torch
from torch import nn

from autocompress.graph.prepare import fix_input_shapes
from examples.common.evaluation import make_agreement_eval, make_top1_eval
from examples.common.imagenet_photos import imagenet_photo_split
from examples.common.loader import BatchLoader
from examples.common.models import (
    CLS_MODEL_FILENAME,
    DET_MODEL_FILENAME,
    export_efficientnet_lite0,
    ort_predictor,
    rapidocr_model_dir,
)
from examples.common.ocr_data import ocr_cls_dataset, ocr_det_dataset
from examples.ocr_det.metric import make_iou_eval

Feed = dict[str, np.ndarray]


@dataclass
class Case:
    """One model of the benchmark. `quant_post` is our QuantPost section for it (what the table reports)."""

    name: str
    fp32_path: Path
    calibration: list[Feed]
    evaluate: Callable  # predictor -> metric, higher is better
    metric_name: str
    latency_feed: Feed
    quant_post: dict = field(default_factory=dict)
    note: str = ""


@dataclass(frozen=True)
class DataSizes:
    """Sample counts; --quick shrinks them so the whole script runs in about a minute."""

    photo_calibration: int = 64
    photo_evaluation: int = 128
    photo_batch: int = 8
    # ORT's calibrators keep every intermediate output of every batch: 689 MB per 640x640 det scene, so
    # 16 scenes at 640 would need ~11 GB. Det data is 480x480 (388 MB per scene); latency is still at 640.
    det_calibration: int = 8
    det_evaluation: int = 16
    det_size: int = 480
    det_latency_size: int = 640
    cls_calibration: int = 64
    cls_evaluation: int = 400
    cls_batch: int = 8

    @classmethod
    def quick(cls) -> DataSizes:
        return cls(8, 16, 4, 2, 2, 320, 320, 16, 32, 8)


# Our settings per model: the default op set and 'avg' for the classifiers; 'hist' for det, whose sigmoid
# head needs outliers clipped less than 'avg' does. hist_percent 0.99999, not 0.9999: the hardswish Add/Mul
# the default op set quantizes lose their tails at 0.9999 (IoU 0.6964 vs 0.7043 at 0.99999).
OURS_DEFAULT = {"algo": "avg", "weight_quantize_type": "channel_wise_abs_max"}
OURS_BY_MODEL = {"ocr_det": {"algo": "hist", "hist_percent": 0.99999}}


def _save_fixed(model: onnx.ModelProto, shape: list[int], path: Path) -> Path:
    """The fp32 file both quantizers read: the original with the input dims of `shape` fixed (-1: dynamic)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    name = model.graph.input[0].name
    onnx.save_model(fix_input_shapes(model, {name: shape}), str(path))
    return path


def _quant_post(name: str) -> dict:
    return {**OURS_DEFAULT, **OURS_BY_MODEL.get(name, {})}


class ResNet18Like(nn.Module):
    """ResNet-18 topology (BasicBlocks 2-2-2-2, 64..512 channels) written out so no torchvision is needed."""

    def __init__(self, classes: int = 1000):
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(3, 2, 1)
        )
        blocks, cin = [], 64
        for cout, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
            blocks += [_BasicBlock(cin, cout, stride), _BasicBlock(cout, cout, 1)]
            cin = cout
        self.blocks = nn.Sequential(*blocks)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(512, classes))

    def forward(self, x):
        return self.head(self.blocks(self.stem(x)))


class _BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(cin, cout, 3, stride, 1, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU(),
            nn.Conv2d(cout, cout, 3, 1, 1, bias=False),
            nn.BatchNorm2d(cout),
        )
        self.shortcut = (
            nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
            if stride != 1 or cin != cout
            else nn.Identity()
        )

    def forward(self, x):
        return torch.relu(self.body(x) + self.shortcut(x))


def export_resnet18_like(path: Path, bn_images: np.ndarray, seed: int = 0) -> Path:
    """Random-but-fixed weights; BatchNorm statistics estimated on `bn_images` so activations are well scaled
    (with unit running variance a random deep net's activations explode or vanish, which no real net does)."""
    torch.manual_seed(seed)
    model = ResNet18Like()
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.momentum = None  # cumulative average over the batches below
    model.train()
    with torch.no_grad():
        for start in range(0, len(bn_images), 16):
            model(torch.from_numpy(bn_images[start : start + 16]))
    model.eval()
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.onnx.export(
        model,
        (torch.zeros(1, 3, 224, 224),),
        str(path),
        input_names=["x"],
        output_names=["logits"],
        dynamic_axes={"x": {0: "batch"}, "logits": {0: "batch"}},
        opset_version=13,
        dynamo=False,
    )
    return path


def _photo_case(name: str, fp32_path: Path, sizes: DataSizes, note: str) -> Case:
    split = imagenet_photo_split(sizes.photo_calibration, sizes.photo_evaluation, seed=0)
    evaluate = make_agreement_eval(ort_predictor(fp32_path), split.evaluation, 32, "x")
    return Case(
        name=name,
        fp32_path=fp32_path,
        calibration=list(BatchLoader(split.calibration, sizes.photo_batch, "x")),
        evaluate=evaluate,
        metric_name="top-1 agreement with fp32",
        latency_feed={"x": split.evaluation[:1]},
        quant_post=_quant_post(name),
        note=note,
    )


def efficientnet_case(workdir: Path, sizes: DataSizes) -> Case:
    exported = export_efficientnet_lite0(workdir / "efficientnet_lite0" / "exported.onnx")
    path = _save_fixed(onnx.load(str(exported)), [-1, 3, 224, 224], workdir / "efficientnet_lite0" / "model.onnx")
    return _photo_case("efficientnet_lite0", path, sizes, "ImageNet weights; crops of photos unseen in calibration")


def resnet_case(workdir: Path, sizes: DataSizes) -> Case:
    bn_images = imagenet_photo_split(sizes.photo_calibration, 1, seed=0).calibration
    exported = export_resnet18_like(workdir / "resnet18_like" / "exported.onnx", bn_images)
    path = _save_fixed(onnx.load(str(exported)), [-1, 3, 224, 224], workdir / "resnet18_like" / "model.onnx")
    return _photo_case("resnet18_like", path, sizes, "random fixed weights, BN statistics from calibration crops")


def det_case(workdir: Path, sizes: DataSizes) -> Case:
    side = sizes.det_size
    original = onnx.load(str(rapidocr_model_dir() / DET_MODEL_FILENAME))
    # Height and width stay dynamic, as RapidOCR runs it: data at det_size, latency at det_latency_size.
    path = _save_fixed(original, [-1, 3, -1, -1], workdir / "ocr_det" / "model.onnx")
    latency_scene = ocr_det_dataset(1, seed=2, size=(sizes.det_latency_size, sizes.det_latency_size))
    calibration = ocr_det_dataset(sizes.det_calibration, seed=0, size=(side, side))
    evaluation = ocr_det_dataset(sizes.det_evaluation, seed=1, size=(side, side))
    return Case(
        name="ocr_det",
        fp32_path=path,
        calibration=list(BatchLoader(calibration.inputs, 1, "x")),
        evaluate=make_iou_eval(evaluation.inputs, evaluation.masks, 1, "x"),
        metric_name="Total IoU",
        latency_feed={"x": latency_scene.inputs},
        quant_post=_quant_post("ocr_det"),
        note=f"PP-OCRv4 det, rendered scenes {side}x{side}, latency at {sizes.det_latency_size}",
    )


def cls_case(workdir: Path, sizes: DataSizes) -> Case:
    original = onnx.load(str(rapidocr_model_dir() / CLS_MODEL_FILENAME))
    path = _save_fixed(original, [-1, 3, 48, 192], workdir / "ocr_cls" / "model.onnx")
    calibration = ocr_cls_dataset(sizes.cls_calibration, seed=0)
    evaluation = ocr_cls_dataset(sizes.cls_evaluation, seed=1)
    return Case(
        name="ocr_cls",
        fp32_path=path,
        calibration=list(BatchLoader(calibration.inputs, sizes.cls_batch, "x")),
        evaluate=make_top1_eval(evaluation.inputs, evaluation.labels, 64, "x"),
        metric_name="accuracy 0/180",
        latency_feed={"x": evaluation.inputs[:1]},
        quant_post=_quant_post("ocr_cls"),
        note="PP-OCR cls v2, rendered lines 48x192",
    )


CASE_BUILDERS: dict[str, Callable[[Path, DataSizes], Case]] = {
    "efficientnet_lite0": efficientnet_case,
    "resnet18_like": resnet_case,
    "ocr_det": det_case,
    "ocr_cls": cls_case,
}
