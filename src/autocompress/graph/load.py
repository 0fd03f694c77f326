"""Find and load the user's model: an ONNX file, or a Paddle inference model converted with paddle2onnx.

The user's files are only read. External-data locations are checked before onnx reads them, so a crafted
model cannot make us read files outside its own directory.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnx
from onnx.external_data_helper import uses_external_data

from autocompress.errors import ModelLoadError
from autocompress.graph.external import anchor_external_data, mapped

log = logging.getLogger(__name__)

PADDLE_MODEL_SUFFIXES = (".pdmodel", ".json")
#: External data at least this large (protobuf's 2 GB limit) stays on disk when loaded: see graph.external.
LAZY_EXTERNAL_BYTES = 2**31 - 1


def resolve_model_files(
    model_dir: str | os.PathLike, model_filename: str | None = None, params_filename: str | None = None
) -> tuple[str, Path, Path | None]:
    """Return (format, model_path, params_path) where format is 'onnx' or 'paddle'."""
    root = Path(model_dir)
    if root.is_file():
        if model_filename is not None:
            raise ModelLoadError(
                f"model_dir {str(root)!r} is a file; set model_filename only when model_dir is a folder"
            )
        model_path = root
        root = root.parent
    elif root.is_dir():
        if model_filename is None:
            onnx_files = sorted(root.glob("*.onnx"))
            paddle_files = sorted(p for s in PADDLE_MODEL_SUFFIXES for p in root.glob(f"*{s}") if s != ".json")
            paddle_files += sorted(p for p in root.glob("*.json") if p.with_suffix(".pdiparams").exists())
            candidates = onnx_files or paddle_files
            if len(candidates) != 1:
                found = [p.name for p in onnx_files + paddle_files]
                raise ModelLoadError(
                    f"cannot tell which model to load in {str(root)!r}: found {found or 'no .onnx/.pdmodel file'}; "
                    "set model_filename"
                )
            model_path = candidates[0]
        else:
            model_path = root / model_filename
    else:
        raise ModelLoadError(f"model_dir {str(root)!r} does not exist")
    if not model_path.is_file():
        raise ModelLoadError(f"model file {str(model_path)!r} does not exist")

    if model_path.suffix in PADDLE_MODEL_SUFFIXES:
        params = root / params_filename if params_filename else model_path.with_suffix(".pdiparams")
        if not params.is_file():
            raise ModelLoadError(f"Paddle params file {str(params)!r} does not exist; set params_filename")
        return "paddle", model_path, params
    if params_filename:
        log.warning("params_filename %r is ignored for an ONNX model", params_filename)
    return "onnx", model_path, None


def _graph_tensors(graph: onnx.GraphProto | onnx.FunctionProto) -> Iterator[onnx.TensorProto]:
    """Every tensor a graph holds: initializers, sparse tensors and node attributes, down into If/Loop/Scan bodies.

    Wider than onnx's own walk (which skips sparse tensors and graphs whose attribute type is mislabelled), so
    that no tensor that names external data escapes the checks below.
    """
    sparse: list[onnx.SparseTensorProto] = []
    if isinstance(graph, onnx.GraphProto):
        yield from graph.initializer
        sparse.extend(graph.sparse_initializer)
    for node in graph.node:
        for attr in node.attribute:
            if attr.HasField("t"):
                yield attr.t
            yield from attr.tensors
            if attr.HasField("sparse_tensor"):
                sparse.append(attr.sparse_tensor)
            sparse.extend(attr.sparse_tensors)
            if attr.HasField("g"):
                yield from _graph_tensors(attr.g)
            for subgraph in attr.graphs:
                yield from _graph_tensors(subgraph)
    for tensor in sparse:
        yield tensor.values
        yield tensor.indices


def model_tensors(model: onnx.ModelProto) -> Iterator[onnx.TensorProto]:
    yield from _graph_tensors(model.graph)
    for function in model.functions:
        yield from _graph_tensors(function)


def check_external_data_paths(model: onnx.ModelProto, base_dir: Path) -> None:
    """Refuse external-data locations that leave the model's folder (absolute, '..', symlinks) or are no file."""
    base = base_dir.resolve()
    for tensor in model_tensors(model):
        if not uses_external_data(tensor):
            continue
        # The last entry wins, as in onnx's ExternalDataInfo; read here without it, which fails on odd keys.
        location = {entry.key: entry.value for entry in tensor.external_data}.get("location", "")
        if not location or "\x00" in location:
            raise ModelLoadError(f"tensor {tensor.name!r} has an invalid external data location {location!r}")
        if os.path.isabs(location) or ".." in Path(location).parts:
            raise ModelLoadError(
                f"tensor {tensor.name!r} points to external data {location!r} outside the model folder; refused"
            )
        try:
            target = (base / location).resolve()
            is_file = target.is_file()
        except (OSError, RuntimeError) as exc:  # name too long, symlink loop
            raise ModelLoadError(
                f"tensor {tensor.name!r}: external data {location[:200]!r} cannot be opened: {exc}"
            ) from None
        if base not in target.parents:
            raise ModelLoadError(
                f"tensor {tensor.name!r}: external data {location!r} resolves outside the model folder; refused"
            )
        if not is_file:
            raise ModelLoadError(
                f"tensor {tensor.name!r}: external data file {str(target)!r} is missing or not a regular file"
            )


def _leaves_weights_on_disk(model: onnx.ModelProto, base_dir: Path, lazy_bytes: int) -> bool:
    """Anchor the external data of `model` and check every tensor maps, when it is at least `lazy_bytes` and all of
    it belongs to top-level initializers of plain numeric types (else onnx reads it all, as for smaller models)."""
    external = [t for t in model.graph.initializer if uses_external_data(t)]
    elsewhere = sum(uses_external_data(t) for t in model_tensors(model)) - len(external)
    if not external or elsewhere or any(t.data_type == onnx.TensorProto.STRING for t in external):
        return False
    files = {(base_dir / e.value).resolve() for t in external for e in t.external_data if e.key == "location"}
    if sum(f.stat().st_size for f in files) < lazy_bytes:
        return False
    anchor_external_data(model, base_dir)
    for tensor in external:
        mapped(tensor)  # checks type, length and bounds now; maps nothing for long
    return True


def read_onnx_header(path: Path) -> onnx.ModelProto:
    """The model at `path` without its external data: the one place an ONNX file is parsed, so that a truncated or
    foreign file is a ModelLoadError wherever it is read."""
    try:
        return onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # noqa: BLE001 - onnx raises DecodeError, OSError and others for corrupt or unreadable files
        raise ModelLoadError(
            f"{str(path)!r} is not a readable ONNX model ({type(exc).__name__}: {exc}); a complete .onnx file "
            "(an ONNX ModelProto) is expected"
        ) from None


def load_onnx(path: Path, lazy_bytes: int | None = None) -> onnx.ModelProto:
    """The model at `path`; external data of at least `lazy_bytes` (LAZY_EXTERNAL_BYTES) stays in its files."""
    model = read_onnx_header(path)
    check_external_data_paths(model, path.parent)
    if _leaves_weights_on_disk(model, path.parent, LAZY_EXTERNAL_BYTES if lazy_bytes is None else lazy_bytes):
        if not model.graph.node:
            raise ModelLoadError(f"{str(path)!r} holds no graph nodes; is it an ONNX model?")
        return model
    try:
        onnx.load_external_data_for_model(model, str(path.parent))
    except Exception as exc:  # noqa: BLE001 - onnx raises OSError, ValueError and others for missing or short data files
        raise ModelLoadError(f"cannot read the external data of {str(path)!r}: {exc}") from None
    unread = [t.name for t in model_tensors(model) if uses_external_data(t)]
    if unread:
        # Left external, they would later be read relative to whatever folder the runtime picks.
        raise ModelLoadError(f"{str(path)!r}: external data of tensors {unread[:5]} is in a place onnx does not load")
    if not model.graph.node:
        raise ModelLoadError(f"{str(path)!r} holds no graph nodes; is it an ONNX model?")
    return model


def repair_scalar_concat(model: onnx.ModelProto) -> onnx.ModelProto:
    """Unsqueeze rank-0 inputs of Concat nodes.

    paddle2onnx 2.x with Paddle 3 emits Concat over squeezed scalars when it rebuilds reshape targets; ONNX
    requires rank >= 1, so ONNX Runtime refuses the model. Ranks come from onnx shape inference.
    """
    inferred = onnx.shape_inference.infer_shapes(model)
    ranks = {
        v.name: len(v.type.tensor_type.shape.dim)
        for v in list(inferred.graph.value_info) + list(inferred.graph.input)
        if v.type.tensor_type.HasField("shape")
    }
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 13)
    new_nodes = []
    for node in model.graph.node:
        if node.op_type == "Concat":
            for i, name in enumerate(node.input):
                if ranks.get(name) == 0:
                    out = f"{name}__as_1d"
                    if opset >= 13:
                        axes = f"{name}__axes"
                        model.graph.initializer.append(onnx.numpy_helper.from_array(np.array([0], np.int64), axes))
                        new_nodes.append(
                            onnx.helper.make_node("Unsqueeze", [name, axes], [out], name=f"{out}_unsqueeze")
                        )
                    else:
                        new_nodes.append(
                            onnx.helper.make_node("Unsqueeze", [name], [out], axes=[0], name=f"{out}_unsqueeze")
                        )
                    node.input[i] = out
        new_nodes.append(node)
    del model.graph.node[:]
    model.graph.node.extend(new_nodes)
    return model


def convert_paddle(model_path: Path, params_path: Path, opset: int = 13) -> onnx.ModelProto:
    """Convert a Paddle inference model with paddle2onnx (the `[paddle]` extra)."""
    try:
        import paddle2onnx  # noqa: PLC0415 - optional dependency
    except ImportError:
        raise ModelLoadError(
            f"{model_path.name} is a Paddle inference model; converting it needs paddle2onnx. "
            "Install the extra: pip install 'autocompress[paddle]'"
        ) from None
    with tempfile.TemporaryDirectory(prefix="autocompress-p2o-") as tmp:
        out = Path(tmp) / "model.onnx"
        try:
            paddle2onnx.export(
                str(model_path), str(params_path), str(out), opset_version=opset, enable_onnx_checker=True
            )
        except (Exception, SystemExit) as exc:  # noqa: BLE001 - paddle2onnx calls sys.exit on some failures
            raise ModelLoadError(f"paddle2onnx could not convert {str(model_path)!r}: {exc}") from None
        return repair_scalar_concat(load_onnx(out))


def load_model(
    model_dir: str | os.PathLike, model_filename: str | None = None, params_filename: str | None = None
) -> onnx.ModelProto:
    """Load the user's model as an ONNX ModelProto, converting Paddle models on the fly."""
    kind, model_path, params_path = resolve_model_files(model_dir, model_filename, params_filename)
    if kind == "paddle":
        return convert_paddle(model_path, params_path)
    return load_onnx(model_path)
