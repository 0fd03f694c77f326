import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

from autocompress.distill.nodes import DistillTerm, auto_node, label_logits_name, parse_terms
from autocompress.errors import ConfigError

from .graphs import CONV1, CONV2, LOGITS, export


@pytest.fixture(scope="module")
def model():
    return export()


def test_auto_node_is_the_last_weighted_op_before_softmax(model):
    assert auto_node(model) == LOGITS
    assert label_logits_name(model) == LOGITS


def test_auto_node_includes_bias_epilogue_and_weights_behind_dequantize():
    rng = np.random.default_rng(0)
    inits = [
        numpy_helper.from_array(rng.standard_normal((4, 3)).astype(np.int8), "wq"),
        numpy_helper.from_array(np.array(0.1, np.float32), "s"),
        numpy_helper.from_array(rng.standard_normal(3).astype(np.float32), "b"),
        numpy_helper.from_array(rng.standard_normal((3, 3)).astype(np.float32), "w2"),
    ]
    nodes = [
        helper.make_node("DequantizeLinear", ["wq", "s"], ["w"]),
        helper.make_node("MatMul", ["x", "w"], ["mm"]),
        helper.make_node("Add", ["mm", "b"], ["biased"]),
        helper.make_node("Transpose", ["biased"], ["biased_t"]),
        helper.make_node("MatMul", ["biased", "biased_t"], ["attn"]),  # two activations: not a weighted op
        helper.make_node("Sigmoid", ["biased"], ["out"]),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [2, 4])],
        [
            helper.make_tensor_value_info("out", onnx.TensorProto.FLOAT, None),
            helper.make_tensor_value_info("attn", onnx.TensorProto.FLOAT, None),
        ],
        inits,
    )
    m = helper.make_model(graph)
    # MatMul(x, Dequantize(wq)) is the last op with a weight; its bias Add belongs to it
    assert auto_node(m) == "biased"


def test_auto_node_without_weighted_op_is_a_config_error():
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1])],
    )
    with pytest.raises(ConfigError, match="set node"):
        auto_node(helper.make_model(graph))


def test_pairs_and_teacher_prefix(model):
    terms = parse_terms(["teacher_" + CONV2, CONV2, LOGITS, LOGITS], "l2", 0.5, model, model)
    assert terms == [DistillTerm("l2", (CONV2,), (CONV2,), 0.5), DistillTerm("l2", (LOGITS,), (LOGITS,), 0.5)]


def test_names_in_both_graphs_pair_with_themselves(model):
    student = export(hidden=6, seed=1)  # other weights, same tensor names
    short = parse_terms([CONV2, LOGITS], "l2", 1.0, model, student)
    assert short == [DistillTerm("l2", (CONV2,), (CONV2,), 1.0), DistillTerm("l2", (LOGITS,), (LOGITS,), 1.0)]
    assert parse_terms([CONV2, CONV2, LOGITS, LOGITS], "l2", 1.0, model, student) == short  # written-out pairs
    assert parse_terms([CONV1, CONV2, LOGITS], "l2", 1.0, model, student)[0].student_nodes == (CONV1,)
    fsp = parse_terms([CONV1, CONV2], "fsp", 1.0, model, student)
    assert fsp == [DistillTerm("fsp", (CONV1, CONV2), (CONV1, CONV2), 1.0)]
    groups = parse_terms([[CONV2], [LOGITS]], ["l2", "soft_label"], [1.0, 2.0], model, student)
    assert [(t.loss, t.student_nodes) for t in groups] == [("l2", (CONV2,)), ("soft_label", (LOGITS,))]


def test_teacher_prefix_pairs_two_different_names(model):
    terms = parse_terms(["teacher_" + CONV1, CONV2], "l2", 1.0, model, model)
    assert terms == [DistillTerm("l2", (CONV1,), (CONV2,), 1.0)]


def _renamed(model: onnx.ModelProto, old: str, new: str) -> onnx.ModelProto:
    renamed = onnx.ModelProto()
    renamed.CopyFrom(model)
    for node in renamed.graph.node:
        node.input[:] = [new if i == old else i for i in node.input]
        node.output[:] = [new if o == old else o for o in node.output]
    return renamed


def test_a_name_missing_in_one_graph_is_named_in_the_error(model):
    student = _renamed(model, CONV1, "/student/conv1")
    with pytest.raises(ConfigError, match=f"'{CONV1}' \\(not in the student model\\)"):
        parse_terms([CONV1], "l2", 1.0, model, student)
    with pytest.raises(ConfigError, match=f"'{CONV1}' \\(not in the teacher model\\)"):
        parse_terms([CONV1], "l2", 1.0, student, model)
    with pytest.raises(ConfigError, match="does not exist in the student model"):
        parse_terms([CONV2, CONV1], "l2", 1.0, model, student)  # not the short form: (CONV2 -> CONV1)


def test_list_of_lists_pairs_with_losses_and_alphas(model):
    terms = parse_terms(
        [[CONV2, CONV2], [LOGITS, LOGITS], [CONV1, CONV2, CONV1, CONV2]],
        ["l2", "soft_label", "fsp"],
        [1.0, 2.0, 3.0],
        model,
        model,
    )
    assert [(t.loss, t.alpha) for t in terms] == [("l2", 1.0), ("soft_label", 2.0), ("fsp", 3.0)]
    assert terms[2].teacher_nodes == (CONV1, CONV2) and terms[2].student_nodes == (CONV1, CONV2)


def test_empty_node_uses_the_automatic_choice(model):
    assert parse_terms([], "soft_label", 1.0, model, model) == [DistillTerm("soft_label", (LOGITS,), (LOGITS,), 1.0)]
    with pytest.raises(ConfigError, match="fsp needs explicit"):
        parse_terms([], "fsp", 1.0, model, model)


def test_unknown_name_lists_close_matches(model):
    with pytest.raises(ConfigError) as err:
        parse_terms(["teacher_/conv2/Conv_outptu_0", CONV2], "l2", 1.0, model, model)
    message = str(err.value)
    assert "'teacher_/conv2/Conv_outptu_0' does not exist in the teacher model" in message and CONV2 in message
    with pytest.raises(ConfigError, match="student model.*close matches.*/fc/Gemm_output_0"):
        parse_terms([LOGITS, "/fc/Gem_output_0"], "l2", 1.0, model, model)


@pytest.mark.parametrize(
    "node,loss,alpha,match",
    [
        (["teacher_" + CONV2, CONV2, LOGITS], "l2", 1.0, "pairs"),
        (["teacher_" + CONV1, CONV2, CONV1], "fsp", 1.0, "teacher_a, teacher_b, student_a, student_b"),
        ([CONV1, CONV2, LOGITS], "fsp", 1.0, "two at a time"),
        ([CONV2, [LOGITS, LOGITS]], "l2", 1.0, "mixes"),
        ([CONV2, CONV2], ["l2", "fsp"], 1.0, "list of lists"),
        ([[CONV2, CONV2], [LOGITS, LOGITS]], ["l2", "l2", "l2"], 1.0, "pair up"),
    ],
)
def test_malformed_node_lists(model, node, loss, alpha, match):
    with pytest.raises(ConfigError, match=match):
        parse_terms(node, loss, alpha, model, model)
