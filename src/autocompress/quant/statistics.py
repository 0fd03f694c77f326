"""Activation statistics for post-training quantization, collected in one ONNX Runtime pass.

Every range algorithm (abs_max, avg, hist, KL, mse, emd) is computed from these statistics, and
hyper-parameter search re-evaluates them for a smaller batch count, so what is kept per tensor and
batch must allow exact results for *any prefix* of the batches without re-running the model:

* scalars per batch: abs max, signed min and max, mean over samples of the per-sample abs max (avg),
  and the mse / emd loss of each candidate threshold of Paddle's grid search (0.3..1.0 of the batch
  abs max), because Paddle keeps the best (batch, candidate) pair over all batches;
* a histogram of |x| per batch on a power-of-two range [0, 2**e] with e = the batch's own exponent.
  Power-of-two ranges nest: a histogram on [0, 2**e] becomes one on [0, 2**E], E >= e, exactly, by
  summing groups of 2**(E-e) adjacent bins. So a prefix of k batches merges to one exact histogram
  on [0, 2**E_k], whatever batches follow, and a fresh run on k batches gives identical numbers.
  FINE_BINS = 2 * 2048 bins make the final 2048-bin histogram on [0, abs_max] (Paddle's layout,
  see ranges.paddle_histogram) never coarser than the fine one, since abs_max > 2**(E-1).

Memory is O(tensors x batches x FINE_BINS) counts; no activation is kept after its batch.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, fields
from itertools import islice

import numpy as np
import onnx
import onnxruntime as ort

from autocompress.errors import DataError
from autocompress.runtime.ort import exceeds_protobuf_limit, model_source

logger = logging.getLogger(__name__)

FINE_BINS = 4096
# Exponent given to all-zero batches: far below any real activation, so merging puts them in bin 0.
ZERO_EXPONENT = -126
CACHE_FORMAT_VERSION = 2


def _search_grid() -> np.ndarray:
    """Paddle's mse/emd candidates: s = 0.3, 0.32, ... while s <= 1.0, accumulated in float64 as Paddle does."""
    grid, s = [], 0.3
    while s <= 1.0:
        grid.append(s)
        s += 0.02
    return np.array(grid)


SEARCH_GRID = _search_grid()


@dataclass
class ActivationStatistics:
    """Per tensor (axis 0) and batch (axis 1) statistics; see the module docstring for why each exists."""

    tensor_names: list[str]
    activation_bits: int
    abs_max: np.ndarray  # [T, B]
    min: np.ndarray  # [T, B]
    max: np.ndarray  # [T, B]
    sample_abs_max_mean: np.ndarray  # [T, B]
    hist_exponent: np.ndarray  # [T, B] int
    hist: np.ndarray  # [T, B, FINE_BINS] uint32, |x| on [0, 2**exponent]
    mse_loss: np.ndarray  # [T, B, len(SEARCH_GRID)]
    emd_loss: np.ndarray  # [T, B, len(SEARCH_GRID)]

    @property
    def num_batches(self) -> int:
        return int(self.abs_max.shape[1])

    def index(self, name: str) -> int:
        return self.tensor_names.index(name)

    def prefix(self, num_batches: int | None) -> ActivationStatistics:
        """Statistics of the first num_batches batches (all when None or larger than available)."""
        if num_batches is None or num_batches >= self.num_batches:
            return self
        if num_batches < 1:
            raise DataError(f"batch_num must be >= 1, got {num_batches}")
        sliced = {
            f.name: getattr(self, f.name)[:, :num_batches]
            for f in fields(self)
            if isinstance(getattr(self, f.name), np.ndarray)
        }
        return ActivationStatistics(self.tensor_names, self.activation_bits, **sliced)

    def merged_histogram(self, name: str) -> tuple[np.ndarray, int]:
        """(counts, E): the exact histogram of |x| over all batches on [0, 2**E] with FINE_BINS bins."""
        i = self.index(name)
        exponents = self.hist_exponent[i]
        target = int(exponents.max())
        merged = np.zeros(FINE_BINS, dtype=np.int64)
        for counts, exponent in zip(self.hist[i], exponents):
            merged += rebin_power_of_two(counts, int(exponent), target)
        return merged, target

    def save(self, path: str) -> None:
        arrays = {f.name: getattr(self, f.name) for f in fields(self) if isinstance(getattr(self, f.name), np.ndarray)}
        tmp = f"{path}.tmp.npz"
        np.savez_compressed(
            tmp,
            tensor_names=np.array(self.tensor_names, dtype=object),
            activation_bits=np.array(self.activation_bits),
            format_version=np.array(CACHE_FORMAT_VERSION),
            **arrays,
        )
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: str) -> ActivationStatistics:
        with np.load(path, allow_pickle=True) as data:
            kwargs = {f.name: data[f.name] for f in fields(cls) if f.name not in ("tensor_names", "activation_bits")}
            return cls(list(data["tensor_names"]), int(data["activation_bits"]), **kwargs)


def rebin_power_of_two(counts: np.ndarray, exponent: int, target_exponent: int) -> np.ndarray:
    """Exactly re-express a histogram on [0, 2**exponent] on the wider range [0, 2**target_exponent]."""
    shift = target_exponent - exponent
    if shift < 0:
        raise ValueError("target range must not be narrower than the source range")
    bins = counts.shape[0]
    out = np.zeros(bins, dtype=np.int64)
    if shift >= int(math.log2(bins)):
        out[0] = counts.sum()
        return out
    group = 1 << shift
    out[: bins // group] = counts.reshape(bins // group, group).sum(axis=1)
    return out


def batch_statistics(x: np.ndarray, activation_bits: int) -> dict[str, np.ndarray | float | int]:
    """All per-batch statistics of one activation tensor (the row of every field of ActivationStatistics)."""
    x = np.asarray(x, dtype=np.float32)
    grid_size = SEARCH_GRID.shape[0]
    if x.size == 0:
        return dict(
            abs_max=0.0, min=0.0, max=0.0, sample_abs_max_mean=0.0, hist_exponent=ZERO_EXPONENT,
            hist=np.zeros(FINE_BINS, np.uint32), mse_loss=np.full(grid_size, np.inf), emd_loss=np.full(grid_size, np.inf),
        )
    flat = x.ravel()
    magnitude = np.abs(flat)
    abs_max = float(magnitude.max())
    per_sample = magnitude.reshape(x.shape[0], -1).max(axis=1) if x.ndim >= 1 else magnitude
    exponent = math.frexp(abs_max)[1] if abs_max > 0 else ZERO_EXPONENT  # abs_max < 2**exponent
    if abs_max > 0:  # ldexp scales by 2**(log2(FINE_BINS) - exponent) exactly, without overflowing a factor
        bin_index = np.ldexp(magnitude, int(math.log2(FINE_BINS)) - exponent).astype(np.int64)
        hist = np.bincount(np.minimum(bin_index, FINE_BINS - 1), minlength=FINE_BINS).astype(np.uint32)
    else:
        hist = np.zeros(FINE_BINS, np.uint32)
        hist[0] = magnitude.size
    mse, emd = _grid_losses(_grid_sample(flat), abs_max, activation_bits)
    return dict(
        abs_max=abs_max, min=float(flat.min()), max=float(flat.max()), sample_abs_max_mean=float(per_sample.mean()),
        hist_exponent=exponent, hist=hist, mse_loss=mse, emd_loss=emd,
    )


#: Values of a batch on which the mse/emd candidate losses are computed. Evaluating 36 thresholds on every value
#: of a large feature map dominated calibration (PP-OCRv4 det at 640x640: minutes per batch); an evenly strided
#: subsample of this size changes the chosen threshold by well under one grid step.
GRID_SAMPLE_SIZE = 1 << 16


def _grid_sample(flat: np.ndarray) -> np.ndarray:
    if flat.size <= GRID_SAMPLE_SIZE:
        return flat
    return np.ascontiguousarray(flat[:: flat.size // GRID_SAMPLE_SIZE][:GRID_SAMPLE_SIZE])


def _grid_losses(flat: np.ndarray, abs_max: float, bits: int) -> tuple[np.ndarray, np.ndarray]:
    """Paddle's mse and emd losses of symmetric quantize-dequantize at each candidate threshold.

    One scratch buffer and dot-product reductions: this loop is most of the statistics pass.
    """
    abs_max = 1e-8 if abs_max == 0.0 else abs_max
    qmax = 2 ** (bits - 1) - 1
    n = flat.size
    mean = float(flat.sum(dtype=np.float64)) / n
    std = float(flat.std(dtype=np.float64))
    dequant = np.empty_like(flat)
    error = np.empty_like(flat)
    mse = np.empty(SEARCH_GRID.shape[0])
    emd = np.empty(SEARCH_GRID.shape[0])
    for j, s in enumerate(SEARCH_GRID):
        threshold = s * abs_max
        np.multiply(flat, np.float32(qmax / threshold), out=dequant)
        np.rint(dequant, out=dequant)
        np.clip(dequant, -qmax - 1, qmax, out=dequant)
        dequant *= np.float32(threshold / qmax)
        np.subtract(flat, dequant, out=error)
        mse[j] = float(np.dot(error, error)) / n
        dq_mean = float(dequant.sum(dtype=np.float64)) / n
        dq_std = math.sqrt(max(float(np.dot(dequant, dequant)) / n - dq_mean**2, 0.0))
        emd[j] = abs(mean - dq_mean) + abs(std - dq_std)
    return mse, emd


def statistics_fingerprint(
    model: onnx.ModelProto, batches: Iterable[Mapping[str, np.ndarray]], tensor_names: Sequence[str], activation_bits: int
) -> str:
    """Cache key: model bytes, every batch (names, dtypes, shapes, bytes), the tensor list and the bit width."""
    digest = hashlib.sha256()
    digest.update(f"v{CACHE_FORMAT_VERSION};bits={activation_bits};".encode())
    _hash_model(digest, model)
    for name in tensor_names:
        digest.update(name.encode() + b"\0")
    for batch in batches:
        for key in sorted(batch):
            value = np.ascontiguousarray(batch[key])
            digest.update(f"{key}|{value.dtype.str}|{value.shape};".encode())
            digest.update(value.tobytes())
        digest.update(b"\1")
    return digest.hexdigest()


def _hash_model(digest, model: onnx.ModelProto) -> None:
    if not exceeds_protobuf_limit(model):
        digest.update(model.SerializeToString(deterministic=True))
        return
    # Over protobuf's 2 GB limit a model cannot be serialized whole: hash it part by part.
    graph = model.graph
    for part in (*model.opset_import, *graph.input, *graph.output, *graph.node, *graph.initializer,
                 *graph.sparse_initializer, *model.functions):  # fmt: skip
        digest.update(part.SerializeToString(deterministic=True))


def collect_statistics(
    model: onnx.ModelProto,
    batches: Iterable[Mapping[str, np.ndarray]],
    tensor_names: Sequence[str],
    batch_nums: int | None = None,
    activation_bits: int = 8,
    cache_dir: str | None = None,
    providers: Sequence[str] = ("CPUExecutionProvider",),
) -> ActivationStatistics:
    """Run the model once over the calibration batches and return the statistics of tensor_names.

    With cache_dir, statistics are stored as <fingerprint>.npz and loaded on the next identical call.
    A re-iterable `batches` (list, DataLoader) is read twice when caching (hash, then run), so it
    must yield the same data in the same order; a one-shot iterator is buffered instead.
    """
    tensor_names = list(dict.fromkeys(tensor_names))
    if iter(batches) is batches:  # a one-shot iterator: keep the batches to hash and to run them
        batches = list(islice(batches, batch_nums)) if batch_nums else list(batches)
    cache_path = None
    if cache_dir is not None:
        key = statistics_fingerprint(model, islice(batches, batch_nums), tensor_names, activation_bits)
        cache_path = os.path.join(cache_dir, f"statistics_{key[:32]}.npz")
        if os.path.exists(cache_path):
            logger.info("loading calibration statistics from %s", cache_path)
            return ActivationStatistics.load(cache_path)

    with model_source(_with_outputs(model, tensor_names)) as source:
        session = ort.InferenceSession(source, providers=list(providers))
    input_names = [i.name for i in session.get_inputs()]
    rows: list[list[dict]] = [[] for _ in tensor_names]
    count = 0
    for batch in islice(batches, batch_nums):
        feed = _checked_feed(batch, input_names, count)
        outputs = session.run(tensor_names, feed)
        for row, value in zip(rows, outputs):
            row.append(batch_statistics(value, activation_bits))
        count += 1
    if count == 0:
        raise DataError("calibration data is empty: the dataloader yielded no batch")
    if batch_nums is not None and count < batch_nums:
        logger.warning("batch_nums=%d but the calibration data has only %d batches; using %d", batch_nums, count, count)

    statistics = _stack(tensor_names, activation_bits, rows)
    if cache_path is not None:
        os.makedirs(cache_dir, exist_ok=True)
        statistics.save(cache_path)
    return statistics


def statistics_from_arrays(
    arrays: Mapping[str, Sequence[np.ndarray]], activation_bits: int = 8
) -> ActivationStatistics:
    """Statistics of tensors given directly as per-batch arrays (same batch count for each tensor)."""
    names = list(arrays)
    rows = [[batch_statistics(value, activation_bits) for value in arrays[name]] for name in names]
    return _stack(names, activation_bits, rows)


def _stack(tensor_names: list[str], activation_bits: int, rows: list[list[dict]]) -> ActivationStatistics:
    stacked = {key: np.array([[b[key] for b in row] for row in rows]) for key in rows[0][0]}
    stacked["hist_exponent"] = stacked["hist_exponent"].astype(np.int64)
    return ActivationStatistics(tensor_names, activation_bits, **stacked)


def _with_outputs(model: onnx.ModelProto, tensor_names: Sequence[str]) -> onnx.ModelProto:
    """A copy of the model whose graph outputs also include tensor_names."""
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    existing = {o.name for o in copy.graph.output}
    for name in tensor_names:
        if name not in existing:
            copy.graph.output.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
    return copy


def _checked_feed(batch: Mapping[str, np.ndarray], input_names: Sequence[str], batch_index: int) -> dict[str, np.ndarray]:
    """The batch as an ORT feed; raises DataError for missing inputs or non-finite values."""
    missing = [n for n in input_names if n not in batch]
    if missing:
        raise DataError(
            f"calibration batch {batch_index} lacks model input(s) {missing}; it has {sorted(batch)}; "
            f"the model expects {list(input_names)}"
        )
    feed = {}
    for name in input_names:
        value = np.asarray(batch[name])
        if np.issubdtype(value.dtype, np.floating) and not np.all(np.isfinite(value)):
            raise DataError(f"calibration batch {batch_index}: input {name!r} contains NaN or Inf")
        feed[name] = value
    return feed
