"""One naming of nodes: a stable unique name per node, given once, and the names a user knew it by.

Configs, reports and the torch executor refer to nodes by name, but exporters leave nodes unnamed or named
twice, and passes that rebuild the graph (onnxslim, the opset converter) drop or change names. So every node
gets one name at load (its own when it is unique, else `<op_type>_<first output>`, which does not move when
other nodes come or go), and the node's metadata keeps what a user may still write:

* `autocompress.original_name`: the name the node had in the user's model, when it had to change;
* `autocompress.folded_from`: the names (and their aliases) of the nodes a pass folded into this one, e.g. the
  BatchNormalization folded into its Conv.

Both travel with the node through copies and into the saved model.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable

import onnx

ORIGINAL_NAME = "autocompress.original_name"
FOLDED_FROM = "autocompress.folded_from"


def _fallback(node: onnx.NodeProto, position: int) -> str:
    return f"{node.op_type}_{node.output[0]}" if node.output and node.output[0] else f"{node.op_type}_{position}"


def stable_names(nodes: Iterable[onnx.NodeProto]) -> list[str]:
    """The name name_nodes gives each node, without changing any: lets a pass name an unprepared model's nodes
    exactly as loading would."""
    nodes = list(nodes)
    remaining: Counter[str] = Counter(n.name for n in nodes if n.name)
    used = set(remaining)
    names = []
    for position, node in enumerate(nodes):
        if node.name and remaining[node.name] == 1:
            names.append(node.name)
            continue
        base = node.name or _fallback(node, position)
        name, k = base, 1
        while name in used:
            name, k = f"{base}_{k}", k + 1
        if node.name:
            remaining[node.name] -= 1
        used.add(name)
        names.append(name)
    return names


def _metadata(node: onnx.NodeProto, key: str) -> str | None:
    return next((entry.value for entry in node.metadata_props if entry.key == key), None)


def _set_metadata(node: onnx.NodeProto, key: str, value: str) -> None:
    for entry in node.metadata_props:
        if entry.key == key:
            entry.value = value
            return
    entry = node.metadata_props.add()
    entry.key, entry.value = key, value


def name_nodes(model: onnx.ModelProto) -> onnx.ModelProto:
    """Give every node its stable unique name in place, keeping a changed user name as the node's original."""
    for node, name in zip(model.graph.node, stable_names(model.graph.node)):
        if node.name and node.name != name and _metadata(node, ORIGINAL_NAME) is None:
            _set_metadata(node, ORIGINAL_NAME, node.name)
        node.name = name
    return model


def aliases(node: onnx.NodeProto) -> list[str]:
    """Other names a user may give for node: its original name and those of the nodes folded into it."""
    original = _metadata(node, ORIGINAL_NAME)
    folded = json.loads(_metadata(node, FOLDED_FROM) or "[]")
    return ([original] if original else []) + folded


def record_fold(into: onnx.NodeProto, removed: onnx.NodeProto) -> None:
    """Record that `removed` was folded into `into`: its name and aliases now name `into` as well."""
    names = [n for n in [removed.name, *aliases(removed)] if n and n != into.name]
    folded = list(dict.fromkeys(json.loads(_metadata(into, FOLDED_FROM) or "[]") + names))
    if folded:
        _set_metadata(into, FOLDED_FROM, json.dumps(folded))


def _source_of(node: onnx.NodeProto, before: dict[str, onnx.NodeProto], kept: set[str]) -> list[onnx.NodeProto]:
    """The nodes of the earlier graph that `node` replaces, its namesake first: the one writing its output when
    the op type matches, else the first node of its op type up the chain of fused nodes (a Conv that absorbed
    the BatchNormalization writing its output)."""
    last = before.get(node.output[0]) if node.output else None
    chain = [last] if last is not None else []
    while chain and chain[-1].op_type != node.op_type:
        above = before.get(chain[-1].input[0]) if chain[-1].input else None
        if above is None or above.output[0] in kept or len(chain) > 8:
            return chain[:1]
        chain.append(above)
    return chain[::-1]


def carry_names(before: onnx.ModelProto, after: onnx.ModelProto) -> onnx.ModelProto:
    """Give the nodes of `after`, the result of a pass that rebuilt `before`, their names and metadata back;
    a fused node records the nodes it absorbed. Nodes the pass created get stable names."""
    producer = {out: node for node in before.graph.node for out in node.output if out}
    kept = {out for node in after.graph.node for out in node.output}
    for node in after.graph.node:
        source = _source_of(node, producer, kept)
        if not source:
            continue
        del node.metadata_props[:]
        node.metadata_props.extend(source[0].metadata_props)
        node.name = source[0].name
        for absorbed in source[1:]:
            record_fold(node, absorbed)
    return name_nodes(after)


def name_table(model: onnx.ModelProto) -> dict[str, list[str]]:
    """Every name a user may write for a node (stable names and aliases) -> the stable names it means."""
    found: dict[str, list[str]] = {}
    for node, name in zip(model.graph.node, stable_names(model.graph.node)):
        for alias in dict.fromkeys([name, *aliases(node)]):
            found.setdefault(alias, []).append(name)
    return found
