"""Why ONNX Runtime refused to load a model, told in the model's own terms: the node, its op, domain and input type.

ORT reports a custom-domain op, an op without a kernel for its input type, or a type the op does not accept as an
exception whose text names only some of these; the rest is looked up in the model.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import onnx
from onnxruntime.capi import onnxruntime_pybind11_state as ort_state

from autocompress.errors import ModelLoadError
from autocompress.graph.large import WeightsLayout, weights_layout
from autocompress.graph.load import read_onnx_header

#: ORT's exceptions that mean "this model cannot be loaded or run here" rather than a failure of ORT itself.
REFUSALS: tuple[type[Exception], ...] = (
    ort_state.Fail,
    ort_state.InvalidArgument,
    ort_state.NoSuchFile,
    ort_state.NoModel,
    ort_state.InvalidProtobuf,
    ort_state.NotImplemented,
    ort_state.InvalidGraph,
)

_UNREGISTERED = re.compile(r"(?:(?P<domain>[\w.\-]+):)?(?P<op>\w+)\(-?\d+\) is not a registered function/op")
_NO_KERNEL = re.compile(r"Could not find an implementation for (?P<op>\w+)\(\d+\) node with name '(?P<node>[^']*)'")
_BAD_TYPE = re.compile(
    r"Type '(?P<dtype>[^']+)' of input parameter \([^)]*\) of operator \((?P<op>\w+)\) in node \((?P<node>[^)]*)\)"
)
_REASONS = {
    _UNREGISTERED: "is not an op ONNX Runtime knows (custom-op libraries are not loaded)",
    _NO_KERNEL: "has no ONNX Runtime kernel for its input type",
    _BAD_TYPE: "does not accept its input type",
}


@dataclass
class _Culprit:
    op: str
    reason: str
    domain: str | None = None
    node: str | None = None
    dtype: str | None = None
    output: str | None = None

    def label(self) -> str:
        if self.node:
            return f"node {self.node!r} "
        return f"the node writing {self.output!r} " if self.output else ""


def _parse(message: str) -> _Culprit | None:
    for pattern, reason in _REASONS.items():
        found = pattern.search(message)
        if found:
            fields = found.groupdict()
            return _Culprit(fields["op"], reason, fields.get("domain"), fields.get("node"), fields.get("dtype"))
    return None


def _as_model(model: onnx.ModelProto | str | Path) -> onnx.ModelProto | None:
    if isinstance(model, onnx.ModelProto):
        return model
    try:
        return read_onnx_header(Path(model))
    except ModelLoadError:
        return None


def _find_node(graph: onnx.GraphProto, culprit: _Culprit) -> onnx.NodeProto | None:
    """The node ORT named, else the first node of the op type (and domain) it named."""
    by_name = [n for n in graph.node if culprit.node and n.name == culprit.node]
    domains = (culprit.domain,) if culprit.domain else ("", "ai.onnx")
    same_op = [n for n in graph.node if n.op_type == culprit.op and n.domain in domains]
    return next(iter(by_name + same_op), None)


def _tensor_type(model: onnx.ModelProto, name: str, layout: WeightsLayout | None) -> str | None:
    """The element type of tensor `name`, as ORT writes it (tensor(float)), inferred if the graph does not say and
    the model is INLINE (`layout`, decided here if not known)."""
    for tensor in model.graph.initializer:
        if tensor.name == name:
            return f"tensor({onnx.TensorProto.DataType.Name(tensor.data_type).lower()})"
    graph = model.graph
    values = [*graph.input, *graph.value_info, *graph.output]
    if not any(v.name == name for v in values) and (layout or weights_layout(model)) is WeightsLayout.INLINE:
        try:
            values = list(onnx.shape_inference.infer_shapes(model).graph.value_info)
        except Exception:  # noqa: BLE001 - inference is a best effort here: the model is being refused anyway
            values = []
    elem = next((v.type.tensor_type.elem_type for v in values if v.name == name), 0)
    return f"tensor({onnx.TensorProto.DataType.Name(elem).lower()})" if elem else None


def _complete(culprit: _Culprit, model: onnx.ModelProto | None, layout: WeightsLayout | None) -> None:
    node = _find_node(model.graph, culprit) if model is not None else None
    if node is None:
        return
    culprit.node = node.name or culprit.node
    culprit.output = next((name for name in node.output if name), None)
    culprit.domain = node.domain or "ai.onnx"
    if culprit.dtype is None and node.input and node.input[0]:
        culprit.dtype = _tensor_type(model, node.input[0], layout)


def refusal_error(
    exc: Exception, model: onnx.ModelProto | str | Path, providers: Sequence[str], layout: WeightsLayout | None = None
) -> ModelLoadError:
    """A ModelLoadError for ORT's refusal `exc` to load `model` (of weights_layout `layout`, when known), naming the
    node, op, domain and type it can."""
    message = str(exc).replace("\n", " ")
    culprit = _parse(message)
    if culprit is None:
        return ModelLoadError(
            f"ONNX Runtime {list(providers)} cannot load the model: {message}; the model must be one that ONNX "
            "Runtime can run"
        )
    _complete(culprit, _as_model(model), layout)
    what = ", ".join(
        f"{key} {value}" for key, value in (("domain", culprit.domain), ("input type", culprit.dtype)) if value
    )
    return ModelLoadError(
        f"ONNX Runtime {list(providers)} cannot run the model: {culprit.label()}(op {culprit.op}{', ' + what if what else ''}) "
        f"{culprit.reason}. Only standard ONNX ops with an ONNX Runtime kernel for their input types can be "
        f"compressed and measured; replace that op or cast its input. ONNX Runtime said: {message}"
    )
