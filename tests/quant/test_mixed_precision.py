"""Mixed precision: a mixed-range output stays float, the greedy plan and its verification, QuantPost's option."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from autocompress import AutoCompression
from autocompress.quant.mixed_precision import (
    CHOSEN,
    MIXED_RANGE,
    OVER_TOLERANCE,
    SLOWER,
    STEPPED_BACK,
    UNVERIFIED,
    MixedPrecisionPlan,
    Verification,
    greedy_plan,
    mixed_range_candidates,
    mixed_range_ops,
    mixed_range_tensors,
    verified_plan,
)
from autocompress.quant.ptq import calibration_tensors, quantize_post_training
from autocompress.quant.statistics import channel_ranges, collect_statistics
from tests.quant.conftest import run


def _detector() -> onnx.ModelProto:
    """Boxes in pixels (a Conv times 1000) concatenated with sigmoid scores, then a 1x1 MaxPool: one int8 scale
    over the Concat would leave the scores less than one step."""
    rng = np.random.default_rng(0)
    inits = [
        numpy_helper.from_array(rng.standard_normal((3, 3, 1, 1)).astype(np.float32), "wx"),
        numpy_helper.from_array(rng.standard_normal((4, 3, 1, 1)).astype(np.float32), "wb"),
        numpy_helper.from_array(rng.standard_normal((2, 3, 1, 1)).astype(np.float32), "ws"),
        numpy_helper.from_array(np.array(1000.0, np.float32), "pixels"),
    ]
    nodes = [
        helper.make_node("Conv", ["x", "wx"], ["t"], name="stem"),
        helper.make_node("Conv", ["t", "wb"], ["b"], name="box_conv"),
        helper.make_node("Mul", ["b", "pixels"], ["boxes"], name="to_pixels"),
        helper.make_node("Conv", ["t", "ws"], ["s"], name="score_conv"),
        helper.make_node("Sigmoid", ["s"], ["scores"], name="sigmoid"),
        helper.make_node("Concat", ["boxes", "scores"], ["det"], name="join", axis=1),
        helper.make_node("MaxPool", ["det"], ["y"], name="pool", kernel_shape=[1, 1]),
    ]
    graph = helper.make_graph(
        nodes,
        "det",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


def test_a_concat_of_boxes_and_scores_is_found_and_kept_float():
    model = _detector()
    rng = np.random.default_rng(1)
    feeds = [{"x": rng.standard_normal((1, 3, 8, 8)).astype(np.float32)} for _ in range(2)]
    candidates = mixed_range_candidates(model)
    assert candidates == {"det": 1, "y": None}
    ranges = channel_ranges(model, feeds, candidates)
    assert ranges["det"][0].shape == (6,)
    mixed = mixed_range_tensors(ranges)
    assert "det" in mixed
    stats = collect_statistics(model, feeds, calibration_tensors(model), algorithms=["abs_max"])
    all_int8, info = quantize_post_training(model, stats, algo="abs_max")
    kept = mixed_range_ops(model, mixed, info.quantized_nodes)
    # the Concat, the last quantized op of each branch (the x1000 folds into box_conv), and its reader
    assert set(kept) == {"join", "box_conv", "score_conv", "pool"}  # the stem stays int8
    mixed_model, _ = quantize_post_training(model, stats, algo="abs_max", skip_names=kept)
    reference = run(model, feeds[0])[:, 4:]
    assert np.abs(run(all_int8, feeds[0])[:, 4:] - reference).max() > 0.3  # the scores are lost in int8
    assert np.abs(run(mixed_model, feeds[0])[:, 4:] - reference).max() < 0.05
    choices = greedy_plan(
        {op: "" for op in info.quantized_nodes},
        {},
        dict.fromkeys(info.quantized_nodes, 1.0),
        1.0,
        dict.fromkeys(kept, MIXED_RANGE),
    )
    assert {c.name for c in choices if c.reason == MIXED_RANGE} == set(kept)


def test_greedy_takes_gain_per_sensitivity_within_tolerance_and_verification_steps_back():
    sensitivity = {"a": 0.004, "b": 0.001, "c": 0.008, "d": 0.0}
    gains = {"a": 1.0, "b": 0.5, "c": 4.0, "d": -0.2}
    choices = greedy_plan(dict.fromkeys("abcd", "Conv"), sensitivity, gains, 0.01, {})
    assert [(c.name, c.int8, c.reason) for c in choices] == [
        ("a", False, OVER_TOLERANCE),
        ("b", True, CHOSEN),
        ("c", True, CHOSEN),
        ("d", False, SLOWER),
    ]
    checks = []

    def verify(float_ops):
        checks.append(sorted(float_ops))
        return Verification(4 - len(float_ops), 0.02 if "c" not in float_ops else 0.0, 2.0, 1.0, "c" in float_ops)

    stepped, history = verified_plan(choices, verify)
    assert checks == [["a", "d"], ["a", "c", "d"]]  # the most sensitive int8 op went back first
    assert [c.name for c in stepped if c.int8] == ["b"] and history[-1].accepted
    assert next(c for c in stepped if c.name == "c").reason == STEPPED_BACK
    never, _ = verified_plan(choices, lambda ops: Verification(1, 1.0, 1.0, 2.0, False), rounds=1)
    assert not any(c.int8 for c in never)
    assert {c.reason for c in never if c.name in "bc"} == {STEPPED_BACK, UNVERIFIED}


def test_quant_post_mixed_precision_auto_lists_per_op_decisions(tiny_cnn, tmp_path):
    rng = np.random.default_rng(0)
    data = [{"x": rng.standard_normal((4, 3, 16, 16)).astype(np.float32)} for _ in range(3)]
    config = {
        "Global": {"cache_dir": str(tmp_path / "cache")},
        "QuantPost": {"mixed_precision": "auto", "algo": "abs_max"},
    }
    result = AutoCompression(tiny_cnn, data, save_dir=tmp_path / "out", config=config, eval_dataloader=data)
    report = result.compress().report
    info = report["timeline"][0]["info"]
    plan = info["mixed_precision"]
    ops = [op for op in info["ops"] if "sensitivity" in op]
    assert ops and all("gain_ms" in op and op["action"] in ("int8", "float") and op["reason"] for op in ops)
    assert plan["int8_ops"] == sum(op["action"] == "int8" for op in ops)
    if plan["int8_ops"]:  # a plan kept in int8 passed the whole-model check: within tolerance and faster
        assert plan["verifications"][-1]["accepted"]
    assert sum(op["sensitivity"] for op in ops if op["action"] == "int8") <= 0.01 + 1e-9


def test_concats_of_integer_shapes_are_no_mixed_range_candidates():
    """A Concat that builds a Reshape's target shape is int64: reading it as a float output would not load."""
    shape = helper.make_node("Shape", ["x"], ["s"], name="shape")
    head = helper.make_node("Slice", ["s", "zero", "one"], ["n"], name="head")
    join = helper.make_node("Concat", ["n", "minus_one"], ["target"], name="join", axis=0)
    flat = helper.make_node("Reshape", ["x", "target"], ["y"], name="flat")
    graph = helper.make_graph(
        [shape, head, join, flat],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [
            numpy_helper.from_array(np.array([0], np.int64), "zero"),
            numpy_helper.from_array(np.array([1], np.int64), "one"),
            numpy_helper.from_array(np.array([-1], np.int64), "minus_one"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    candidates = mixed_range_candidates(model)
    assert candidates == {"y": None}
    feeds = [{"x": np.ones((2, 3, 4), np.float32)}]
    assert set(channel_ranges(model, feeds, candidates)) == {"y"}


def test_only_ops_that_gain_in_int8_are_scored_and_each_alone(monkeypatch):
    """Sensitivity costs one quantization per op: ops that stay float anyway (no gain, mixed range) are not scored,
    and each scored op is quantized alone, the unscored ones float."""
    import autocompress.quant.mixed_precision as mp
    from autocompress.quant.qdq import QDQOptions

    model = _detector()
    rng = np.random.default_rng(2)
    feeds = [{"x": rng.standard_normal((1, 3, 8, 8)).astype(np.float32)}]
    stats = collect_statistics(model, feeds, calibration_tensors(model), algorithms=["abs_max"])
    quantized_alone: list[set[str]] = []
    every = set(quantize_post_training(model, stats, algo="abs_max")[1].quantized_nodes)

    def quantize(float_ops):
        quantized_alone.append(every - set(float_ops))
        return quantize_post_training(model, stats, algo="abs_max", skip_names=float_ops)[0]

    monkeypatch.setattr(mp, "_gains", lambda job, plan, ops: {op: (1.0 if op == "stem" else -1.0) for op in ops})
    job = mp.MixedPrecisionJob(
        model=model,
        options=QDQOptions(),
        quantize=quantize,
        feeds=feeds,
        sample_feed=feeds[0],
        hardware=mp.HardwareTarget("cpu", ("CPUExecutionProvider",), True),
        threads=1,
        tolerance=1.0,
        max_drop=1.0,
        drop_of=lambda candidate: 0.0,
    )
    plan = mp.plan_mixed_precision(job)
    assert quantized_alone[0] == {"stem"}  # the one sensitivity run: stem alone in int8
    choices = {c.name: c for c in plan.choices}
    assert choices["stem"].sensitivity > 0 and choices["stem"].reason != SLOWER
    assert all(c.reason in (SLOWER, mp.MIXED_RANGE) and c.sensitivity == 0 for n, c in choices.items() if n != "stem")


def test_a_check_far_over_the_allowed_drop_steps_back_in_proportion():
    """A whole-model drop ten times the allowed one keeps about a twentieth of the sensitivity in int8 (the drop
    taken as proportional to it, with a margin), not a fixed third; the least sensitive op stays for a check."""
    ops = [f"op{i}" for i in range(10)]
    sensitivity = {op: 0.001 * (i + 1) for i, op in enumerate(ops)}
    choices = greedy_plan(dict.fromkeys(ops, "Conv"), sensitivity, dict.fromkeys(ops, 1.0), 1.0, {})
    checks = []

    def verify(float_ops):
        checks.append(len(ops) - len(float_ops))
        drop = sum(sensitivity[op] for op in ops if op not in float_ops)
        return Verification(len(ops) - len(float_ops), drop, 2.0, 1.0, drop <= 0.0055)

    stepped, history = verified_plan(choices, verify, max_drop=0.0055)
    # drop 0.055 -> keep 5% of the sensitivity (0.00275): op0 alone, checked once more and accepted
    assert checks == [10, 1] and history[-1].accepted
    assert [c.name for c in stepped if c.int8] == ["op0"]
    checks.clear()
    by_thirds, _ = verified_plan(choices, verify, rounds=2)  # without the allowed drop: a third per step
    assert checks == [10, 6] and not any(c.int8 for c in by_thirds)


def test_a_plan_within_the_drop_but_not_faster_moves_halfway_back_towards_more_int8_ops():
    """Between a count of int8 ops known over the allowed drop and one known within it but not faster, the next
    check takes the count halfway (the least sensitive ops first): 10 over, 2 not faster, 6 over, 4 accepted."""
    ops = [f"op{i}" for i in range(10)]
    sensitivity = {op: 0.001 for op in ops}
    choices = greedy_plan(dict.fromkeys(ops, "Conv"), sensitivity, dict.fromkeys(ops, 1.0), 1.0, {})
    checks = []

    def verify(float_ops):
        count = len(ops) - len(float_ops)
        checks.append(count)
        return Verification(count, 0.001 * count, 2.0, 1.0 if count >= 4 else 2.5, 0.001 * count <= 0.0055)

    plan, history = verified_plan(choices, verify, max_drop=0.0055)
    assert checks == [10, 2, 6, 4] and history[-1].accepted
    assert sum(c.int8 for c in plan) == 4


def test_without_an_eval_callback_the_allowed_drop_is_a_share_of_the_outputs_spread(tiny_cnn, tmp_path, monkeypatch):
    """EMD's baseline is 0: the allowed drop is 5% of the original outputs' spread, not 5% of 0."""
    import autocompress.strategy.quant_post as quant_post

    jobs = []
    monkeypatch.setattr(quant_post, "plan_mixed_precision", lambda job: jobs.append(job) or MixedPrecisionPlan([]))
    rng = np.random.default_rng(0)
    data = [{"x": rng.standard_normal((4, 3, 16, 16)).astype(np.float32)} for _ in range(3)]
    config = {
        "Global": {"cache_dir": str(tmp_path / "cache"), "auto_max_relative_drop": 0.05},
        "QuantPost": {"mixed_precision": "auto", "algo": "abs_max"},
    }
    AutoCompression(tiny_cnn, data, save_dir=tmp_path / "out", config=config, eval_dataloader=data).compress()
    (job,) = jobs
    assert job.tolerance == pytest.approx(0.05)
    assert job.max_drop > 1e-6  # 5% of the outputs' spread (of order 0.1 here), where 5% of 0 was 5e-14


def test_no_check_starts_past_the_deadline():
    """Past the time budget the plan is not verified, and an unverified op does not stay int8."""
    choices = greedy_plan({"a": "Conv"}, {"a": 0.0}, {"a": 1.0}, 1.0, {})
    checked = []
    plan, history = verified_plan(choices, lambda f: checked.append(f), deadline=0.0)
    assert checked == [] and history == [] and [c.reason for c in plan] == [UNVERIFIED]
