"""Models over protobuf's 2 GB limit: a stub copy that holds the graph but not the weight bytes.

Such a model cannot be serialized, and onnx's checker, shape inference and ONNX Runtime all take a serialized
model. The stub copy is small: every large initializer becomes an external-data reference, either to an empty
placeholder (the checker and shape inference need dims only) or to a file the weights are written to (ORT). The
caller's model is only read: clearing and re-setting a tensor's bytes would grow its arena by the model's size.
"""

from __future__ import annotations

import contextlib
import enum
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import BinaryIO

import onnx
from google.protobuf.message import Message
from onnx import numpy_helper
from onnx.external_data_helper import uses_external_data

from autocompress.graph.external import is_on_disk, mapped
from autocompress.graph.load import model_tensors, read_onnx_header

PROTOBUF_LIMIT = 2**31 - 1
#: Initializers at least this large (serialized bytes) become stubs; small ones (shapes, axes) stay inline, so
#: shape inference still reads their values.
STUB_THRESHOLD = 1024
#: External data offsets are aligned so ORT can map the file instead of reading it.
_ALIGN = 64 * 1024


class WeightsLayout(enum.Enum):
    """How a model's weights are held, which decides how it is serialized, checked and run: decided once by
    weights_layout where a model is loaded or a pass makes one, and handed on as a value.

    INLINE: the model serializes as one protobuf (ORT loads its bytes, onnx checks and infers it as it is).
    EXTERNAL: it is over protobuf's 2 GB limit or keeps weights on disk (graph.external); it is serialized only as a
    stub copy (stub_copy) whose large initializers point to external data.
    """

    INLINE = "inline"
    EXTERNAL = "external"


def weights_layout(model: onnx.ModelProto) -> WeightsLayout:
    """The layout of `model`'s weights now; cheap (no tensor is encoded), and exact where a pass made a new model."""
    return WeightsLayout.EXTERNAL if exceeds_protobuf_limit(model) else WeightsLayout.INLINE


def exceeds_protobuf_limit(model: onnx.ModelProto) -> bool:
    """Whether the model is too large to serialize as one protobuf (2 GB).

    Decided on size_bound, not ByteSize(): python protobuf (upb) computes ByteSize() by encoding the message, which
    for a 2 GB model holds about 1.5x its size for seconds before failing.

    A model with weights left on disk (graph.external) counts as over it too: serialized whole, it would point to
    the user's files, so it takes the same stub-copy routes.
    """
    return any(is_on_disk(t) for t in model.graph.initializer) or size_bound(model) >= PROTOBUF_LIMIT


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
    """Bytes of the serialized model, summed over its parts beyond 2 GB (one tensor encoded at a time; one left on
    disk counted as if inline)."""
    if weights_layout(model) is WeightsLayout.EXTERNAL:
        return sum(
            _tensor_size_bound(part) if isinstance(part, onnx.TensorProto) and is_on_disk(part) else part.ByteSize()
            for part in serialized_parts(model)
        )
    return model.ByteSize()


def _header(tensor: onnx.TensorProto) -> onnx.TensorProto:
    """The tensor without its raw_data, copied field by field: reading raw_data (or ListFields) copies the bytes."""
    header = onnx.TensorProto()
    for field in tensor.DESCRIPTOR.fields:
        if field.name == "raw_data":
            continue
        value = getattr(tensor, field.name)
        if hasattr(value, "extend"):  # repeated field
            getattr(header, field.name).extend(value)
        elif tensor.HasField(field.name):
            if isinstance(value, Message):
                getattr(header, field.name).CopyFrom(value)
            else:
                setattr(header, field.name, value)
    return header


def _tensor_size_bound(tensor: onnx.TensorProto) -> int:
    """At least the tensor's serialized size (inline, for weights left on disk); for raw_data and those, from its
    type and dims, without reading the bytes."""
    on_disk = is_on_disk(tensor)
    if not (on_disk or tensor.HasField("raw_data")):
        return tensor.ByteSize()
    try:
        itemsize = onnx.helper.tensor_dtype_to_np_dtype(tensor.data_type).itemsize  # never below the stored size
    except (KeyError, TypeError, ValueError):
        return tensor.ByteSize()
    count = 1
    for dim in tensor.dims:
        count *= max(dim, 0)
    header = (
        onnx.TensorProto(name=tensor.name, dims=tensor.dims, data_type=tensor.data_type) if on_disk else _header(tensor)
    )
    return header.ByteSize() + count * itemsize + 11  # raw_data's tag and length varint


def size_bound(model: onnx.ModelProto) -> int:
    """An upper bound of the model's serialized size that encodes no large tensor (exact up to a few bytes per
    initializer for tensors whose raw_data matches their type and dims)."""
    return without_initializers(model).ByteSize() + sum(_tensor_size_bound(t) for t in model.graph.initializer)


def _stub(tensor: onnx.TensorProto, location: str, offset: int, length: int) -> onnx.TensorProto:
    stub = onnx.TensorProto(name=tensor.name, dims=tensor.dims, data_type=tensor.data_type)
    stub.data_location = onnx.TensorProto.EXTERNAL
    for key, value in (("location", location), ("offset", str(offset)), ("length", str(length))):
        entry = stub.external_data.add()
        entry.key, entry.value = key, value
    return stub


def is_stubbed(tensor: onnx.TensorProto) -> bool:
    """Whether stub_copy replaces this top-level initializer by an external-data reference (always for one left on
    disk, whose reference names the user's file)."""
    return (
        is_on_disk(tensor)
        or tensor.data_type != onnx.TensorProto.STRING
        and _tensor_size_bound(tensor) >= STUB_THRESHOLD
    )


def _layout(tensor: onnx.TensorProto) -> bytes | memoryview:
    """The tensor's bytes in external-data layout: raw_data as it is, a mapped file's pages, typed fields
    (float_data, ...) through numpy."""
    if is_on_disk(tensor):
        return memoryview(mapped(tensor)).cast("B")
    return tensor.raw_data if tensor.HasField("raw_data") else numpy_helper.to_array(tensor).tobytes()


def stub_copy(model: onnx.ModelProto, location: str, weights: BinaryIO | None = None) -> onnx.ModelProto:
    """A copy of `model` whose large top-level initializers point to external data at `location`.

    With `weights`, their bytes are written to it (one tensor in memory at a time) and the references are valid;
    without, they all point to offset 0, length 0 of a placeholder.
    """
    stubbed = without_initializers(model)
    for tensor in model.graph.initializer:
        if not is_stubbed(tensor):
            stubbed.graph.initializer.add().CopyFrom(tensor)
            continue
        offset = length = 0
        if weights is not None:
            offset = -(-weights.tell() // _ALIGN) * _ALIGN
            weights.seek(offset)
            length = weights.write(_layout(tensor))
        stubbed.graph.initializer.append(_stub(tensor, location, offset, length))
    return stubbed


def stores_external_data(path: Path) -> bool:
    """Whether the ONNX file at `path` keeps tensor data in external files (which are not read)."""
    return any(uses_external_data(tensor) for tensor in model_tensors(read_onnx_header(path)))


def save_external(
    model: onnx.ModelProto, path: Path, with_weights: bool = True, outputs: Sequence[onnx.ValueInfoProto] = ()
) -> None:
    """`model` as `path` + `path`.data (external data next to it); the model is only read.

    with_weights=False writes an empty data file: enough for onnx's checker and shape inference by path.
    `outputs` are added to the saved graph's outputs.
    """
    location = path.name + ".data"
    with open(path.with_name(location), "wb") as weights:
        stubbed = stub_copy(model, location, weights if with_weights else None)
    stubbed.graph.output.extend(outputs)
    path.write_bytes(stubbed.SerializeToString())


def weightless(model: onnx.ModelProto) -> onnx.ModelProto:
    """The stub copy with no data behind its stubs: for shape and type inference, which read dims only."""
    return stub_copy(model, "weightless")


def copy_model(model: onnx.ModelProto) -> onnx.ModelProto:
    """A deep copy that works beyond 2 GB (a serialize/parse round trip does not)."""
    copied = onnx.ModelProto()
    copied.CopyFrom(model)
    return copied


def compacted(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy holding only what `model` holds now: a message keeps the memory of tensors removed from it until it is
    freed itself, so a model whose weights were replaced still costs their size."""
    compact = without_initializers(model)
    compact.graph.initializer.extend(model.graph.initializer)
    return compact


@contextlib.contextmanager
def saved_with_external_data(
    model: onnx.ModelProto, with_weights: bool = True, outputs: Sequence[onnx.ValueInfoProto] = ()
) -> Iterator[Path]:
    """`model` saved by save_external to a temporary model.onnx, removed on exit."""
    with tempfile.TemporaryDirectory(prefix="autocompress-large-") as tmp:
        path = Path(tmp) / "model.onnx"
        save_external(model, path, with_weights, outputs)
        yield path
