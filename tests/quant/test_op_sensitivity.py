"""Per-op sensitivity: the op whose int8 form hurts the outputs most ranks first, and the cache is checked."""

from __future__ import annotations

import math

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from autocompress.quant.op_sensitivity import op_sensitivity
from autocompress.quant.ptq import calibration_tensors, quantize_post_training
from autocompress.quant.statistics import collect_statistics


def _fragile_model() -> onnx.ModelProto:
    """fine (a 1x1 Conv reading x) and fragile (a 1x1 Conv reading z, whose channel 0 carries a huge outlier that
    the conv ignores): one int8 scale over z leaves the conv's other channels a step or two, a large output error."""
    rng = np.random.default_rng(0)
    inits = [
        numpy_helper.from_array(rng.standard_normal((4, 4, 1, 1)).astype(np.float32), "wf"),
        numpy_helper.from_array(np.diag([0.0, 1, 1, 1]).astype(np.float32)[:, :, None, None], "wg"),
    ]
    nodes = [
        helper.make_node("Conv", ["x", "wf"], ["f"], name="fine"),
        helper.make_node("Conv", ["z", "wg"], ["g"], name="fragile"),
        helper.make_node("Concat", ["f", "g"], ["y"], name="join", axis=1),
    ]
    inputs = [helper.make_tensor_value_info(name, TensorProto.FLOAT, [2, 4, 8, 8]) for name in ("x", "z")]
    graph = helper.make_graph(
        nodes, "fragile", inputs, [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


def _feed(rng: np.random.Generator) -> dict[str, np.ndarray]:
    z = rng.standard_normal((2, 4, 8, 8)).astype(np.float32)
    z[:, 0] *= 1000.0
    return {"x": rng.standard_normal((2, 4, 8, 8)).astype(np.float32), "z": z}


def _scoring_setup():
    """The fragile model, its quantizable ops, a quantizer that records the float ops it is asked for, feeds."""
    model = _fragile_model()
    rng = np.random.default_rng(1)
    feeds = [_feed(rng) for _ in range(2)]
    stats = collect_statistics(model, feeds, calibration_tensors(model), algorithms=["abs_max"])
    calls = []

    def quantize_all_but(float_ops):
        calls.append(float_ops)
        return quantize_post_training(model, stats, algo="abs_max", skip_names=float_ops)[0]

    ops = quantize_post_training(model, stats, algo="abs_max")[1].quantized_nodes
    return model, ops, quantize_all_but, feeds, calls


def test_the_conv_behind_an_outlier_channel_ranks_first_and_the_scores_are_cached(tmp_path, caplog):
    model, ops, quantize_all_but, feeds, calls = _scoring_setup()
    assert {"fine", "fragile"} <= set(ops)
    scores = op_sensitivity(model, ops, quantize_all_but, feeds, cache_dir=str(tmp_path), settings="abs_max")
    assert list(scores)[0] == "fragile"
    assert scores["fragile"] > 10 * scores["fine"]
    assert all(score >= 0 for score in scores.values())
    assert len(calls) == len(ops)
    again = op_sensitivity(model, ops, quantize_all_but, feeds, cache_dir=str(tmp_path), settings="abs_max")
    assert again == scores and len(calls) == len(ops)  # read from the cache
    (path,) = tmp_path.glob("sensitivity_*.npz")
    path.write_bytes(b"not a zip")
    assert op_sensitivity(model, ops, quantize_all_but, feeds, cache_dir=str(tmp_path), settings="abs_max") == scores
    assert len(calls) == 2 * len(ops) and "unreadable op sensitivity cache" in caplog.text


def test_past_the_deadline_no_op_is_scored_and_every_op_counts_as_most_sensitive(tmp_path, caplog):
    model, ops, quantize_all_but, feeds, calls = _scoring_setup()
    scores = op_sensitivity(model, ops, quantize_all_but, feeds, cache_dir=str(tmp_path), deadline=0.0)
    assert calls == [] and set(scores) == set(ops)
    assert all(score == math.inf for score in scores.values())
    assert f"op sensitivity stopped at the time budget after 0 of {len(ops)} ops" in caplog.text
    assert not list(tmp_path.glob("sensitivity_*.npz"))  # incomplete scores are not cached


def test_a_generous_deadline_scores_as_without_one():
    model, ops, quantize_all_but, feeds, calls = _scoring_setup()
    unbounded = op_sensitivity(model, ops, quantize_all_but, feeds)
    bounded = op_sensitivity(model, ops, quantize_all_but, feeds, deadline=math.inf)
    assert bounded == unbounded and len(calls) == 2 * len(ops)
