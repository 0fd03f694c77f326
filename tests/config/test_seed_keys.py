"""Every seed key either does what the seed says or is accepted with one warning that says what happens instead."""

from __future__ import annotations

import logging

import pytest

from autocompress.config import load_config
from autocompress.errors import ConfigError
from autocompress.prune.unstructured import GMPSchedule


def _gmp(**gmp_config):
    return load_config({"UnstructurePrune": {"prune_strategy": "gmp", "gmp_config": gmp_config}})


def test_prune_steps_is_the_iterations_between_two_ratio_increases():
    config = _gmp(pruning_iterations=400, prune_steps=40)
    gmp = config.strategies["UnstructurePrune"].gmp_config
    assert gmp.pruning_steps == 10
    assert GMPSchedule.from_config(0.5, gmp).period == 40
    assert "prune_steps" not in config.to_dict()["UnstructurePrune"]["gmp_config"]


@pytest.mark.parametrize(
    "gmp_config, words",
    [
        ({"prune_steps": 0}, ["prune_steps = 0", "from 1 to pruning_iterations (1000)"]),
        ({"prune_steps": 10, "pruning_steps": 5}, ["set prune_steps", "or pruning_steps"]),
        ({"pruning_steps": 20, "pruning_iterations": 10}, ["pruning_steps (20) must be at most pruning_iterations"]),
        ({"initial_ratio": 0.9}, ["initial_ratio (0.9) must be at most prune_ratio (0.55)"]),
        ({"resume_iteration": -2}, ["resume_iteration", "greater than or equal to -1"]),
    ],
)
def test_gmp_limits_are_config_errors(gmp_config, words):
    with pytest.raises(ConfigError) as info:
        _gmp(**gmp_config)
    for word in words:
        assert word in str(info.value)


def test_an_unknown_nested_key_lists_the_nested_sections_keys():
    with pytest.raises(ConfigError) as info:
        _gmp(warmup=3)
    message = str(info.value)
    assert "UnstructurePrune.gmp_config.warmup: unknown key; allowed keys of UnstructurePrune.gmp_config are" in message
    assert "'pruning_steps'" in message and "'prune_mode'" not in message


def test_the_seeds_none_literal_means_unset(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(
        "UnstructurePrune:\n  prune_strategy: None\n  prune_params_type: None\n"
        "ChannelPrune:\n  prune_params_name: None\n"
    )
    with pytest.raises(ConfigError, match="prune/sparse"):  # two prune strategies: the values were accepted
        load_config(path)
    path.write_text("UnstructurePrune:\n  prune_strategy: None\n  prune_params_type: None\n")
    section = load_config(path).strategies["UnstructurePrune"]
    assert section.prune_strategy is None and section.prune_params_type is None
    section.prune_params_type = "conv1x1_only"
    section.prune_params_type = "None"  # an API assignment reads it the same way
    assert section.prune_params_type is None
    path.write_text("UnstructurePrune:\n  prune_mode: None\n")  # a key that may not be unset stays an error
    with pytest.raises(ConfigError, match="prune_mode = 'None'"):
        load_config(path)


@pytest.mark.parametrize("kind", ["range_abs_max", "moving_average_abs_max"])
def test_tracked_weight_quantize_types_are_per_tensor_abs_max_with_one_warning(kind, caplog):
    with caplog.at_level(logging.WARNING, logger="autocompress"):
        section = load_config({"QuantAware": {"weight_quantize_type": kind}}).strategies["QuantAware"]
    assert section.weight_quantize_type == "abs_max"
    assert [r.levelno for r in caplog.records] == [logging.WARNING]
    assert kind in caplog.text and "read as 'abs_max'" in caplog.text


UNAPPLIED = {
    "batch_size": 8,
    "activation_quantize_type": "moving_average_abs_max",
    "epochs": 5,
    "lr": 0.5,
    "regions": [["a"]],
    "region_weights_names": [["w"]],
    "simulate_activation_quant": True,
    "onnx_format": False,
}


def test_quant_post_keys_it_does_not_apply_warn_once_each(caplog):
    with caplog.at_level(logging.WARNING, logger="autocompress"):
        load_config({"QuantPost": UNAPPLIED})
    messages = [r.getMessage() for r in caplog.records]
    assert sorted(m.split(" = ")[0] for m in messages) == sorted(f"QuantPost.{key}" for key in UNAPPLIED)
    assert all("is not applied: " in m for m in messages)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="autocompress"):
        load_config({"QuantPost": {"batch_size": 32, "epochs": 20, "simulate_activation_quant": False}})
    assert not caplog.records  # the defaults are what happens anyway


def test_amp_keys_of_the_seed_load_and_say_what_training_does(caplog):
    amp = {"custom_black_varnames": ["conv1.w"], "custom_white_list": [], "use_pure_fp16": True}
    with caplog.at_level(logging.WARNING, logger="autocompress"):
        train = load_config({"TrainConfig": {"amp_config": amp}}).train
    assert train.amp_config == amp
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 2  # the empty list asks for nothing
    assert "amp_config.custom_black_varnames = ['conv1.w'] is not applied: torch autocast cannot keep" in messages[0]
    assert "amp_config.use_pure_fp16 = True is not applied" in messages[1]


def test_grid_clip_is_the_gradient_clipping_key():
    clip = {"type": "ClipGradByValue", "max": 1.0}
    train = load_config({"TrainConfig": {"optimizer_builder": {"optimizer": {"type": "SGD"}, "grid_clip": clip}}}).train
    assert train.optimizer_builder == {"optimizer": {"type": "SGD"}, "grad_clip": clip}
    with pytest.raises(ConfigError, match="both 'grid_clip' and its current name 'grad_clip'"):
        load_config(
            {"TrainConfig": {"optimizer_builder": {"optimizer": {"type": "SGD"}, "grid_clip": clip, "grad_clip": clip}}}
        )
