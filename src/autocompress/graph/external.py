"""Weights left in the user's external-data files: a loaded model keeps references, arrays map the files.

A model over 2 GB held as a python protobuf holds every weight's bytes, and any array made of them is a second
copy (protobuf cannot lend its bytes). Left on disk, a weight exists once, as file-backed pages of a read-only
np.memmap. The locations are made absolute in the in-memory model only (after load.check_external_data_paths
has confined them to the model's folder), so the model can be read from anywhere; the user's files are never
written, and saving writes the weights anew (graph.large.save_external).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper
from onnx.external_data_helper import uses_external_data

from autocompress.errors import ModelLoadError


def _info(tensor: onnx.TensorProto) -> dict[str, str]:
    return {entry.key: entry.value for entry in tensor.external_data}  # the last entry wins, as in onnx


def _set_location(tensor: onnx.TensorProto, location: str) -> None:
    for entry in tensor.external_data:
        if entry.key == "location":
            entry.value = location


def anchor_external_data(model: onnx.ModelProto, base_dir: Path) -> None:
    """Make every external-data location of `model`'s initializers absolute, relative to `base_dir`."""
    base = base_dir.resolve()
    for tensor in model.graph.initializer:
        if uses_external_data(tensor):
            _set_location(tensor, str(base / _info(tensor)["location"]))


def is_on_disk(tensor: onnx.TensorProto) -> bool:
    """Whether the tensor's bytes are in an external file that tensor_array maps."""
    return uses_external_data(tensor) and os.path.isabs(_info(tensor).get("location", ""))


def mapped(tensor: onnx.TensorProto) -> np.ndarray:
    """The external data of an anchored tensor as a read-only view of its file mapped, shaped by its dims."""
    info = _info(tensor)
    location = info["location"]
    try:
        dtype = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(tensor.data_type))
    except (KeyError, TypeError, ValueError):
        raise ModelLoadError(
            f"tensor {tensor.name!r}: external data of type {tensor.data_type} cannot be mapped"
        ) from None
    if tensor.data_type == onnx.TensorProto.STRING or dtype.hasobject:
        raise ModelLoadError(f"tensor {tensor.name!r}: string tensors cannot be mapped from external data")
    dims = tuple(tensor.dims)
    count = int(np.prod(dims, dtype=np.int64))
    offset = int(info.get("offset", 0))
    length = int(info.get("length", count * dtype.itemsize))
    if length != count * dtype.itemsize:
        raise ModelLoadError(
            f"tensor {tensor.name!r}: external data length {length} does not match dims {list(dims)} of {dtype}"
        )
    try:
        size = os.path.getsize(location)
    except OSError as exc:
        raise ModelLoadError(f"tensor {tensor.name!r}: external data file {location!r} cannot be read: {exc}") from None
    if offset < 0 or offset + length > size:
        raise ModelLoadError(
            f"tensor {tensor.name!r}: external data [{offset}, {offset + length}) lies beyond {location!r} ({size} bytes)"
        )
    if count == 0:
        return np.zeros(dims, dtype)
    # A plain ndarray view (the mapping lives on as its base): results of numpy operations are no memmaps.
    flat = np.memmap(location, dtype=dtype.newbyteorder("<"), mode="r", offset=offset, shape=(count,))
    return flat.view(np.ndarray).reshape(dims)


def tensor_array(tensor: onnx.TensorProto) -> np.ndarray:
    """The tensor's values: mapped from disk for an anchored external tensor, else numpy_helper.to_array."""
    return mapped(tensor) if is_on_disk(tensor) else numpy_helper.to_array(tensor)
