"""Which tensors are distilled: config `node` lists -> resolved (teacher, student) tensor groups.

Config forms (PaddleSlim's):
- a flat list [t1, s1, t2, s2, ...]: one group, every pair uses `loss` and `alpha` (single values);
- a list of lists [[t1, s1, ...], [t3, s3]]: group i uses loss[i] and alpha[i] (or the single loss/alpha);
- for MultiTeacherDistillation, node[i] is the flat list of teacher i.
Pairs are (teacher, student). fsp compares relations between two maps, so an fsp group lists names four at a time:
[teacher_a, teacher_b, student_a, student_b].

A group whose names all exist in both graphs is ACT's short form [a, b, ...]: each name is compared with itself
(teacher a -> student a, ...; fsp takes the names two at a time). QAT and pruning keep tensor names, so this is how
ACT's configs name nodes; reading [a, b] as the pair (teacher a, student b) would silently distill the wrong
tensors. A group written as identical pairs [a, a, b, b] gives the same terms. To pair two different names that
both graphs have, write the teacher name with the 'teacher_' prefix: [teacher_a, b].

A node name (its stable name, the name it had in the user's model, or that of a node folded into it, see
graph/naming.py) stands for the node's first output.

Teacher names may carry PaddleSlim's 'teacher_' prefix ('teacher_relu_30.tmp_0' is 'relu_30.tmp_0' in the teacher
graph): ACT renamed teacher variables that way when it merged both programs, and configs were written with it.

Empty `node`: the automatic choice is, in each graph, the output of the last weighted op (Conv, ConvTranspose,
Gemm, MatMul whose weight is a constant, possibly through DequantizeLinear/Transpose) followed by its affine
epilogue (a bias Add / scale Mul with a constant, BatchNormalization) when it is the only consumer. It stops
before post-processing (Softmax, Sigmoid, Resize, ArgMax, ...) because those squash the signal the student
should match: logits, not probabilities.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from dataclasses import dataclass

import onnx

from autocompress.errors import ConfigError
from autocompress.graph.index import GraphIndex
from autocompress.graph.op_facts import LAYER_OP_TYPES

TEACHER_PREFIX = "teacher_"
LOSS_ARITY = {"l2": 1, "soft_label": 1, "fsp": 2}  # tensors per side in one loss term
_EPILOGUE_OPS = {"Add", "Mul", "BatchNormalization"}
_SOFTMAX_OPS = {"Softmax", "LogSoftmax"}


@dataclass(frozen=True)
class DistillTerm:
    """One loss term: `loss` between teacher tensors and student tensors, weighted by alpha."""

    loss: str
    teacher_nodes: tuple[str, ...]
    student_nodes: tuple[str, ...]
    alpha: float
    teacher_index: int = 0

    @property
    def label(self) -> str:
        teacher = "+".join(self.teacher_nodes)
        student = "+".join(self.student_nodes)
        prefix = f"t{self.teacher_index}:" if self.teacher_index else ""
        return f"{self.loss}({prefix}{teacher} -> {student})"


def unknown_name_error(name: str, available: Sequence[str], where: str) -> ConfigError:
    close = difflib.get_close_matches(name, list(available), n=5, cutoff=0.5)
    hint = f"; close matches: {close}" if close else "; no similar tensor name exists"
    return ConfigError(f"distillation node '{name}' does not exist in the {where}{hint}")


#: A graph's referable names: tensor names, and node names for their first output (GraphIndex.referable_tensors).
Names = dict[str, str]


def resolve_teacher_name(name: str, teacher_tensors: Names, where: str = "teacher model") -> str:
    if name in teacher_tensors:
        return teacher_tensors[name]
    if name.startswith(TEACHER_PREFIX) and name[len(TEACHER_PREFIX) :] in teacher_tensors:
        return teacher_tensors[name[len(TEACHER_PREFIX) :]]
    raise unknown_name_error(name, sorted(teacher_tensors), where)


def resolve_student_name(name: str, student_tensors: Names) -> str:
    if name in student_tensors:
        return student_tensors[name]
    raise unknown_name_error(name, sorted(student_tensors), "student model")


def _is_constant_like(index: GraphIndex, name: str, depth: int = 4) -> bool:
    """A constant, or computed from constants only (a DequantizeLinear or Transpose of a weight)."""
    if index.is_constant(name):
        return True
    node = index.producer.get(name)
    if node is None or depth == 0:
        return False
    return all(_is_constant_like(index, i, depth - 1) for i in node.input if i)


def _has_constant_weight(index: GraphIndex, node: onnx.NodeProto) -> bool:
    if node.op_type == "MatMul":
        return any(_is_constant_like(index, i) for i in node.input[:2])
    return len(node.input) > 1 and _is_constant_like(index, node.input[1])


def _epilogue_output(index: GraphIndex, name: str) -> str:
    while name not in index.graph_outputs:
        consumers = index.consumers.get(name, [])
        if len(consumers) != 1 or consumers[0].op_type not in _EPILOGUE_OPS:
            return name
        nxt = consumers[0]
        if nxt.op_type != "BatchNormalization":
            others = [i for i in nxt.input if i and i != name]
            if not others or not all(_is_constant_like(index, i) for i in others):
                return name
        name = nxt.output[0]
    return name


def auto_node(model: onnx.ModelProto) -> str:
    """The output of the last weighted op (with its affine epilogue), the default distillation node."""
    index = GraphIndex(model)
    weighted = [n for n in model.graph.node if n.op_type in LAYER_OP_TYPES and _has_constant_weight(index, n)]
    if not weighted:
        raise ConfigError(
            "Distillation.node is empty and the model has no Conv/ConvTranspose/Gemm/MatMul with a constant weight "
            "to choose automatically; set node to [teacher_tensor, student_tensor]"
        )
    return _epilogue_output(index, weighted[-1].output[0])


def label_logits_name(model: onnx.ModelProto) -> str:
    """The tensor a label loss compares with labels: the first output, or the input of a final Softmax."""
    index = GraphIndex(model)
    name = index.graph_outputs[0]
    producer = index.producer.get(name)
    if producer is not None and producer.op_type in _SOFTMAX_OPS:
        return producer.input[0]
    return name


def _single(value: str | float | list, key: str, group: str) -> str | float:
    if not isinstance(value, list):
        return value
    if len(value) != 1:
        raise ConfigError(
            f"Distillation.{key} has {len(value)} entries but node {group} is one flat list; "
            f"write node as a list of lists, one list per {key} entry"
        )
    return value[0]


def _self_paired_terms(
    names: list[str], loss: str, alpha: float, teacher_tensors: Names, student_tensors: Names, teacher_index: int
) -> list[DistillTerm]:
    """ACT's short form: every name (every two names for fsp) compared with the same tensor(s) in the teacher."""
    arity = LOSS_ARITY[loss]
    if len(names) % arity:
        raise ConfigError(
            f"Distillation.node {names} for loss fsp names tensors that exist in both models, so they pair with "
            f"themselves two at a time ([a, b] -> fsp(teacher a+b, student a+b)); got {len(names)} names"
        )
    chunks = [names[start : start + arity] for start in range(0, len(names), arity)]
    pairs = [(tuple(teacher_tensors[n] for n in chunk), tuple(student_tensors[n] for n in chunk)) for chunk in chunks]
    unique = dict.fromkeys(pairs)  # [a, a, b, b] (identical pairs written out) gives each term once
    return [DistillTerm(loss, teacher, student, float(alpha), teacher_index) for teacher, student in unique]


def _missing_names(names: list[str], teacher_tensors: Names, student_tensors: Names) -> str:
    unprefixed = [n[len(TEACHER_PREFIX) :] if n.startswith(TEACHER_PREFIX) else n for n in names]
    missing = [
        f"'{n}' (not in the teacher model)"
        for n, u in zip(names, unprefixed)
        if n not in teacher_tensors and u not in teacher_tensors
    ]
    missing += [f"'{n}' (not in the student model)" for n in names if n not in student_tensors]
    return ", ".join(missing)


def _terms_of_group(
    names: list[str],
    loss: str,
    alpha: float,
    teacher_tensors: Names,
    student_tensors: Names,
    teacher_index: int,
) -> list[DistillTerm]:
    if all(n in teacher_tensors and n in student_tensors for n in names):
        return _self_paired_terms(names, loss, alpha, teacher_tensors, student_tensors, teacher_index)
    arity = LOSS_ARITY[loss]
    width = 2 * arity
    if len(names) % width:
        layout = "(teacher, student) pairs"
        if loss == "fsp":
            layout = "[teacher_a, teacher_b, student_a, student_b] per term"
        raise ConfigError(
            f"Distillation.node {names} for loss {loss} must list names as {layout}, or only names that exist in "
            f"both models (each then pairs with itself); got {len(names)} names, and "
            f"{_missing_names(names, teacher_tensors, student_tensors)} rule out the short form"
        )
    terms = []
    for start in range(0, len(names), width):
        chunk = names[start : start + width]
        where = "teacher model" if teacher_index == 0 else f"teacher model {teacher_index}"
        teacher = tuple(resolve_teacher_name(n, teacher_tensors, where) for n in chunk[:arity])
        student = tuple(resolve_student_name(n, student_tensors) for n in chunk[arity:])
        terms.append(DistillTerm(loss, teacher, student, float(alpha), teacher_index))
    return terms


def parse_terms(
    node: list,
    loss: str | list[str],
    alpha: float | list[float],
    teacher: onnx.ModelProto,
    student: onnx.ModelProto,
    teacher_index: int = 0,
) -> list[DistillTerm]:
    """Resolve a Distillation node list against both graphs (see the module docstring for the forms)."""
    teacher_tensors = GraphIndex(teacher).referable_tensors()
    student_tensors = GraphIndex(student).referable_tensors()
    if not node:
        kind = _single(loss, "loss", "(automatic)")
        if kind == "fsp":
            raise ConfigError(
                "Distillation loss fsp needs explicit node names [teacher_a, teacher_b, student_a, student_b]"
            )
        weight = float(_single(alpha, "alpha", "(automatic)"))
        return [DistillTerm(kind, (auto_node(teacher),), (auto_node(student),), weight, teacher_index)]
    flat = all(isinstance(n, str) for n in node)
    if flat:
        groups = [list(node)]
        losses = [_single(loss, "loss", str(node))]
        alphas = [_single(alpha, "alpha", str(node))]
    elif all(isinstance(n, (list, tuple)) for n in node):
        groups = [list(g) for g in node]
        losses = _per_group(loss, len(groups), "loss")
        alphas = _per_group(alpha, len(groups), "alpha")
    else:
        raise ConfigError(f"Distillation.node mixes names and lists: {node}; use a flat list or a list of lists")
    terms = []
    for names, kind, weight in zip(groups, losses, alphas):
        terms += _terms_of_group(names, kind, weight, teacher_tensors, student_tensors, teacher_index)
    return terms


def _per_group(value: str | float | list, count: int, key: str) -> list:
    if not isinstance(value, list):
        return [value] * count
    if len(value) == 1:
        return value * count
    if len(value) != count:
        raise ConfigError(f"Distillation.{key} has {len(value)} entries but node has {count} groups; they pair up")
    return list(value)
