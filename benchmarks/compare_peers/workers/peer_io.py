"""What every worker shares, whatever venv runs it: the exported data, the metric, the result file.

Needs only numpy and onnxruntime, so that each peer's own venv can import it (workers run as scripts,
this folder is their sys.path[0]). The driver imports it too: the metric the table reports and the one the
peers' accuracy-control loops optimise are the same code.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

Feed = dict[str, np.ndarray]
Predictor = Callable[[Feed], list]

MANIFEST = "case.json"
ARRAYS = "data.npz"
RESULT = "result.json"
# DBPostProcess's binarisation threshold, as in examples/ocr_det/metric.py.
TEXT_THRESHOLD = 0.3


@dataclass(frozen=True)
class PeerData:
    """One case as the workers see it: the fp32 model, calibration batches and labelled evaluation samples."""

    name: str
    fp32_path: Path
    input_name: str
    metric: str  # "top1" (target: class per sample) or "iou" (target: 0/1 mask per sample)
    calibration: np.ndarray
    calibration_batch: int
    eval_inputs: np.ndarray
    eval_targets: np.ndarray
    eval_batch: int
    paddle_model_dir: Path | None = None

    def calibration_feeds(self) -> list[Feed]:
        step = self.calibration_batch
        return [{self.input_name: self.calibration[i : i + step]} for i in range(0, len(self.calibration), step)]

    def eval_items(self, batch: int | None = None) -> list[tuple[Feed, np.ndarray]]:
        step = batch or self.eval_batch
        return [
            ({self.input_name: self.eval_inputs[i : i + step]}, self.eval_targets[i : i + step])
            for i in range(0, len(self.eval_inputs), step)
        ]


def save_case(directory: Path, data: PeerData) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    np.savez(
        directory / ARRAYS, calibration=data.calibration, eval_inputs=data.eval_inputs, eval_targets=data.eval_targets
    )
    manifest = {
        "name": data.name,
        "fp32_path": str(data.fp32_path),
        "input_name": data.input_name,
        "metric": data.metric,
        "calibration_batch": data.calibration_batch,
        "eval_batch": data.eval_batch,
        "paddle_model_dir": str(data.paddle_model_dir) if data.paddle_model_dir else None,
    }
    (directory / MANIFEST).write_text(json.dumps(manifest, indent=1), encoding="utf-8")
    return directory


def load_case(directory: str | Path) -> PeerData:
    directory = Path(directory)
    manifest = json.loads((directory / MANIFEST).read_text(encoding="utf-8"))
    with np.load(directory / ARRAYS) as arrays:
        loaded = {key: arrays[key] for key in arrays.files}
    paddle = manifest.pop("paddle_model_dir")
    return PeerData(
        **{**manifest, "fp32_path": Path(manifest["fp32_path"])},
        **loaded,
        paddle_model_dir=Path(paddle) if paddle else None,
    )


def counts(metric: str, output: np.ndarray, target: np.ndarray) -> tuple[int, int]:
    """(numerator, denominator) of one batch; summing both over batches gives the set's metric.

    top1: (correct, samples). iou: (intersection, union) of `output > TEXT_THRESHOLD` with the masks, i.e.
    Total IoU, where large and small scenes weigh by their pixels.
    """
    output = np.asarray(output)
    if metric == "top1":
        return int(np.count_nonzero(output.argmax(axis=1) == target)), len(target)
    if metric == "iou":
        predicted = output.reshape(target.shape) > TEXT_THRESHOLD
        truth = target.astype(bool)
        return int(np.count_nonzero(predicted & truth)), int(np.count_nonzero(predicted | truth))
    raise ValueError(f"unknown metric {metric!r}")


def ratio(numerator: int, denominator: int) -> float:
    return numerator / denominator if denominator else 1.0


def evaluate(predictor: Predictor, metric: str, items: Iterable[tuple[Feed, np.ndarray]]) -> tuple[float, list[float]]:
    """(metric over all items, metric of each item) of `predictor`."""
    total = [0, 0]
    per_item = []
    for feed, target in items:
        num, den = counts(metric, predictor(feed)[0], target)
        total[0] += num
        total[1] += den
        per_item.append(ratio(num, den))
    return ratio(*total), per_item


def ort_predictor(model: str | Path | bytes | Any, threads: int = 0) -> Predictor:
    """An ORT CPU predictor of an ONNX file, serialized bytes or ModelProto (what peers hand to callbacks)."""
    import onnxruntime as ort

    if hasattr(model, "SerializeToString"):
        model = model.SerializeToString()
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.log_severity_level = 3
    session = ort.InferenceSession(
        model if isinstance(model, bytes) else str(model), options, providers=["CPUExecutionProvider"]
    )
    return lambda feed: session.run(None, feed)


@dataclass
class Stopwatch:
    """Wall time of the tool's own work (not of importing it or reading the data)."""

    seconds: float = 0.0

    def __enter__(self) -> Stopwatch:
        self._start = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds += time.perf_counter() - self._start


def write_result(out_dir: Path, model: Path | None, seconds: float, versions: dict[str, str], notes: str = "") -> None:
    """The worker's answer to the driver: the ONNX model it made (None: not yet) and the tool's own wall time."""
    result = {"model": str(model) if model else None, "seconds": seconds, "versions": versions, "notes": notes}
    (out_dir / RESULT).write_text(json.dumps(result, indent=1), encoding="utf-8")


def read_result(out_dir: Path) -> dict:
    return json.loads((out_dir / RESULT).read_text(encoding="utf-8"))


def worker_args(argv: list[str]) -> tuple[PeerData, Path, list[str]]:
    """`worker.py CASE_DIR OUT_DIR [extra...]`: the case, an existing output folder, the rest."""
    if len(argv) < 2:
        raise SystemExit("usage: worker.py CASE_DIR OUT_DIR [options]")
    out_dir = Path(argv[1])
    out_dir.mkdir(parents=True, exist_ok=True)
    return load_case(argv[0]), out_dir, list(argv[2:])


def package_versions(*names: str) -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for name in names:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            continue
    return found
