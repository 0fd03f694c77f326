import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

from autocompress.errors import ConfigError
from autocompress.prune.asp import asp_masks, n_m_mask


def model_with(weights: dict[str, np.ndarray], nodes) -> onnx.ModelProto:
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, None)],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, None)],
        [numpy_helper.from_array(v.astype(np.float32), k) for k, v in weights.items()],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


def assert_two_of_four(mask: np.ndarray, weight: np.ndarray, axis: int) -> None:
    runs = np.moveaxis(mask, axis, -1).reshape(-1, 4)
    w = np.abs(np.moveaxis(weight, axis, -1)).reshape(-1, 4)
    assert (runs.sum(axis=1) == 2).all()
    kept_min = np.where(runs == 1, w, np.inf).min(axis=1)
    dropped_max = np.where(runs == 0, w, -np.inf).max(axis=1)
    assert (kept_min >= dropped_max).all()


def test_mask_keeps_two_largest_of_each_four():
    w = np.array([[0.1, -5.0, 0.3, 2.0, 1.0, 1.5, -0.2, 0.0]])
    np.testing.assert_array_equal(n_m_mask(w, axis=1), [[0, 1, 0, 1, 1, 1, 0, 0]])


def test_conv_runs_along_input_channels_at_each_position():
    rng = np.random.default_rng(0)
    w = rng.standard_normal((6, 8, 3, 3))
    masks, plan = asp_masks(model_with({"w": w}, [helper.make_node("Conv", ["x", "w"], ["y"])]))
    assert plan.eligible == {"w": 1}
    assert_two_of_four(masks["w"], w, axis=1)
    # each (out, kh, kw) position keeps exactly half of the input channels
    assert (masks["w"].sum(axis=1) == 4).all()


def test_matmul_and_transposed_gemm_use_the_input_dimension():
    rng = np.random.default_rng(1)
    k_n, n_k = rng.standard_normal((8, 5)), rng.standard_normal((5, 8))
    nodes = [helper.make_node("MatMul", ["x", "k_n"], ["h"]), helper.make_node("Gemm", ["h", "n_k"], ["y"], transB=1)]
    masks, plan = asp_masks(model_with({"k_n": k_n, "n_k": n_k}, nodes))
    assert plan.eligible == {"k_n": 0, "n_k": 1}
    assert_two_of_four(masks["k_n"], k_n, axis=0)
    assert_two_of_four(masks["n_k"], n_k, axis=1)


def test_weights_that_cannot_take_the_pattern_stay_dense_with_a_reason():
    rng = np.random.default_rng(2)
    weights = {"odd": rng.standard_normal((4, 6, 1, 1)), "dw": rng.standard_normal((8, 1, 3, 3))}
    nodes = [helper.make_node("Conv", ["x", "odd"], ["h"]), helper.make_node("Conv", ["h", "dw"], ["y"], group=8)]
    masks, plan = asp_masks(model_with(weights, nodes))
    assert masks == {}
    assert "not a multiple of 4" in plan.skipped["odd"] and "group=8" in plan.skipped["dw"]
    with pytest.raises(ConfigError, match="not a multiple of 4"):
        asp_masks(model_with(weights, nodes), prune_params_name=["odd"])
