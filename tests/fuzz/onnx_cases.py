"""Hypothesis strategies for untrusted ONNX files: byte-level corruption and structural mutation of a small valid
model, including external-data entries that try to leave the model folder.

The sandbox holds a 'secret' file outside the model folder; a case that loads must not contain its bytes.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

from autocompress.graph.load import load_model, model_tensors
from autocompress.graph.prepare import prepare_model

SECRET = b"SECRET-OUTSIDE-THE-MODEL-FOLDER!" * 8


def _branch(name: str, op: str, constant_in_node: bool) -> onnx.GraphProto:
    """An If branch holding its own tensor (as a Constant node or as a subgraph initializer)."""
    value = numpy_helper.from_array(np.full((1, 4, 1, 1), 0.5, np.float32), f"{name}_c")
    nodes = [helper.make_node(op, ["relu_out", f"{name}_c"], [f"{name}_out"], name=f"{name}_{op}")]
    initializers = []
    if constant_in_node:
        nodes.insert(0, helper.make_node("Constant", [], [f"{name}_c"], name=f"{name}_const", value=value))
    else:
        initializers.append(value)
    return helper.make_graph(
        nodes, name, [], [helper.make_tensor_value_info(f"{name}_out", TensorProto.FLOAT, None)], initializers
    )


def base_model() -> onnx.ModelProto:
    """Conv (weight in a Constant node, bias an initializer) -> Relu -> If (tensors inside both branches)."""
    rng = np.random.default_rng(0)
    weight = numpy_helper.from_array(rng.standard_normal((4, 3, 3, 3)).astype(np.float32), "w")
    nodes = [
        helper.make_node("Constant", [], ["conv_w"], name="weight_const", value=weight),
        helper.make_node("Conv", ["x", "conv_w", "conv_b"], ["conv_out"], name="conv", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["conv_out"], ["relu_out"], name="relu"),
        helper.make_node(
            "If",
            ["flag"],
            ["y"],
            name="branch",
            then_branch=_branch("then", "Add", True),
            else_branch=_branch("else", "Mul", False),
        ),
    ]
    graph = helper.make_graph(
        nodes,
        "fuzz_base",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 4, 8, 8])],
        [
            numpy_helper.from_array(rng.standard_normal(4).astype(np.float32), "conv_b"),
            numpy_helper.from_array(np.array(True), "flag"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)
    onnx.checker.check_model(model, full_check=True)
    return model


BASE_BYTES = base_model().SerializeToString()


@dataclass
class Sandbox:
    """root/secret.bin outside; root/model/ with the model, valid external files, escaping links and a FIFO."""

    root: Path

    @property
    def model_dir(self) -> Path:
        return self.root / "model"

    @property
    def model_path(self) -> Path:
        return self.model_dir / "model.onnx"

    @classmethod
    def create(cls, root: Path) -> Sandbox:
        box = cls(root)
        root.mkdir(parents=True, exist_ok=True)
        (root / "secret.bin").write_bytes(SECRET)
        (root / "outside_dir").mkdir()
        (root / "outside_dir" / "secret.bin").write_bytes(SECRET)
        box.model_dir.mkdir()
        (box.model_dir / "sub").mkdir()
        weights = np.random.default_rng(1).standard_normal(256).astype(np.float32).tobytes()
        (box.model_dir / "weights.bin").write_bytes(weights)
        (box.model_dir / "sub" / "inner.bin").write_bytes(weights)
        os.symlink(root / "secret.bin", box.model_dir / "link_out.bin")
        os.symlink(root / "outside_dir", box.model_dir / "link_dir")
        os.symlink("/dev/zero", box.model_dir / "link_dev.bin")
        os.symlink("loop.bin", box.model_dir / "loop.bin")
        os.mkfifo(box.model_dir / "fifo.bin")
        return box

    def odd_locations(self) -> list[str]:
        return [
            str(self.root / "secret.bin"),
            "../secret.bin",
            "sub/../../secret.bin",
            "link_out.bin",
            "link_dir/secret.bin",
            "link_dev.bin",
            "loop.bin",
            "/dev/zero",
            "fifo.bin",
            "sub",
            ".",
            "",
            "missing.bin",
            "weights.bin",
            "./weights.bin",
            "sub/inner.bin",
            "weights.bin/",
            "weights\x00.bin",
            "a" * 5000,
            "d/" * 300 + "x",
            "~/secret.bin",
            "..\\secret.bin",
            "file:///etc/passwd",
            "C:\\secret.bin",
        ]

    def snapshot(self) -> dict[str, str]:
        """Digest of every regular file in the sandbox, to prove the loader wrote nothing."""
        out = {}
        for path in sorted(self.root.rglob("*")):
            if path.is_file() and not path.is_symlink() and path.name != "model.onnx":
                out[str(path.relative_to(self.root))] = hashlib.sha256(path.read_bytes()).hexdigest()
        return out


# --- byte-level corruption -------------------------------------------------------------------------------------


@st.composite
def corrupted_bytes(draw) -> bytes:
    data = bytearray(BASE_BYTES)
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "truncate", "insert", "delete", "duplicate", "overwrite"]))
        i = draw(st.integers(0, max(len(data) - 1, 0)))
        if op == "flip" and data:
            data[i] ^= 1 << draw(st.integers(0, 7))
        elif op == "truncate":
            del data[i:]
        elif op == "insert":
            data[i:i] = draw(st.binary(min_size=1, max_size=16))
        elif op == "delete":
            del data[i : i + draw(st.integers(1, 32))]
        elif op == "duplicate":
            data[i:i] = data[i : i + draw(st.integers(1, 64))]
        else:
            chunk = draw(st.binary(min_size=1, max_size=8))
            data[i : i + len(chunk)] = chunk
    return bytes(data)


# --- structural mutation ---------------------------------------------------------------------------------------

ODD_INTS = [0, 1, -1, 2, 7, 2**31 - 1, 2**62, -(2**62)]


def _mutate_dims(draw, model: onnx.ModelProto) -> None:
    values = [*model.graph.input, *model.graph.output]
    dims = [d for v in values for d in v.type.tensor_type.shape.dim]
    tensors = list(model_tensors(model))
    if draw(st.booleans()) and dims:
        dim = draw(st.sampled_from(dims))
        if draw(st.booleans()):
            dim.dim_value = draw(st.sampled_from(ODD_INTS) | st.integers(-5, 100))
        else:
            dim.dim_param = draw(st.text(max_size=5))
    else:
        tensor = draw(st.sampled_from(tensors))
        del tensor.dims[:]
        tensor.dims.extend(draw(st.lists(st.sampled_from(ODD_INTS) | st.integers(0, 9), max_size=5)))


def _mutate_dtype(draw, model: onnx.ModelProto) -> None:
    dtype = draw(st.integers(-1, 30))
    if draw(st.booleans()):
        draw(st.sampled_from(list(model_tensors(model)))).data_type = dtype
    else:
        value = draw(st.sampled_from([*model.graph.input, *model.graph.output]))
        value.type.tensor_type.elem_type = dtype


def _mutate_wiring(draw, model: onnx.ModelProto) -> None:
    nodes = model.graph.node
    node = draw(st.sampled_from(list(nodes)))
    op = draw(st.sampled_from(["dangling", "self_loop", "drop_node", "unknown_op", "duplicate_output", "drop_input"]))
    if op == "dangling" and node.input:
        node.input[draw(st.integers(0, len(node.input) - 1))] = draw(st.sampled_from(["nowhere", "", "y", "x"]))
    elif op == "self_loop" and node.input and node.output:
        node.input[0] = node.output[0]
    elif op == "drop_node":
        nodes.remove(node)
    elif op == "unknown_op":
        node.op_type = draw(st.sampled_from(["NoSuchOp", "", "Conv", "If", "Loop", "Constant"]))
        if draw(st.booleans()):
            node.domain = draw(st.sampled_from(["com.example", "ai.onnx.ml", "com.microsoft"]))
    elif op == "duplicate_output" and node.output:
        node.output[0] = draw(st.sampled_from(["x", "conv_b", "relu_out", "y"]))
    elif node.input:
        del node.input[-1]


def _mutate_attribute(draw, model: onnx.ModelProto) -> None:
    node = draw(st.sampled_from([n for n in model.graph.node if n.attribute] or list(model.graph.node)))
    name = draw(st.sampled_from(["pads", "strides", "kernel_shape", "group", "dilations", "value", "then_branch"]))
    for attr in list(node.attribute):
        if attr.name == name:
            node.attribute.remove(attr)
    if draw(st.booleans()):
        ints = draw(st.lists(st.sampled_from(ODD_INTS) | st.integers(-3, 9), max_size=5))
        node.attribute.append(helper.make_attribute(name, ints) if ints else helper.make_attribute(name, 0))
    elif draw(st.booleans()):
        node.attribute.append(helper.make_attribute(name, draw(st.floats(allow_nan=True))))


def _mutate_header(draw, model: onnx.ModelProto) -> None:
    if draw(st.booleans()):
        model.ir_version = draw(st.sampled_from([0, 1, 3, 7, 8, 10, 11, 99, 2**40]))
    else:
        del model.opset_import[:]
        for version in draw(st.lists(st.sampled_from([0, 1, 7, 13, 21, 99, 2**40]), max_size=2)):
            model.opset_import.append(helper.make_opsetid(draw(st.sampled_from(["", "ai.onnx", "x"])), version))


def _mutate_external_data(draw, model: onnx.ModelProto, box: Sandbox) -> None:
    tensor = draw(st.sampled_from(list(model_tensors(model))))
    tensor.ClearField("raw_data")
    tensor.ClearField("float_data")
    tensor.data_location = TensorProto.EXTERNAL
    entries = [("location", draw(st.sampled_from(box.odd_locations()) | st.text(max_size=12)))]
    odd_numbers = st.sampled_from(["0", "-1", "16", "abc", "", "1e3", str(2**70), " 4"])
    odd_numbers |= st.integers(-8, 2048).map(str)
    if draw(st.booleans()):
        entries.append(("offset", draw(odd_numbers)))
    if draw(st.booleans()):
        entries.append(("length", draw(odd_numbers)))
    if draw(st.integers(0, 3)) == 0:
        entries.append(
            (
                draw(st.sampled_from(["location", "checksum", "__class__", "__dict__", "basepath", "x"])),
                draw(st.sampled_from(box.odd_locations())),
            )
        )
    for key, value in draw(st.permutations(entries)):
        entry = tensor.external_data.add()
        entry.key, entry.value = key, value


MUTATIONS = [_mutate_dims, _mutate_dtype, _mutate_wiring, _mutate_attribute, _mutate_header]


@st.composite
def mutated_models(draw, box: Sandbox) -> bytes:
    model = onnx.ModelProto.FromString(BASE_BYTES)
    count = draw(st.integers(1, 3))
    for _ in range(count):
        if draw(st.integers(0, 2)) == 0:
            _mutate_external_data(draw, model, box)
        else:
            draw(st.sampled_from(MUTATIONS))(draw, model)
    return model.SerializeToString()


_shape = st.lists(st.sampled_from(ODD_INTS) | st.integers(-2, 16), max_size=5)
input_shapes = st.one_of(st.none(), _shape, st.dictionaries(st.sampled_from(["x", "nope"]), _shape, max_size=2))


def load_and_prepare(box: Sandbox, content: bytes, shapes) -> onnx.ModelProto:
    """Load and prepare the file; a model that loads must not hold the secret and must leave every file as it was."""
    box.model_path.write_bytes(content)
    before = box.snapshot()
    try:
        model = load_model(box.model_dir, "model.onnx")
        for tensor in model_tensors(model):
            assert SECRET[:32] not in tensor.raw_data, f"tensor {tensor.name!r} holds data from outside the folder"
        return prepare_model(model, shapes)
    finally:
        assert box.snapshot() == before, "loading changed files in the sandbox"
