"""Models over protobuf's 2 GB limit: a stub copy that holds the graph but not the weight bytes.

Such a model cannot be serialized, and onnx's checker, shape inference and ONNX Runtime all take a serialized
model. The stub copy is small: every large initializer becomes an external-data reference, either to an empty
placeholder (the checker and shape inference need dims only) or to a file the weights are written to (ORT). The
caller's model is only read: clearing and re-setting a tensor's bytes would grow its arena by the model's size.
"""

from __future__ import annotations

import contextlib
import tempfile
from pathlib import Path
from typing import BinaryIO, Iterator

import onnx
from google.protobuf.message import EncodeError, Message
from onnx import numpy_helper
from onnx.external_data_helper import uses_external_data

from autocompress.graph.load import model_tensors

PROTOBUF_LIMIT = 2**31 - 1
#: Initializers at least this large (serialized bytes) become stubs; small ones (shapes, axes) stay inline, so
#: shape inference still reads their values.
STUB_THRESHOLD = 1024
#: External data offsets are aligned so ORT can map the file instead of reading it.
_ALIGN = 64 * 1024


def exceeds_protobuf_limit(model: onnx.ModelProto) -> bool:
    """Whether the model is too large to serialize as one protobuf (2 GB); ByteSize() itself fails beyond it."""
    try:
        return model.ByteSize() >= PROTOBUF_LIMIT
    except EncodeError:
        return True


def _copy_fields(source: Message, target: Message, skip: str) -> None:
    for field, value in source.ListFields():
        if field.name == skip:
            continue
        if hasattr(value, "extend"):  # repeated field
            getattr(target, field.name).extend(value)
        elif isinstance(value, Message):
            getattr(target, field.name).CopyFrom(value)
        else:
            setattr(target, field.name, value)


def without_initializers(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of everything but the graph's initializers (small for any model whose weights are initializers)."""
    rest = onnx.ModelProto()
    _copy_fields(model, rest, skip="graph")
    _copy_fields(model.graph, rest.graph, skip="initializer")
    return rest


def serialized_parts(model: onnx.ModelProto) -> Iterator[onnx.ModelProto | onnx.TensorProto]:
    """The model as pieces that each serialize under 2 GB: the rest of the model, then every initializer."""
    yield without_initializers(model)
    yield from model.graph.initializer


def serialized_size(model: onnx.ModelProto) -> int:
    """Bytes of the serialized model, summed over its parts beyond 2 GB where ByteSize() fails."""
    try:
        return model.ByteSize()
    except EncodeError:
        return sum(part.ByteSize() for part in serialized_parts(model))


def _stub(tensor: onnx.TensorProto, location: str, offset: int, length: int) -> onnx.TensorProto:
    stub = onnx.TensorProto(name=tensor.name, dims=tensor.dims, data_type=tensor.data_type)
    stub.data_location = onnx.TensorProto.EXTERNAL
    for key, value in (("location", location), ("offset", str(offset)), ("length", str(length))):
        entry = stub.external_data.add()
        entry.key, entry.value = key, value
    return stub


def stub_copy(model: onnx.ModelProto, location: str, weights: BinaryIO | None = None) -> onnx.ModelProto:
    """A copy of `model` whose large top-level initializers point to external data at `location`.

    With `weights`, their bytes are written to it (one tensor in memory at a time) and the references are valid;
    without, they all point to offset 0, length 0 of a placeholder.
    """
    stubbed = without_initializers(model)
    for tensor in model.graph.initializer:
        if tensor.ByteSize() < STUB_THRESHOLD or tensor.data_type == onnx.TensorProto.STRING:
            stubbed.graph.initializer.add().CopyFrom(tensor)
            continue
        offset = length = 0
        if weights is not None:
            offset = -(-weights.tell() // _ALIGN) * _ALIGN
            weights.seek(offset)
            # raw_data is already the external-data layout; typed fields (float_data, ...) go through numpy
            data = tensor.raw_data if tensor.HasField("raw_data") else numpy_helper.to_array(tensor).tobytes()
            length = weights.write(data)
            del data
        stubbed.graph.initializer.append(_stub(tensor, location, offset, length))
    return stubbed


def stores_external_data(path: Path) -> bool:
    """Whether the ONNX file at `path` keeps tensor data in external files (which are not read)."""
    header = onnx.load(str(path), load_external_data=False)
    return any(uses_external_data(tensor) for tensor in model_tensors(header))


def save_external(model: onnx.ModelProto, path: Path, with_weights: bool = True) -> None:
    """`model` as `path` + `path`.data (external data next to it); the model is only read.

    with_weights=False writes an empty data file: enough for onnx's checker and shape inference by path.
    """
    location = path.name + ".data"
    with open(path.with_name(location), "wb") as weights:
        stubbed = stub_copy(model, location, weights if with_weights else None)
    path.write_bytes(stubbed.SerializeToString())


def weightless(model: onnx.ModelProto) -> onnx.ModelProto:
    """The stub copy with no data behind its stubs: for shape and type inference, which read dims only."""
    return stub_copy(model, "weightless")


def copy_model(model: onnx.ModelProto) -> onnx.ModelProto:
    """A deep copy that works beyond 2 GB (a serialize/parse round trip does not)."""
    copied = onnx.ModelProto()
    copied.CopyFrom(model)
    return copied


@contextlib.contextmanager
def saved_with_external_data(model: onnx.ModelProto, with_weights: bool = True) -> Iterator[Path]:
    """`model` saved by save_external to a temporary model.onnx, removed on exit."""
    with tempfile.TemporaryDirectory(prefix="autocompress-large-") as tmp:
        path = Path(tmp) / "model.onnx"
        save_external(model, path, with_weights)
        yield path
