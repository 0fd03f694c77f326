"""Turn a user's dataloader into validated feed dicts for one model.

Accepted: any re-iterable (list, torch DataLoader, object with __iter__) or a function returning an iterable
(PaddleSlim's `reader_wrapper` style). Each batch is a dict {input_name: numpy array | torch tensor}, or a
tuple/list matched positionally to the model inputs. A key `label` (or `labels`), or one extra trailing
tuple element, is taken as the label for an optional label loss. Problems are reported on the batch where they
occur, naming the input and what the model expects.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx

from autocompress.config.global_section import DEFAULT_PREFETCH_BATCHES
from autocompress.data.prefetch import LoaderError, numbered, read_ahead
from autocompress.errors import DataError

log = logging.getLogger(__name__)

LABEL_KEYS = ("label", "labels")

#: Share of batches with NaN/Inf that may be skipped (with a warning, counted in the report) before it is an error.
DEFAULT_MAX_NONFINITE_FRACTION = 0.05


class NonFiniteBatchError(DataError):
    """A batch holds NaN/Inf values."""


@dataclass(frozen=True)
class InputSpec:
    name: str
    dtype: np.dtype
    shape: tuple[int | None, ...]  # None for a dynamic dim
    dim_params: tuple[str, ...] = ()  # each dim's symbolic name ('' where it has none)


def input_specs(model: onnx.ModelProto) -> list[InputSpec]:
    inits = {t.name for t in model.graph.initializer}
    specs = []
    for value in model.graph.input:
        if value.name in inits:
            continue
        ttype = value.type.tensor_type
        dtype = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(ttype.elem_type))
        shape = tuple(d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None for d in ttype.shape.dim)
        specs.append(InputSpec(value.name, dtype, shape, tuple(d.dim_param for d in ttype.shape.dim)))
    return specs


#: Symbolic dim names that mark the batch axis wherever it sits (a recurrent state [2, batch, H]).
_BATCH_DIM_NAMES = frozenset({"n", "b", "bs", "batch", "batch_size", "batchsize", "nbatch", "num_batch"})


def _declared_batch_axis(spec: InputSpec, array: np.ndarray) -> int | None:
    """The batch axis the input's declaration shows: a dynamic dim named like a batch, else a dynamic axis 0; an
    input declared without a shape takes axis 0 as well. None where the declaration shows none."""
    if len(spec.shape) != array.ndim:
        return 0 if array.ndim else None
    named = [axis for axis, name in enumerate(spec.dim_params) if name.lower() in _BATCH_DIM_NAMES]
    if named:
        return named[0]
    return 0 if spec.shape and spec.shape[0] is None else None


def batch_axes(feed: Mapping[str, np.ndarray], specs: list[InputSpec]) -> dict[str, int | None]:
    """Per input, the axis that holds the batch, or None for an input without one (a scalar, a fully static
    state), which is fed whole. Read from the declared dims; an input whose declaration does not tell (a state
    [2, ?, H]) takes its dynamic axis whose length in the data is the batch size the other inputs show."""
    axes = {spec.name: _declared_batch_axis(spec, feed[spec.name]) for spec in specs}
    sizes = {feed[name].shape[axis] for name, axis in axes.items() if axis is not None}
    if len(sizes) != 1 or sizes == {1}:
        return axes
    size = sizes.pop()
    for spec in specs:
        if axes[spec.name] is None and len(spec.shape) == feed[spec.name].ndim:
            dynamic = [axis for axis, dim in enumerate(spec.shape) if dim is None]
            axes[spec.name] = next((axis for axis in dynamic if feed[spec.name].shape[axis] == size), None)
    return axes


def batch_one(feed: Mapping[str, np.ndarray], specs: list[InputSpec]) -> dict[str, np.ndarray]:
    """The feed cut to its first sample along each input's batch axis (batch_axes); other inputs whole."""
    axes = batch_axes(feed, specs)
    return {
        name: value if axes[name] is None else np.require(np.take(value, [0], axis=axes[name]), requirements="C")
        for name, value in feed.items()
    }


def _to_numpy(value: Any) -> np.ndarray:
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    return np.asarray(value)


class BatchAdapter:
    """A re-iterable over `(feeds, label)` pairs, validated against the model's inputs."""

    def __init__(
        self,
        loader: Iterable | Callable[[], Iterable],
        specs: list[InputSpec],
        what: str = "train_dataloader",
        limit: int | None = None,
        max_nonfinite_fraction: float = DEFAULT_MAX_NONFINITE_FRACTION,
        prefetch: int = DEFAULT_PREFETCH_BATCHES,
    ):
        if loader is None:
            raise DataError(f"{what} is None; pass an iterable of {{input_name: array}} batches")
        self._source = loader
        self.specs = specs
        self.what = what
        self.limit = limit
        self.max_nonfinite_fraction = max_nonfinite_fraction
        if prefetch < 0:
            raise DataError(f"prefetch must be >= 0 batches, got {prefetch}")
        self.prefetch = prefetch
        #: indices of batches skipped because they held NaN/Inf
        self.skipped: set[int] = set()
        self._warned_cast = False
        if not callable(loader) and iter(loader) is loader:
            raise DataError(
                f"{what} is a one-shot iterator (e.g. a generator object); compression iterates the data several "
                "times. Pass a list, a torch DataLoader, or a function returning a new generator (reader_wrapper style)"
            )

    @property
    def input_names(self) -> list[str]:
        return [s.name for s in self.specs]

    def _iterable(self) -> Iterable:
        source = self._source
        if callable(source) and not hasattr(source, "__iter__"):
            source = source()
        return source

    def _raw(self) -> Iterator[Any]:
        """The user's batches, read `prefetch` ahead; an exception inside their loader becomes a DataError naming
        the batch where it happened."""
        iterator = iter(self._iterable())
        pairs = read_ahead(iterator, self.prefetch) if self.prefetch else numbered(iterator)
        try:
            for _, batch in pairs:
                yield batch
        except LoaderError as failure:
            error = failure.error
            raise DataError(f"{self.what} raised {type(error).__name__} at batch {failure.index}: {error}") from error
        finally:
            pairs.close()

    def __iter__(self) -> Iterator[tuple[dict[str, np.ndarray], np.ndarray | None]]:
        count = skipped = 0
        with contextlib.closing(self._raw()) as raw:  # stopping early stops the read-ahead at once
            for index, batch in enumerate(raw):
                if self.limit is not None and count >= self.limit:
                    break
                try:
                    converted = self.convert(batch, index)
                except NonFiniteBatchError as exc:
                    if index not in self.skipped:
                        log.warning("%s; the batch is skipped", exc)
                        self.skipped.add(index)
                    skipped += 1
                    continue
                yield converted
                count += 1
        if count == 0 and skipped:
            raise DataError(
                f"{self.what} yielded no usable batch ({skipped} batch(es) skipped for NaN/Inf); it must yield at "
                "least one finite batch"
            )
        if count == 0:
            raise DataError(f"{self.what} yielded no batches; it must yield at least one")
        if skipped / (count + skipped) > self.max_nonfinite_fraction:
            raise DataError(
                f"{self.what}: {skipped} of {count + skipped} batches hold NaN/Inf, more than the allowed "
                f"{self.max_nonfinite_fraction:.0%}; clean the data before compression"
            )

    def feeds(self) -> FeedView:
        """A re-iterable over the feed dicts alone (calibration needs no labels)."""
        return FeedView(self)

    def first(self) -> tuple[dict[str, np.ndarray], np.ndarray | None]:
        """The first usable batch, validated: emptiness is known by reading one batch, never by a full pass, so an
        endless loader works and a fault shows before any long work."""
        return next(iter(self))  # an empty loader raises DataError inside __iter__, never StopIteration

    def __len__(self) -> int:
        """The loader's own len() (within `limit`), when it has one. Counting by reading would cost a pass over the
        data and never end for an endless loader, so without one this is a TypeError and callers that need the
        number count as far as they need."""
        source = self._source
        if not hasattr(source, "__len__"):
            raise TypeError(f"{self.what} ({type(source).__name__}) has no len(); its length is known only by reading")
        total = len(source)
        return total if self.limit is None else min(self.limit, total)

    def __bool__(self) -> bool:
        """An adapter always stands for a given loader; whether it yields anything is known only by reading."""
        return True

    def convert(self, batch: Any, index: int) -> tuple[dict[str, np.ndarray], np.ndarray | None]:
        names = self.input_names
        label = None
        if isinstance(batch, Mapping):
            unknown = [k for k in batch if k not in names and k not in LABEL_KEYS]
            if unknown:
                raise DataError(
                    f"{self.what} batch {index} has key(s) {unknown} that match no model input; the model's inputs "
                    f"are {names} (plus optional 'label')"
                )
            missing = [n for n in names if n not in batch]
            if missing:
                raise DataError(f"{self.what} batch {index} lacks model input(s) {missing}; it has keys {list(batch)}")
            raw = {n: batch[n] for n in names}
            for key in LABEL_KEYS:
                if key in batch:
                    label = _to_numpy(batch[key])
        elif isinstance(batch, (list, tuple)):
            if len(batch) not in (len(names), len(names) + 1):
                raise DataError(
                    f"{self.what} batch {index} is a sequence of {len(batch)} items; the model has {len(names)} "
                    f"input(s) {names} (one more item is read as the label)"
                )
            raw = dict(zip(names, batch))
            if len(batch) == len(names) + 1:
                label = _to_numpy(batch[-1])
        elif len(names) == 1 and (isinstance(batch, np.ndarray) or hasattr(batch, "detach")):
            raw = {names[0]: batch}
        else:
            raise DataError(
                f"{self.what} batch {index} is a {type(batch).__name__}; yield dicts {{input_name: array}} with "
                f"input names {names}, or tuples in that order"
            )
        feeds = {spec.name: self._check(spec, _to_numpy(raw[spec.name]), index) for spec in self.specs}
        return feeds, label

    def _check(self, spec: InputSpec, array: np.ndarray, index: int) -> np.ndarray:
        where = f"{self.what} batch {index}, input {spec.name!r}"
        if array.dtype != spec.dtype:
            if np.issubdtype(array.dtype, np.floating) and np.issubdtype(spec.dtype, np.floating):
                if not self._warned_cast:
                    log.warning("%s: casting %s data to the model's %s", where, array.dtype, spec.dtype)
                    self._warned_cast = True
                array = array.astype(spec.dtype)
            else:
                raise DataError(f"{where} has dtype {array.dtype}; the model expects {spec.dtype}")
        if spec.shape and array.ndim != len(spec.shape):
            raise DataError(
                f"{where} has shape {list(array.shape)} (rank {array.ndim}); the model expects rank {len(spec.shape)} "
                f"{[d if d is not None else '?' for d in spec.shape]} (did you forget the batch dimension?)"
            )
        for axis, (got, want) in enumerate(zip(array.shape, spec.shape)):
            if want is not None and got != want:
                raise DataError(
                    f"{where} has shape {list(array.shape)}; dim {axis} must be {want} "
                    f"(model expects {[d if d is not None else '?' for d in spec.shape]})"
                )
        if np.issubdtype(array.dtype, np.floating) and not np.isfinite(array).all():
            bad = int(np.size(array) - np.isfinite(array).sum())
            raise NonFiniteBatchError(f"{where} contains {bad} NaN/Inf value(s)")
        return np.require(array, requirements="C")


class FeedView:
    """Re-iterable view of a BatchAdapter yielding only the feed dicts."""

    def __init__(self, adapter: BatchAdapter):
        self.adapter = adapter

    def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
        for feed, _ in self.adapter:
            yield feed
