import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

from autocompress.errors import ConfigError
from autocompress.graph.index import GraphIndex
from autocompress.prune.masks import apply_masks
from autocompress.prune.unstructured import GMPSchedule, sparsity_report, unstructured_masks


def two_layer_model() -> onnx.ModelProto:
    """conv3x3 (small weights) -> BN -> conv1x1 (large weights) -> Gemm."""
    rng = np.random.default_rng(0)
    inits = {
        "w3x3": rng.uniform(0.0, 1.0, (8, 3, 3, 3)),
        "w1x1": rng.uniform(10.0, 11.0, (8, 8, 1, 1)),
        "gamma": rng.uniform(0.0, 1.0, 8),
        "beta": np.zeros(8),
        "mean": np.zeros(8),
        "var": np.ones(8),
        "fc": rng.uniform(0.0, 1.0, (8, 4)),
        "fc_bias": np.full(4, 1e-6),
    }
    nodes = [
        helper.make_node("Conv", ["x", "w3x3"], ["a"], pads=[1, 1, 1, 1]),
        helper.make_node("BatchNormalization", ["a", "gamma", "beta", "mean", "var"], ["b"]),
        helper.make_node("Conv", ["b", "w1x1"], ["c"]),
        helper.make_node("GlobalAveragePool", ["c"], ["p"]),
        helper.make_node("Flatten", ["p"], ["f"]),
        helper.make_node("Gemm", ["f", "fc", "fc_bias"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 4])],
        [numpy_helper.from_array(v.astype(np.float32), k) for k, v in inits.items()],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


def test_local_ratio_gives_every_weight_the_ratio_and_skips_norms_and_biases():
    masks = unstructured_masks(two_layer_model(), "ratio", ratio=0.5, local_sparsity=True)
    assert set(masks) == {"w3x3", "w1x1", "fc"}
    for mask in masks.values():
        assert (mask == 0).mean() == pytest.approx(0.5, abs=1 / mask.size)


def test_global_ratio_prunes_small_layers_first():
    model = two_layer_model()
    masks = unstructured_masks(model, "ratio", ratio=0.5, local_sparsity=False)
    report = sparsity_report(apply_masks(model, masks))
    assert report.per_layer["w1x1"] == 0.0  # its weights are all larger than every other weight
    assert report.per_layer["w3x3"] > 0.5
    assert report.total == pytest.approx(0.5, abs=1e-3)


def test_threshold_mode_zeroes_only_small_magnitudes():
    model = two_layer_model()
    masks = unstructured_masks(model, "threshold", threshold=0.3)
    w = GraphIndex(model).constant_value("w3x3")
    np.testing.assert_array_equal(masks["w3x3"] == 0, np.abs(w) < 0.3)


def test_conv1x1_only_selects_pointwise_convolutions():
    assert set(unstructured_masks(two_layer_model(), ratio=0.5, prune_params_type="conv1x1_only")) == {"w1x1"}


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"prune_mode": "topk"}, "prune_mode"),
        ({"ratio": 1.0}, "prune_ratio"),
        ({"threshold": -1, "prune_mode": "threshold"}, "threshold"),
        ({"prune_params_type": "conv3x3"}, "prune_params_type"),
    ],
)
def test_invalid_settings(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        unstructured_masks(two_layer_model(), **kwargs)


def test_gmp_schedule_follows_the_cubic_ramp_of_the_reference_config():
    # the PaddleSeg example config: 4500 pruning + 4500 tuning iterations in 100 steps, 0.15 -> 0.75
    gmp = GMPSchedule.from_config(
        0.75,
        {
            "stable_iterations": 0,
            "pruning_iterations": 4500,
            "tunning_iterations": 4500,
            "resume_iteration": -1,
            "pruning_steps": 100,
            "initial_ratio": 0.15,
        },
    )
    assert gmp.period == 45
    assert gmp.ratio_at(-1) == 0.0
    assert gmp.ratio_at(0) == pytest.approx(0.15)
    assert gmp.ratio_at(44) == pytest.approx(0.15)
    assert gmp.ratio_at(45) == pytest.approx(0.15 + 0.6 * (1 - 0.99**3))
    assert gmp.ratio_at(50 * 45) == pytest.approx(0.15 + 0.6 * (1 - 0.5**3))
    assert gmp.ratio_at(99 * 45) == pytest.approx(0.15 + 0.6 * (1 - 0.01**3))
    assert gmp.ratio_at(4500) == 0.75 and gmp.ratio_at(100_000) == 0.75
    ratios = [gmp.ratio_at(i) for i in range(0, 4500, 45)]
    assert all(b > a for a, b in zip(ratios, ratios[1:]))
    assert gmp.mask_update_due(45) and not gmp.mask_update_due(46)


def test_gmp_stable_iterations_hold_ratio_zero():
    gmp = GMPSchedule(0.5, stable_iterations=200, pruning_iterations=1000, pruning_steps=10, initial_ratio=0.1)
    assert gmp.ratio_at(199) == 0.0
    assert gmp.ratio_at(200) == pytest.approx(0.1)
    assert gmp.ratio_at(1199) == pytest.approx(0.1 + 0.4 * (1 - 0.1**3))
    assert gmp.ratio_at(1200) == 0.5


@pytest.mark.parametrize("config", [{"pruning_steps": 0}, {"initial_ratio": 0.9}, {"warmup": 3}])
def test_gmp_invalid_config(config):
    with pytest.raises(ConfigError):
        GMPSchedule.from_config(0.5, config)


def test_gmp_prune_steps_is_the_seeds_iterations_between_ratio_increases():
    gmp = GMPSchedule.from_config(0.5, {"prune_steps": 25, "pruning_iterations": 100})
    assert gmp.pruning_steps == 4 and gmp.period == 25
    assert gmp.mask_update_due(25) and not gmp.mask_update_due(24)


def test_gmp_resume_iteration_starts_the_ramp_where_it_stopped():
    config = {"pruning_iterations": 100, "pruning_steps": 10, "initial_ratio": 0.1}
    fresh = GMPSchedule.from_config(0.5, {**config, "resume_iteration": -1})
    resumed = GMPSchedule.from_config(0.5, {**config, "resume_iteration": 60})
    assert fresh.first_iteration == 0 and resumed.first_iteration == 60
    assert resumed.ratio_at(resumed.first_iteration) == fresh.ratio_at(60) > fresh.ratio_at(0)
