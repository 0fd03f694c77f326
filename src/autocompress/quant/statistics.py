"""Activation statistics for post-training quantization, collected in one ONNX Runtime pass.

Every range algorithm (abs_max, avg, hist, KL, mse, emd) is computed from these statistics, and
hyper-parameter search re-evaluates them for a smaller batch count (a prefix of the batches) without
re-running the model. Memory must not grow with the number of batches, so what is kept is:

* scalars per tensor and batch (a few floats each): abs max, signed min and max, mean over samples of
  the per-sample abs max (avg), and (part GRID) the smallest mse / emd loss of Paddle's grid search (0.3..1.0
  of the batch abs max) with its threshold, because Paddle keeps the best (batch, candidate) pair over all batches;
* (part HISTOGRAM) one running histogram of |x| per tensor on a power-of-two range [0, 2**E]. Power-of-two ranges nest:
  a histogram on [0, 2**e] becomes one on [0, 2**E], E >= e, exactly, by summing groups of 2**(E-e)
  adjacent bins, so each batch's histogram is merged into the running one without loss, and the merged
  histogram of the first k batches equals a fresh run on k batches. It is copied (a snapshot) only at
  the batch counts asked for (`prefixes`, e.g. HPO's batch_num range) and at the end.
  FINE_BINS = 2 * 2048 bins make the final 2048-bin histogram on [0, abs_max] (Paddle's layout,
  see ranges.paddle_histogram) never coarser than the fine one, since abs_max > 2**(E-1).

The two parts cost far more than the scalars (the grid search is most of a full pass), so only the parts the
requested range algorithms read are collected (ALGORITHM_PARTS); reading an algorithm whose part is missing
raises DataError, and a cache file lacking a part is recomputed with the union of both.

Memory is O(tensors x (batches + snapshots x FINE_BINS)); no activation is kept after its batch.
The cache file holds only numeric and str arrays and is read with allow_pickle=False.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import time
import zipfile
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, fields
from itertools import islice

import numpy as np
import onnx
import onnxruntime as ort

from autocompress import progress
from autocompress.errors import ConfigError, DataError
from autocompress.graph.external import is_on_disk, mapped
from autocompress.graph.large import WeightsLayout, weights_layout
from autocompress.runtime.ort import HardwareTarget, create_session

logger = logging.getLogger(__name__)

FINE_BINS = 4096
# Exponent given to all-zero batches: far below any real activation, so merging puts them in bin 0.
ZERO_EXPONENT = -126
#: Batches calibration collects even past the deadline: fewer leave ranges that one outlier batch decides.
MIN_BATCHES_AT_DEADLINE = 2
CACHE_FORMAT_VERSION = 4
# What reading an unreadable, truncated or foreign cache file raises (np.load, zipfile, zlib, validation).
CACHE_READ_ERRORS = (OSError, ValueError, KeyError, TypeError, EOFError, zipfile.BadZipFile, zlib.error)


def _search_grid() -> np.ndarray:
    """Paddle's mse/emd candidates: s = 0.3, 0.32, ... while s <= 1.0, accumulated in float64 as Paddle does."""
    grid, s = [], 0.3
    while s <= 1.0:
        grid.append(s)
        s += 0.02
    return np.array(grid)


SEARCH_GRID = _search_grid()
#: The optional parts of the statistics; the BASE_FIELDS scalars are always collected.
HISTOGRAM, GRID = "histogram", "grid"
ALL_PARTS = frozenset({HISTOGRAM, GRID})
#: The parts each range algorithm reads.
ALGORITHM_PARTS: dict[str, frozenset[str]] = {
    "abs_max": frozenset(),
    "avg": frozenset(),
    "hist": frozenset({HISTOGRAM}),
    "KL": frozenset({HISTOGRAM}),
    "mse": frozenset({GRID}),
    "emd": frozenset({GRID}),
}
#: Per-batch scalar fields, [T, B] each; the GRID_FIELDS are [T, 0] when GRID was not collected.
BASE_FIELDS = ("abs_max", "min", "max", "sample_abs_max_mean")
GRID_FIELDS = ("mse_loss", "mse_threshold", "emd_loss", "emd_threshold")
BATCH_FIELDS = BASE_FIELDS + GRID_FIELDS


def parts_for(algorithms: Iterable[str]) -> frozenset[str]:
    """The parts collect_statistics must gather for these range algorithms."""
    parts: frozenset[str] = frozenset()
    for algo in algorithms:
        if algo not in ALGORITHM_PARTS:
            raise ConfigError(f"ptq algo: unknown algorithm {algo!r}; allowed: {list(ALGORITHM_PARTS)}")
        parts |= ALGORITHM_PARTS[algo]
    return parts


@dataclass
class ActivationStatistics:
    """Per tensor (axis 0) statistics: scalars per batch, histograms per snapshot (see the module docstring)."""

    tensor_names: list[str]
    activation_bits: int
    abs_max: np.ndarray  # [T, B]
    min: np.ndarray  # [T, B]
    max: np.ndarray  # [T, B]
    sample_abs_max_mean: np.ndarray  # [T, B]
    mse_loss: np.ndarray  # [T, B] the batch's smallest grid loss
    mse_threshold: np.ndarray  # [T, B] its threshold, s * batch abs max
    emd_loss: np.ndarray  # [T, B]
    emd_threshold: np.ndarray  # [T, B]
    hist_batches: np.ndarray  # [S] int, ascending: the histogram snapshots are of the first hist_batches[s] batches
    hist_exponent: np.ndarray  # [T, S] int
    hist: np.ndarray  # [T, S, FINE_BINS] int64, |x| on [0, 2**exponent]; S = 0 without HISTOGRAM
    parts: frozenset[str] = ALL_PARTS  # the optional parts collected

    @property
    def num_batches(self) -> int:
        return int(self.abs_max.shape[1])

    def index(self, name: str) -> int:
        return self.tensor_names.index(name)

    def prefix(self, num_batches: int | None) -> ActivationStatistics:
        """Statistics of the first num_batches batches (all when None or larger than available).

        Histograms (hist, KL) exist for a prefix only if it was among the `prefixes` collected.
        """
        if num_batches is None or num_batches >= self.num_batches:
            return self
        if num_batches < 1:
            raise DataError(f"batch_num must be >= 1, got {num_batches}")
        kept = int(np.searchsorted(self.hist_batches, num_batches, side="right"))
        scalars = {name: getattr(self, name)[:, :num_batches] for name in BATCH_FIELDS}
        return ActivationStatistics(
            self.tensor_names,
            self.activation_bits,
            **scalars,
            hist_batches=self.hist_batches[:kept],
            hist_exponent=self.hist_exponent[:, :kept],
            hist=self.hist[:, :kept],
            parts=self.parts,
        )

    def require(self, algo: str) -> None:
        """Raise DataError unless the parts that algo reads were collected."""
        missing = ALGORITHM_PARTS[algo] - self.parts
        if missing:
            raise DataError(
                f"range algorithm {algo!r} needs the {sorted(missing)} statistics, which were not collected (these "
                f"hold {sorted(self.parts) or 'scalars only'}); pass {algo!r} in collect_statistics(algorithms=...)"
            )

    def has_histogram(self) -> bool:
        return self.hist_batches.size > 0 and int(self.hist_batches[-1]) == self.num_batches

    def merged_histogram(self, name: str) -> tuple[np.ndarray, int]:
        """(counts, E): the exact histogram of |x| over all batches on [0, 2**E] with FINE_BINS bins."""
        self.require("hist")
        if not self.has_histogram():
            raise DataError(
                f"no histogram of the first {self.num_batches} batches: collect_statistics keeps them only for "
                f"prefixes={self.hist_batches.tolist()}; pass {self.num_batches} among the prefixes"
            )
        i = self.index(name)
        return self.hist[i, -1], int(self.hist_exponent[i, -1])

    def save(self, path: str) -> None:
        arrays = {f.name: getattr(self, f.name) for f in fields(self) if isinstance(getattr(self, f.name), np.ndarray)}
        tmp = f"{path}.tmp.npz"
        np.savez_compressed(
            tmp,
            tensor_names=np.array(self.tensor_names, dtype=np.str_),
            activation_bits=np.array(self.activation_bits),
            format_version=np.array(CACHE_FORMAT_VERSION),
            parts=np.array(sorted(self.parts), dtype=np.str_),
            **arrays,
        )
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: str) -> ActivationStatistics:
        """Read a file written by save; raises one of CACHE_READ_ERRORS for anything else. Never unpickles."""
        with np.load(path, allow_pickle=False) as data:
            if int(data["format_version"]) != CACHE_FORMAT_VERSION:
                raise ValueError(f"format version {int(data['format_version'])}, expected {CACHE_FORMAT_VERSION}")
            names = data["tensor_names"]
            if names.dtype.kind != "U" or names.ndim != 1:
                raise ValueError(f"tensor_names is {names.dtype}[{names.ndim}d], expected a 1-d str array")
            parts = data["parts"]
            if parts.dtype.kind != "U" or parts.ndim != 1 or not set(parts.tolist()) <= ALL_PARTS:
                raise ValueError(f"parts is {parts.dtype}{list(parts.shape)}, expected a subset of {sorted(ALL_PARTS)}")
            scalars = ("tensor_names", "activation_bits", "parts")
            arrays = {f.name: data[f.name] for f in fields(cls) if f.name not in scalars}
            bits, held = int(data["activation_bits"]), frozenset(parts.tolist())
            statistics = cls([str(n) for n in names], bits, **arrays, parts=held)
        statistics.validate()
        return statistics

    def validate(self) -> None:
        """Raise ValueError unless every array has the shape and kind the tensor and batch counts imply."""
        t, b = len(self.tensor_names), self.num_batches
        s = self.hist_batches.shape[0] if self.hist_batches.ndim == 1 else -1
        if HISTOGRAM not in self.parts and s != 0:
            raise ValueError(f"{s} histogram snapshots, but the histogram part was not collected")
        expected = {name: (t, b) for name in BASE_FIELDS}
        expected.update({name: (t, b if GRID in self.parts else 0) for name in GRID_FIELDS})
        expected.update(hist_batches=(s,), hist_exponent=(t, s), hist=(t, s, FINE_BINS))
        for name, shape in expected.items():
            value = getattr(self, name)
            if value.shape != shape or value.dtype.kind not in "fiu":
                raise ValueError(f"{name} is {value.dtype}{list(value.shape)}, expected numbers of shape {list(shape)}")
        counts = self.hist_batches
        if b < 1 or (counts.size and (counts[0] < 1 or counts[-1] > b or np.any(np.diff(counts) <= 0))):
            raise ValueError(f"inconsistent batch counts: {b} batches, histograms at {counts.tolist()}")
        if np.any(self.hist < 0):
            raise ValueError("negative histogram counts")

    def covers(self, prefixes: Iterable[int], parts: frozenset[str] = ALL_PARTS) -> bool:
        """Whether parts were collected and, with HISTOGRAM, a histogram exists for each of prefixes that is within
        the batches collected."""
        if not parts <= self.parts:
            return False
        if HISTOGRAM not in parts:
            return True
        held = set(self.hist_batches.tolist())
        return self.has_histogram() and all(p in held for p in prefixes if p <= self.num_batches)


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


def batch_statistics(
    x: np.ndarray, activation_bits: int, parts: frozenset[str] = ALL_PARTS
) -> dict[str, float | int | np.ndarray]:
    """Statistics of one activation tensor in one batch: the BASE_FIELDS scalars and those of parts (GRID_FIELDS;
    hist and hist_exponent)."""
    x = np.asarray(x, dtype=np.float32)
    if x.size == 0:
        stats: dict[str, float | int | np.ndarray] = dict(abs_max=0.0, min=0.0, max=0.0, sample_abs_max_mean=0.0)
        if GRID in parts:
            stats.update(mse_loss=np.inf, mse_threshold=0.0, emd_loss=np.inf, emd_threshold=0.0)
        if HISTOGRAM in parts:
            stats.update(hist_exponent=ZERO_EXPONENT, hist=np.zeros(FINE_BINS, np.int64))
        return stats
    # per-sample min and max give min, max and |x| maxima without computing |x|: max|x| = max(max x, -min x)
    samples = x.reshape(x.shape[0] if x.ndim else 1, -1)
    low, high = samples.min(axis=1), samples.max(axis=1)
    per_sample = np.maximum(np.negative(low), high)
    abs_max = float(per_sample.max())
    stats = dict(
        abs_max=abs_max, min=float(low.min()), max=float(high.max()), sample_abs_max_mean=float(per_sample.mean())
    )
    if GRID in parts:
        mse, emd = grid_losses(_grid_sample(x.ravel()), abs_max, activation_bits)
        mse_index, emd_index = last_argmin(mse), last_argmin(emd)
        candidate_scale = abs_max or 1e-8
        stats.update(
            mse_loss=float(mse[mse_index]),
            mse_threshold=float(SEARCH_GRID[mse_index] * candidate_scale),
            emd_loss=float(emd[emd_index]),
            emd_threshold=float(SEARCH_GRID[emd_index] * candidate_scale),
        )
    if HISTOGRAM in parts:
        stats["hist_exponent"], stats["hist"] = _abs_histogram(x.ravel(), abs_max)
    return stats


def _abs_histogram(flat: np.ndarray, abs_max: float) -> tuple[int, np.ndarray]:
    """(E, counts): the histogram of |flat| on [0, 2**E] with FINE_BINS bins, E the smallest with abs_max < 2**E."""
    if not abs_max > 0:  # also NaN
        hist = np.zeros(FINE_BINS, np.int64)
        hist[0] = flat.size
        return ZERO_EXPONENT, hist
    exponent = math.frexp(abs_max)[1]
    # ldexp scales by 2**(log2(FINE_BINS) - exponent) exactly, without overflowing a factor; in place, one buffer
    scaled = np.abs(flat)
    np.ldexp(scaled, int(math.log2(FINE_BINS)) - exponent, out=scaled)
    np.minimum(scaled, np.float32(FINE_BINS - 1), out=scaled)
    return exponent, np.bincount(scaled.astype(np.intp), minlength=FINE_BINS)


def last_argmin(values: np.ndarray) -> int:
    """Index of the last minimum: Paddle replaces its best candidate on `<=`, so later ties win."""
    return values.shape[0] - 1 - int(np.argmin(values[::-1]))


#: Values of a batch on which the mse/emd candidate losses are computed. Evaluating 36 thresholds on every value
#: of a large feature map dominated calibration (PP-OCRv4 det at 640x640: minutes per batch); an evenly strided
#: subsample of this size changes the chosen threshold by well under one grid step.
GRID_SAMPLE_SIZE = 1 << 16


def _grid_sample(flat: np.ndarray) -> np.ndarray:
    if flat.size <= GRID_SAMPLE_SIZE:
        return flat
    return np.require(flat[:: flat.size // GRID_SAMPLE_SIZE][:GRID_SAMPLE_SIZE], requirements="C")


#: Elements quantized at once by grid_losses: small tensors evaluate many candidates per numpy call (per-call
#: overhead, not arithmetic, dominated them), large ones one candidate at a time in a bounded buffer.
GRID_BLOCK_SIZE = 1 << 16


def grid_losses(flat: np.ndarray, abs_max: float, bits: int) -> tuple[np.ndarray, np.ndarray]:
    """Paddle's mse and emd losses of symmetric quantize-dequantize at each candidate threshold.

    Computed on the tensor divided by its abs max, so huge (1e30) or denormal values neither overflow nor
    underflow float32; the losses are scaled back. Candidates are evaluated in blocks of rows of one scratch
    buffer with row-wise reductions: this is most of the statistics pass when mse or emd is asked for.
    """
    abs_max = max(abs_max, 1e-8)
    qmax = 2 ** (bits - 1) - 1
    unit = (flat.ravel() / np.float32(abs_max)).astype(np.float32, copy=False)
    n = unit.size
    mean = float(unit.sum(dtype=np.float64)) / n
    std = float(unit.std(dtype=np.float64))
    scales = np.array([qmax / t for t in SEARCH_GRID], np.float32)[:, None]
    steps = np.array([t / qmax for t in SEARCH_GRID], np.float32)[:, None]
    rows = max(1, GRID_BLOCK_SIZE // n)
    buffer = np.empty((min(rows, SEARCH_GRID.shape[0]), n), np.float32)
    mse = np.empty(SEARCH_GRID.shape[0])
    emd = np.empty(SEARCH_GRID.shape[0])
    for first in range(0, SEARCH_GRID.shape[0], rows):
        block = slice(first, first + rows)
        dequant = buffer[: scales[block].shape[0]]
        np.multiply(unit, scales[block], out=dequant)
        np.rint(dequant, out=dequant)
        np.clip(dequant, -qmax - 1, qmax, out=dequant)
        dequant *= steps[block]
        dq_mean = dequant.sum(axis=1, dtype=np.float64) / n
        dq_square = _row_dots(dequant) / n
        dq_std = np.sqrt(np.maximum(dq_square - dq_mean**2, 0.0))
        emd[block] = np.abs(mean - dq_mean) + np.abs(std - dq_std)
        np.subtract(unit, dequant, out=dequant)  # now the error
        mse[block] = _row_dots(dequant) / n
    return mse * abs_max**2, emd * abs_max


def _row_dots(rows: np.ndarray) -> np.ndarray:
    """Each row's dot product with itself, by BLAS (einsum's float32 sums lose digits on 64k-element rows)."""
    return np.matmul(rows[:, None, :], rows[:, :, None])[:, 0, 0]


def statistics_fingerprint(
    model: onnx.ModelProto,
    batches: Iterable[Mapping[str, np.ndarray]],
    tensor_names: Sequence[str],
    activation_bits: int,
) -> str:
    """Cache key: model bytes, every batch (names, dtypes, shapes, bytes), the tensor list and the bit width."""
    digest = hashlib.sha256()
    digest.update(f"v{CACHE_FORMAT_VERSION};bits={activation_bits};".encode())
    _hash_model(digest, model)
    for name in tensor_names:
        digest.update(name.encode() + b"\0")
    for batch in batches:
        for key in sorted(batch):
            value = np.require(batch[key], requirements="C")
            digest.update(f"{key}|{value.dtype.str}|{value.shape};".encode())
            digest.update(value.tobytes())
        digest.update(b"\1")
    return digest.hexdigest()


def _hash_model(digest, model: onnx.ModelProto) -> None:
    if weights_layout(model) is WeightsLayout.INLINE:
        digest.update(model.SerializeToString(deterministic=True))
        return
    # Over protobuf's 2 GB limit a model cannot be serialized whole: hash it part by part.
    graph = model.graph
    for part in (
        *model.opset_import,
        *graph.input,
        *graph.output,
        *graph.node,
        *graph.initializer,
        *graph.sparse_initializer,
        *model.functions,
    ):
        digest.update(part.SerializeToString(deterministic=True))
        if isinstance(part, onnx.TensorProto) and is_on_disk(part):  # the reference names the file, not its bytes
            digest.update(memoryview(mapped(part)).cast("B"))


class StatisticsAccumulator:
    """Running statistics of T tensors over a stream of batches, with histogram snapshots at given batch counts."""

    def __init__(
        self,
        tensor_names: Sequence[str],
        activation_bits: int,
        prefixes: Iterable[int] = (),
        parts: frozenset[str] = ALL_PARTS,
    ) -> None:
        self.tensor_names = list(tensor_names)
        self.activation_bits = activation_bits
        self.parts = frozenset(parts)
        self.fields = BASE_FIELDS + (GRID_FIELDS if GRID in self.parts else ())
        self.prefixes = set(prefixes) if HISTOGRAM in self.parts else set()
        self.count = 0
        self.scalars: list[np.ndarray] = []  # per batch: [len(self.fields), T]
        tensors = len(self.tensor_names) if HISTOGRAM in self.parts else 0
        self.hist = np.zeros((tensors, FINE_BINS), np.int64)
        self.exponent = np.full(tensors, ZERO_EXPONENT, np.int64)
        self.snapshots: list[tuple[int, np.ndarray, np.ndarray]] = []  # (batch count, exponents, histograms)

    def add(self, values: Sequence[np.ndarray]) -> None:
        """One batch: values[i] is the activation of tensor_names[i]."""
        row = np.empty((len(self.fields), len(self.tensor_names)))
        for i, value in enumerate(values):
            stats = batch_statistics(value, self.activation_bits, self.parts)
            row[:, i] = [stats[name] for name in self.fields]
            if HISTOGRAM in self.parts:
                self._merge(i, stats["hist"], int(stats["hist_exponent"]))
        self.scalars.append(row)
        self.count += 1
        if self.count in self.prefixes:
            self._snapshot()

    def _merge(self, i: int, counts: np.ndarray, exponent: int) -> None:
        if exponent > self.exponent[i]:
            self.hist[i] = rebin_power_of_two(self.hist[i], int(self.exponent[i]), exponent)
            self.exponent[i] = exponent
        self.hist[i] += rebin_power_of_two(counts, exponent, int(self.exponent[i]))

    def _snapshot(self) -> None:
        self.snapshots.append((self.count, self.exponent.copy(), self.hist.copy()))

    def result(self) -> ActivationStatistics:
        t = len(self.tensor_names)
        if HISTOGRAM in self.parts and (not self.snapshots or self.snapshots[-1][0] != self.count):
            self._snapshot()
        scalars = dict(zip(self.fields, np.stack(self.scalars, axis=2)))  # [T, B] each
        missing = {name: np.empty((t, 0)) for name in BATCH_FIELDS if name not in scalars}
        if self.snapshots:
            counts, exponents, hists = zip(*self.snapshots)
            histograms = dict(
                hist_batches=np.array(counts, np.int64),
                hist_exponent=np.stack(exponents, axis=1),
                hist=np.stack(hists, axis=1),
            )
        else:
            histograms = dict(
                hist_batches=np.zeros(0, np.int64),
                hist_exponent=np.zeros((t, 0), np.int64),
                hist=np.zeros((t, 0, FINE_BINS), np.int64),
            )
        return ActivationStatistics(
            self.tensor_names, self.activation_bits, **scalars, **missing, **histograms, parts=self.parts
        )


def collect_statistics(
    model: onnx.ModelProto,
    batches: Iterable[Mapping[str, np.ndarray]],
    tensor_names: Sequence[str],
    batch_nums: int | None = None,
    activation_bits: int = 8,
    cache_dir: str | None = None,
    providers: Sequence[str] = ("CPUExecutionProvider",),
    prefixes: Iterable[int] = (),
    algorithms: Iterable[str] = tuple(ALGORITHM_PARTS),
    deadline: float | None = None,
) -> ActivationStatistics:
    """Run the model once over the calibration batches and return the statistics of tensor_names.

    `algorithms`: the range algorithms the statistics must serve; only the parts they read are collected.
    `prefixes`: the smaller batch counts whose histograms (hist, KL) are also kept, for prefix(n).
    With cache_dir, statistics are stored as <fingerprint>.npz and loaded on the next identical call;
    a cache file that is unreadable, malformed or lacks a part or a prefix is recomputed with the union of what
    it held and what is asked, and replaced.
    A re-iterable `batches` (list, DataLoader) is read twice when caching (hash, then run), so it
    must yield the same data in the same order; a one-shot iterator is buffered instead.
    Past `deadline` (a time.perf_counter() instant) no batch is added once MIN_BATCHES_AT_DEADLINE were; such
    statistics are not cached, since they are not those of the batches the key names.
    """
    tensor_names = list(dict.fromkeys(tensor_names))
    parts = parts_for(algorithms)
    prefixes = {int(p) for p in prefixes if p >= 1 and (batch_nums is None or p <= batch_nums)}
    if iter(batches) is batches:  # a one-shot iterator: keep the batches to hash and to run them
        batches = list(islice(batches, batch_nums)) if batch_nums else list(batches)
    cache_path = None
    if cache_dir is not None:
        key = statistics_fingerprint(model, islice(batches, batch_nums), tensor_names, activation_bits)
        cache_path = os.path.join(cache_dir, f"statistics_{key[:32]}.npz")
        cached = _read_cache(cache_path, tensor_names, activation_bits)
        if cached is not None and cached.covers(prefixes, parts):
            logger.info("loading calibration statistics from %s", cache_path)
            return cached
        if cached is not None:  # keep what the file had, add the missing parts and prefixes
            parts |= cached.parts
            prefixes |= set(cached.hist_batches.tolist())

    # the tensors become extra graph outputs of the session's copy of the graph; the caller's model is not copied
    session = create_session(model, HardwareTarget("calibration", tuple(providers), True), outputs=tensor_names)
    accumulator = StatisticsAccumulator(tensor_names, activation_bits, prefixes, parts)
    stopped = _calibrate(session, islice(batches, batch_nums), accumulator, _batch_count(batches, batch_nums), deadline)
    del session  # its weights (a copy, or the shared arrays of a large model) go before the statistics are built
    _check_count(accumulator.count, None if stopped else batch_nums)
    statistics = accumulator.result()
    if cache_path is not None and not stopped:
        os.makedirs(cache_dir, exist_ok=True)
        statistics.save(cache_path)
    return statistics


def _check_count(count: int, batch_nums: int | None) -> None:
    """Refuse calibration without a batch; warn when the data held fewer than batch_nums batches."""
    if count == 0:
        raise DataError("calibration data is empty: the dataloader yielded no batch")
    if batch_nums is not None and count < batch_nums:
        logger.warning("batch_nums=%d but the calibration data has only %d batches; using %d", batch_nums, count, count)


def _batch_count(batches: Iterable, batch_nums: int | None) -> int | None:
    """The number of calibration batches when known beforehand (for the progress bar's total)."""
    length = progress.known_length(batches)
    return batch_nums if length is None else min(length, batch_nums or length)


def _calibrate(
    session: ort.InferenceSession,
    batches: Iterable[Mapping[str, np.ndarray]],
    accumulator: StatisticsAccumulator,
    total: int | None,
    deadline: float | None = None,
) -> bool:
    """Run the session over the batches and add the activations of accumulator's tensors; True when the deadline
    stopped it before the batches ran out."""
    input_names = [i.name for i in session.get_inputs()]
    tensor_names = accumulator.tensor_names
    with progress.bar(batches, "calibration", total=total, unit="batch") as bar:
        for batch in bar:
            if (
                accumulator.count >= MIN_BATCHES_AT_DEADLINE
                and deadline is not None
                and time.perf_counter() >= deadline
            ):
                of = f" of {total}" if total is not None else ""
                logger.warning(
                    "calibration stopped at the time budget after %d%s batches; these statistics are not cached",
                    accumulator.count,
                    of,
                )
                return True
            feed = _checked_feed(batch, input_names, accumulator.count)
            # session.run with no names returns every graph output: nothing to calibrate (all skipped) asks for none
            accumulator.add(session.run(tensor_names, feed) if tensor_names else [])
    return False


def _read_cache(path: str, tensor_names: list[str], activation_bits: int) -> ActivationStatistics | None:
    """The cached statistics, or None when absent or not a valid file for these tensors (with a warning)."""
    if not os.path.exists(path):
        return None
    try:
        cached = ActivationStatistics.load(path)
    except CACHE_READ_ERRORS as error:
        logger.warning("ignoring unreadable calibration statistics cache %s (%s); recomputing", path, error)
        return None
    if cached.tensor_names != tensor_names or cached.activation_bits != activation_bits:
        logger.warning("calibration statistics cache %s is for other tensors or bits; recomputing", path)
        return None
    return cached


def statistics_from_arrays(
    arrays: Mapping[str, Sequence[np.ndarray]],
    activation_bits: int = 8,
    prefixes: Iterable[int] = (),
    algorithms: Iterable[str] = tuple(ALGORITHM_PARTS),
    deadline: float | None = None,
) -> ActivationStatistics:
    """Statistics of tensors given directly as per-batch arrays (same batch count for each tensor)."""
    names = list(arrays)
    accumulator = StatisticsAccumulator(names, activation_bits, prefixes, parts_for(algorithms))
    for values in zip(*(arrays[name] for name in names)):
        accumulator.add(values)
    return accumulator.result()


def _checked_feed(
    batch: Mapping[str, np.ndarray], input_names: Sequence[str], batch_index: int
) -> dict[str, np.ndarray]:
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


def channel_ranges(
    model: onnx.ModelProto,
    batches: Iterable[Mapping[str, np.ndarray]],
    axes: Mapping[str, int | None],
    providers: Sequence[str] = ("CPUExecutionProvider",),
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per-channel (min, max) of each tensor of `axes` along its channel axis, over the batches: a tensor whose
    channels span very different ranges (boxes in pixels next to scores in [0, 1]) loses its narrow channels to
    one per-tensor scale, which the scalar statistics cannot show. An axis of None means the layout's channel
    axis: 1 of a 4-d (NCHW) tensor, else the last (a detector's [batch, boxes, 4 + classes])."""
    names = list(axes)
    session = create_session(model, HardwareTarget("calibration", tuple(providers), True), outputs=names)
    input_names = [i.name for i in session.get_inputs()]
    ranges: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for count, batch in enumerate(batches):
        for name, value in zip(names, session.run(names, _checked_feed(batch, input_names, count))):
            low, high = _channel_min_max(np.asarray(value, dtype=np.float64), axes[name])
            if name in ranges:
                low, high = np.minimum(ranges[name][0], low), np.maximum(ranges[name][1], high)
            ranges[name] = (low, high)
    return ranges


def _channel_min_max(value: np.ndarray, axis: int | None) -> tuple[np.ndarray, np.ndarray]:
    value = np.atleast_1d(value)
    if axis is None:
        axis = 1 if value.ndim == 4 else -1
    channels = np.moveaxis(value, axis, 0).reshape(value.shape[axis], -1)
    return channels.min(axis=1), channels.max(axis=1)
