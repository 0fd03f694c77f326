"""ONNX Runtime sessions per deploy target, the predictor handed to eval callbacks, latency measurement."""

from __future__ import annotations

import contextlib
import logging
import statistics
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator, Mapping, Sequence

import numpy as np
import onnx
import onnxruntime as ort

from autocompress.errors import ConfigError
from autocompress.graph.large import exceeds_protobuf_limit, saved_with_external_data

log = logging.getLogger(__name__)

#: Edge targets named in PaddleSlim's latency tables; we cannot run them here, so CPU latency is the proxy.
EDGE_TARGETS = ("SD625", "SD710", "SD710_cpu", "RK3288", "A311D", "SD865", "ARM")


@dataclass(frozen=True)
class HardwareTarget:
    name: str
    providers: tuple[str, ...]
    measured: bool  # False when latency on this machine is only a proxy for the target
    note: str = ""


def resolve_hardware(deploy_hardware: str) -> HardwareTarget:
    """Map deploy_hardware to ORT execution providers; GPU without a GPU build is a clear error."""
    name = (deploy_hardware or "cpu").strip()
    key = name.lower()
    available = ort.get_available_providers()
    if key == "cpu":
        return HardwareTarget("cpu", ("CPUExecutionProvider",), True)
    if key in ("gpu", "cuda", "tensorrt", "trt"):
        wanted = ["TensorrtExecutionProvider", "CUDAExecutionProvider"] if key != "cuda" else ["CUDAExecutionProvider"]
        have = [p for p in wanted if p in available]
        if not have:
            raise ConfigError(
                f"deploy_hardware {name!r} needs onnxruntime-gpu with CUDA/TensorRT; this onnxruntime offers "
                f"{available}. Install onnxruntime-gpu on a GPU machine or use deploy_hardware: cpu"
            )
        return HardwareTarget("gpu", (*have, "CPUExecutionProvider"), True)
    if name in EDGE_TARGETS or key in (t.lower() for t in EDGE_TARGETS):
        note = (
            f"latency on {name} cannot be measured here; CPU latency of this machine with ONNX Runtime "
            "is used as a proxy"
        )
        return HardwareTarget(name, ("CPUExecutionProvider",), False, note)
    raise ConfigError(f"unknown deploy_hardware {name!r}; use 'cpu', 'gpu' or an edge target {list(EDGE_TARGETS)}")


@contextlib.contextmanager
def model_source(model: onnx.ModelProto | str | Path) -> Iterator[bytes | str]:
    """What an ORT session loads: a path as given, the bytes of a model under 2 GB (protobuf's limit), or for a
    larger one a temporary file with external data, removed on exit; the caller's model is only read."""
    if isinstance(model, (str, Path)):
        yield str(model)
    elif not exceeds_protobuf_limit(model):
        yield model.SerializeToString()
    else:
        with saved_with_external_data(model) as path:
            yield str(path)


def create_session(
    model: onnx.ModelProto | str | Path,
    hardware: str | HardwareTarget = "cpu",
    threads: int | None = None,
    optimized_model_path: str | None = None,
    level: ort.GraphOptimizationLevel = ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
) -> ort.InferenceSession:
    target = hardware if isinstance(hardware, HardwareTarget) else resolve_hardware(hardware)
    options = ort.SessionOptions()
    options.graph_optimization_level = level
    options.log_severity_level = 3
    if threads:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    if optimized_model_path:
        options.optimized_model_filepath = optimized_model_path
    with model_source(model) as source:
        return ort.InferenceSession(source, sess_options=options, providers=list(target.providers))


class Predictor:
    """What eval callbacks receive: `predictor(feed_dict) -> list of output arrays`, backed by ONNX Runtime.

    `input_names` and `output_names` describe the candidate model.
    """

    def __init__(self, model: onnx.ModelProto | str | Path, hardware: str | HardwareTarget = "cpu", threads: int | None = None):
        self.session = create_session(model, hardware, threads)
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.output_names = [o.name for o in self.session.get_outputs()]
        self._input_types = {i.name: i.type for i in self.session.get_inputs()}

    def __call__(self, feed: Mapping[str, np.ndarray] | Sequence[np.ndarray] | np.ndarray) -> list[np.ndarray]:
        if isinstance(feed, np.ndarray):
            feed = [feed]
        if not isinstance(feed, Mapping):
            feed = dict(zip(self.input_names, feed))
        feed = {k: _to_numpy(v) for k, v in feed.items()}
        return self.session.run(None, feed)


def _to_numpy(value) -> np.ndarray:
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    return np.ascontiguousarray(value)


@dataclass(frozen=True)
class Latency:
    median_ms: float
    p90_ms: float
    runs: int
    threads: int
    hardware: str

    def to_dict(self) -> dict:
        return asdict(self)


def measure_latency(
    model: onnx.ModelProto | str | Path,
    feed: Mapping[str, np.ndarray],
    hardware: str | HardwareTarget = "cpu",
    threads: int = 1,
    warmup: int = 5,
    runs: int = 30,
    max_seconds: float = 20.0,
) -> Latency:
    """Median and p90 wall time of one inference, with a fixed thread count and one live session."""
    target = hardware if isinstance(hardware, HardwareTarget) else resolve_hardware(hardware)
    session = create_session(model, target, threads)
    feed = {k: _to_numpy(v) for k, v in feed.items()}
    for _ in range(warmup):
        session.run(None, feed)
    times: list[float] = []
    deadline = time.perf_counter() + max_seconds
    while len(times) < runs and (len(times) < 5 or time.perf_counter() < deadline):
        start = time.perf_counter()
        session.run(None, feed)
        times.append((time.perf_counter() - start) * 1000.0)
    del session
    times.sort()
    p90 = times[min(len(times) - 1, int(round(0.9 * (len(times) - 1))))]
    return Latency(statistics.median(times), p90, len(times), threads, target.name)
