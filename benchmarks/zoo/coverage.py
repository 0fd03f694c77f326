"""What the zoo's models cover, read from each raw ONNX file: opset, inputs, batch axis, node-name problems, control
flow, and whether the declared output shapes hold on a real evaluation feed.

`python -m benchmarks.zoo.coverage [--models a,b] [--work DIR]` prints one markdown table. The file read is the one
`ZooModel.onnx_file` gives the tools (for exported models, the export), before any preparation pass renames nodes.
"""

from __future__ import annotations

import argparse
import collections
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

from benchmarks.zoo.spec import ZooModel, all_models

CONTROL_FLOW = ("If", "Loop", "Scan")
COLUMNS = (
    "model",
    "family",
    "opset",
    "inputs (name dtype shape)",
    "batch axis",
    "unnamed / duplicated node names",
    "declared vs real outputs",
    "control flow",
)


@dataclass(frozen=True)
class Coverage:
    model: str
    family: str
    opset: str
    inputs: str
    batch_axis: str
    node_names: str
    outputs: str
    control_flow: str

    def row(self) -> str:
        cells = (self.model, self.family, self.opset, self.inputs, self.batch_axis)
        return "| " + " | ".join((*cells, self.node_names, self.outputs, self.control_flow)) + " |"


def _dims(value: onnx.ValueInfoProto) -> list[str]:
    shape = value.type.tensor_type.shape
    if not value.type.tensor_type.HasField("shape"):
        return ["?"]
    return [d.dim_param or (str(d.dim_value) if d.HasField("dim_value") else "?") for d in shape.dim]


def _declared(value: onnx.ValueInfoProto) -> str:
    return "[" + ", ".join(_dims(value)) + "]"


def _all_nodes(graph: onnx.GraphProto) -> list[onnx.NodeProto]:
    """Every node, subgraphs (If/Loop/Scan bodies) included."""
    found = []
    for node in graph.node:
        found.append(node)
        for attribute in node.attribute:
            subgraphs = [attribute.g] if attribute.HasField("g") else list(attribute.graphs)
            for subgraph in subgraphs:
                found.extend(_all_nodes(subgraph))
    return found


def opset_text(model: onnx.ModelProto) -> str:
    """The default-domain opset, then any other domain the file imports."""
    versions = {entry.domain or "ai.onnx": entry.version for entry in model.opset_import}
    others = [f"{domain} {version}" for domain, version in sorted(versions.items()) if domain != "ai.onnx"]
    return ", ".join([str(versions.get("ai.onnx", "?")), *others])


def node_name_issues(graph: onnx.GraphProto) -> str:
    names = [node.name for node in _all_nodes(graph)]
    counts = collections.Counter(name for name in names if name)
    duplicated = sum(count - 1 for count in counts.values() if count > 1)
    return f"{sum(1 for name in names if not name)} / {duplicated} of {len(names)}"


def control_flow(graph: onnx.GraphProto) -> str:
    counts = collections.Counter(node.op_type for node in _all_nodes(graph) if node.op_type in CONTROL_FLOW)
    return ", ".join(f"{op} x{count}" for op, count in sorted(counts.items())) or "none"


def graph_inputs(model: onnx.ModelProto) -> list[onnx.ValueInfoProto]:
    """The inputs a caller feeds (older IRs list every initializer as an input too)."""
    weights = {initializer.name for initializer in model.graph.initializer}
    return [value for value in model.graph.input if value.name not in weights]


def inputs_text(inputs: Sequence[onnx.ValueInfoProto]) -> str:
    def one(value: onnx.ValueInfoProto) -> str:
        dtype = onnx.helper.tensor_dtype_to_np_dtype(value.type.tensor_type.elem_type)
        return f"{value.name} {np.dtype(dtype).name} {_declared(value)}"

    return "; ".join(one(value) for value in inputs)


def batch_axis_text(inputs: Sequence[onnx.ValueInfoProto], feed: dict[str, np.ndarray]) -> str:
    """Per input: the first symbolic axis (a dynamic batch), else 'fixed' (every dim a number), 'scalar' for rank 0."""

    def one(value: onnx.ValueInfoProto) -> str:
        if feed[value.name].ndim == 0:
            return "scalar"
        dims = _dims(value)
        dynamic = [axis for axis, dim in enumerate(dims) if not dim.isdigit()]
        return f"{dynamic[0]} ({dims[dynamic[0]]})" if dynamic else "fixed"

    texts = [one(value) for value in inputs]
    return texts[0] if len(set(texts)) == 1 else "; ".join(f"{v.name}: {t}" for v, t in zip(inputs, texts))


def _shape_agrees(declared: list[str], real: tuple[int, ...]) -> bool:
    if declared == ["?"]:
        return True
    return len(declared) == len(real) and all(not d.isdigit() or int(d) == r for d, r in zip(declared, real))


def outputs_text(model_file: Path, model: onnx.ModelProto, feed: dict[str, np.ndarray]) -> str:
    """Declared output shapes against the shapes ONNX Runtime returns on one feed; only the mismatches in full."""
    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(str(model_file), options, providers=["CPUExecutionProvider"])
    real = [np.asarray(output).shape for output in session.run(None, feed)]
    wrong = [
        f"{value.name}: {_declared(value)} vs {list(shape)}"
        for value, shape in zip(model.graph.output, real)
        if not _shape_agrees(_dims(value), shape)
    ]
    return f"{len(real)} outputs, all as declared" if not wrong else "; ".join(wrong)


def coverage(zoo_model: ZooModel, work: Path) -> Coverage:
    model_file = zoo_model.onnx_file(work)
    model = onnx.load(str(model_file), load_external_data=False)
    feed = zoo_model.evaluation(1).feeds[0]
    inputs = graph_inputs(model)
    return Coverage(
        model=zoo_model.name,
        family=zoo_model.family,
        opset=opset_text(model),
        inputs=inputs_text(inputs),
        batch_axis=batch_axis_text(inputs, feed),
        node_names=node_name_issues(model.graph),
        outputs=outputs_text(model_file, model, feed),
        control_flow=control_flow(model.graph),
    )


def table(rows: Sequence[Coverage]) -> str:
    header = "| " + " | ".join(COLUMNS) + " |"
    rule = "|" + "|".join(" --- " for _ in COLUMNS) + "|"
    return "\n".join([header, rule, *(row.row() for row in rows)])


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="", help="comma-separated model names (default: every zoo model)")
    parser.add_argument("--work", type=Path, default=None, help="folder for exported files (default: a temp folder)")
    args = parser.parse_args(argv)
    models = all_models()
    names = [name for name in args.models.split(",") if name] or sorted(models)
    unknown = sorted(set(names) - set(models))
    if unknown:
        parser.error(f"unknown model(s) {unknown}; known: {sorted(models)}")
    with tempfile.TemporaryDirectory() as temporary:
        work = args.work or Path(temporary)
        rows = []
        for name in names:
            (work / name).mkdir(parents=True, exist_ok=True)
            rows.append(coverage(models[name], work / name))
    print(table(rows))


if __name__ == "__main__":
    main()
