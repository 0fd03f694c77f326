"""ONNX Runtime sessions per deploy target, the predictor handed to eval callbacks, latency of one model.

Comparisons of several models live in runtime/latency.py; all_cores, thread_counts and interleaved_latency are
re-exported here for the modules that import them from this one.
"""

from __future__ import annotations

import contextlib
import logging
import statistics
import time
import weakref
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import numpy_helper

from autocompress import progress
from autocompress.errors import ConfigError
from autocompress.graph.external import is_on_disk, mapped
from autocompress.graph.large import WeightsLayout, is_stubbed, saved_with_external_data, weights_layout
from autocompress.runtime.latency import all_cores as all_cores
from autocompress.runtime.latency import interleaved_latency as interleaved_latency
from autocompress.runtime.latency import thread_counts as thread_counts
from autocompress.runtime.ort_errors import REFUSALS, refusal_error

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


def _output_infos(names: Sequence[str]) -> list[onnx.ValueInfoProto]:
    return [onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None) for name in names]


def _appended_outputs(model: onnx.ModelProto, outputs: Sequence[str]) -> list[str]:
    existing = {o.name for o in model.graph.output}
    return [name for name in dict.fromkeys(outputs) if name not in existing]


@contextlib.contextmanager
def model_source(
    model: onnx.ModelProto | str | Path, outputs: Sequence[str] = (), layout: WeightsLayout | None = None
) -> Iterator[bytes | str]:
    """What an ORT session loads: a path as given, the bytes of an INLINE model, or for an EXTERNAL one (`layout`,
    decided here when not given) a temporary file with external data, removed on exit; the model is only read.

    `outputs`: tensors to add to the graph outputs (float, as calibration reads them). Under 2 GB they are appended
    to the bytes as a second message: protobuf parses concatenated messages as one, repeated fields appended, so
    the model is not copied to gain a few outputs.
    """
    if isinstance(model, (str, Path)):
        if outputs:
            raise ValueError("outputs can be added to a ModelProto only, not to a model file")
        yield str(model)
        return
    extra = _appended_outputs(model, outputs)
    if (layout or weights_layout(model)) is WeightsLayout.INLINE:
        tail = onnx.ModelProto(graph=onnx.GraphProto(output=_output_infos(extra))).SerializeToString() if extra else b""
        yield model.SerializeToString() + tail
    else:
        with saved_with_external_data(model, outputs=_output_infos(extra)) as path:
            yield str(path)


#: Tensor types whose bytes are a numpy array's as they are, so ORT can run on the array itself.
_PLAIN_TYPES = frozenset(
    {
        onnx.TensorProto.FLOAT,
        onnx.TensorProto.DOUBLE,
        onnx.TensorProto.FLOAT16,
        onnx.TensorProto.BOOL,
        onnx.TensorProto.INT8,
        onnx.TensorProto.INT16,
        onnx.TensorProto.INT32,
        onnx.TensorProto.INT64,
        onnx.TensorProto.UINT8,
        onnx.TensorProto.UINT16,
        onnx.TensorProto.UINT32,
        onnx.TensorProto.UINT64,
    }
)


class SharedWeights:
    """The weights of models over 2 GB as numpy arrays, one per distinct tensor while any session runs on it.

    ORT's CPU provider runs on an initializer given by SessionOptions.add_initializer in place, so the sessions of
    one model (an evaluation's reference and candidate, calibration, latency) hold its weights once between them
    instead of a copy each. An array is reused only for a tensor of the same name, type, shape and bytes, and is
    freed with the last session using it.
    """

    def __init__(self) -> None:
        self._arrays: weakref.WeakValueDictionary[tuple, np.ndarray] = weakref.WeakValueDictionary()

    @staticmethod
    def supports(tensor: onnx.TensorProto) -> bool:
        return tensor.data_type in _PLAIN_TYPES

    def array(self, tensor: onnx.TensorProto) -> np.ndarray:
        """The tensor's values, read-only; the same array as a live one holding the same bytes (or, for a weight
        left on disk, mapping the same file range)."""
        if is_on_disk(tensor):
            key = (tensor.name, tensor.data_type, tuple(tensor.dims), *(e.value for e in tensor.external_data))
            array = self._arrays.get(key)
            if array is None:
                array = self._arrays[key] = mapped(tensor)
            return array
        data = tensor.raw_data if tensor.HasField("raw_data") else numpy_helper.to_array(tensor).tobytes()
        dims = tuple(tensor.dims)
        key = (tensor.name, tensor.data_type, dims)
        flat = self._arrays.get(key)
        if flat is None or flat.base != data:  # bytes compare by memcmp: exact, and far cheaper than the copy
            flat = np.frombuffer(data, onnx.helper.tensor_dtype_to_np_dtype(tensor.data_type))
            self._arrays[key] = flat
        return flat.reshape(dims)

    def __len__(self) -> int:
        return len(self._arrays)


SHARED_WEIGHTS = SharedWeights()


class SharedWeightsSession(ort.InferenceSession):
    """A session that holds the OrtValues given to its options by add_initializer, with their arrays: ORT reads
    them for the session's lifetime, but neither it nor SessionOptions keeps them alive."""

    def __init__(self, source: str, options: ort.SessionOptions, providers: Sequence[str], weights: list[ort.OrtValue]):
        self.shared_weights = weights
        super().__init__(source, sess_options=options, providers=list(providers))


def _share_weights(model: onnx.ModelProto, options: ort.SessionOptions) -> list[ort.OrtValue]:
    """Make the session built with `options` run on SHARED_WEIGHTS arrays of the model's large initializers.

    The session still loads the graph from the temporary external-data file (model_source): ORT's graph optimizers
    read the few weights they rewrite from it, mapped, not copied. ORT's pre-packing is off, or it would keep a
    re-laid-out copy of every MatMul/Conv weight: a session then costs no weight memory beyond the shared arrays, at
    some speed (BENCHMARKS.md, "A model over 2 GB"). Tensors of types without a plain numpy layout stay in the file.
    """
    large = [t for t in model.graph.initializer if is_stubbed(t) and SharedWeights.supports(t)]
    weights = [ort.OrtValue.ortvalue_from_numpy(SHARED_WEIGHTS.array(tensor)) for tensor in large]
    for tensor, value in zip(large, weights):
        options.add_initializer(tensor.name, value)
    options.add_session_config_entry("session.disable_prepacking", "1")
    return weights


def create_session(
    model: onnx.ModelProto | str | Path,
    hardware: str | HardwareTarget = "cpu",
    threads: int | None = None,
    optimized_model_path: str | None = None,
    level: ort.GraphOptimizationLevel = ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    outputs: Sequence[str] = (),
    prepack: bool = False,
    layout: WeightsLayout | None = None,
) -> ort.InferenceSession:
    """An ORT session of `model`, with `outputs` added to its graph outputs; every session is created here, so
    that a model ORT refuses (unknown op, no kernel for a type) is a ModelLoadError naming the node.

    An EXTERNAL model (over 2 GB, or weights on disk) runs on SHARED_WEIGHTS without pre-packing, unless `prepack`
    (latency, which should be the deployed speed): ORT then maps the weights from the temporary file and keeps only
    their packed copy. INLINE models always pre-pack, as ORT does by default. `layout` is the model's weights_layout
    when the caller knows it; otherwise it is decided here, once.
    """
    target = hardware if isinstance(hardware, HardwareTarget) else resolve_hardware(hardware)
    options = ort.SessionOptions()
    options.graph_optimization_level = level
    options.log_severity_level = 3
    if threads:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    if optimized_model_path:
        options.optimized_model_filepath = optimized_model_path
    weights = None
    if isinstance(model, onnx.ModelProto):
        layout = layout or weights_layout(model)
        if layout is WeightsLayout.EXTERNAL and not (prepack or optimized_model_path):
            weights = _share_weights(model, options)
    with model_source(model, outputs, layout) as source:
        try:
            if weights is not None:
                return SharedWeightsSession(source, options, target.providers, weights)
            return ort.InferenceSession(source, sess_options=options, providers=list(target.providers))
        except REFUSALS as exc:
            raise refusal_error(exc, model, target.providers, layout) from exc


class Predictor:
    """What eval callbacks receive: `predictor(feed_dict) -> list of output arrays`, backed by ONNX Runtime.

    `input_names` and `output_names` describe the candidate model; `layout` is its weights_layout if known.
    """

    def __init__(
        self,
        model: onnx.ModelProto | str | Path,
        hardware: str | HardwareTarget = "cpu",
        threads: int | None = None,
        layout: WeightsLayout | None = None,
    ) -> None:
        self.session = create_session(model, hardware, threads, layout=layout)
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
    return np.require(value, requirements="C")


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
    layout: WeightsLayout | None = None,
) -> Latency:
    """Median and p90 wall time of one inference, with a fixed thread count and one live session (`layout`: the
    model's weights_layout if known)."""
    target = hardware if isinstance(hardware, HardwareTarget) else resolve_hardware(hardware)
    session = create_session(model, target, threads, prepack=True, layout=layout)
    feed = {k: _to_numpy(v) for k, v in feed.items()}
    for _ in range(warmup):
        session.run(None, feed)
    times: list[float] = []
    deadline = time.perf_counter() + max_seconds
    with progress.bar(desc="latency", total=runs, unit="run") as bar:
        while len(times) < runs and (len(times) < 5 or time.perf_counter() < deadline):
            start = time.perf_counter()
            session.run(None, feed)
            times.append((time.perf_counter() - start) * 1000.0)
            bar.update()
    del session
    times.sort()
    p90 = times[min(len(times) - 1, int(round(0.9 * (len(times) - 1))))]
    return Latency(statistics.median(times), p90, len(times), threads, target.name)
