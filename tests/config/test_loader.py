from pathlib import Path

import pytest
import yaml

from autocompress.config import QuantPost, TrainConfig, load_config
from autocompress.errors import ConfigError

SEEDS = Path(__file__).resolve().parents[3] / "shared" / "seeds"

PADDLESEG_SPARSE = """
Distillation:
  distill_lambda: 1.0
  distill_loss: l2_loss
  distill_node_pair:
  - teacher_relu_30.tmp_0
  - relu_30.tmp_0
  merge_feed: true
  teacher_model_dir: ./infermodel
  teacher_model_filename: model.pdmodel
  teacher_params_filename: model.pdiparams
UnstructurePrune:
  prune_strategy: gmp
  prune_mode: ratio
  pruned_ratio: 0.75
  gmp_config:
    stable_iterations: 0
    pruning_iterations: 4500
    tunning_iterations: 4500
    resume_iteration: -1
    pruning_steps: 100
    initial_ratio: 0.15
  prune_params_type: conv1x1_only
  local_sparsity: True
TrainConfig:
  epochs: 14
  eval_iter: 400
  learning_rate: 5.0e-03
  optimizer: SGD
  optim_args:
    weight_decay: 0.0005
"""

PADDLESEG_QUANT = """
Quantization:
  activation_bits: 8
  weight_bits: 8
  is_full_quantize: false
  not_quant_pattern:
  - skip_quant
  quantize_op_types:
  - conv2d
  - depthwise_conv2d
"""


def test_seed_sparse_config_loads_with_legacy_keys_normalised(tmp_path):
    path = tmp_path / "sparse.yaml"
    path.write_text(PADDLESEG_SPARSE)
    cfg = load_config(path)
    prune = cfg.strategies["UnstructurePrune"]
    assert prune.prune_ratio == 0.75 and prune.gmp_config.pruning_iterations == 4500
    dist = cfg.strategies["Distillation"]
    assert dist.loss == "l2" and dist.alpha == 1.0 and dist.node == ["teacher_relu_30.tmp_0", "relu_30.tmp_0"]
    assert cfg.train.optimizer_builder == {"optimizer": {"type": "SGD"}, "weight_decay": 0.0005}
    assert cfg.stage_keys == ["UnstructurePrune", "Distillation"]


def test_legacy_quantization_section_is_quant_aware():
    cfg = load_config(yaml.safe_load(PADDLESEG_QUANT))
    assert list(cfg.strategies) == ["QuantAware"]
    assert cfg.strategies["QuantAware"].quantize_op_types == ["conv2d", "depthwise_conv2d"]


def test_effective_config_round_trips(tmp_path):
    cfg = load_config(yaml.safe_load(PADDLESEG_SPARSE))
    text = cfg.to_yaml()
    assert "pruned_ratio" not in text and "distill_lambda" not in text and "optim_args" not in text
    again = load_config(yaml.safe_load(text))
    assert again.to_dict() == cfg.to_dict()


def test_typed_strategy_objects_and_seed_style_arguments():
    cfg = load_config(
        None,
        strategy_config={"QuantPost": QuantPost(algo="KL"), "HyperParameterOptimization": {"max_quant_count": 5}},
        train_config=TrainConfig(train_iter=10),
    )
    assert cfg.strategies["QuantPost"].algo == "KL"
    assert cfg.strategies["HyperParameterOptimization"].max_quant_count == 5
    assert cfg.train.train_iter == 10


@pytest.mark.parametrize(
    "config, words",
    [
        ({"QuantPost": {"algoo": "KL"}}, ["QuantPost.algoo", "unknown key", "algo"]),
        ({"QuantPost": {"algo": "bogus"}}, ["QuantPost.algo", "'bogus'", "KL"]),
        ({"QuantPost": {"weight_bits": "eight"}}, ["QuantPost.weight_bits"]),
        ({"Quantise": {}}, ["unknown config section", "QuantAware"]),
        ({"HyperParameterOptimization": {}}, ["add a QuantPost section"]),
        ({"QuantAware": {}, "QuantPost": {}}, ["choose one"]),
        ({"ChannelPrune": {"pruned_ratio": 1.5}}, ["pruned_ratio", "outside [0, 1)"]),
        (
            {"ChannelPrune": {"pruned_ratio": {"w": 0.5}, "ratio_allocation": "sensitivity"}},
            ["sensitivity", "one number"],
        ),
        ({"ChannelPrune": {"criterion": "taylor"}}, ["criterion", "output_error"]),
        ({"HyperParameterOptimization": {"hist_percent": [0.5, 1.5]}, "QuantPost": {}}, ["hist_percent", "(0, 1]"]),
        ({"TrainConfig": {"epochs": 1, "train_iter": 5}}, ["epochs or train_iter"]),
        ({"Distillation": {"loss": ["l2", "l2"], "alpha": [1.0]}}, ["alpha"]),
        (
            {
                "MultiTeacherDistillation": {
                    "loss": ["l2"],
                    "node": [["a", "b"]],
                    "alpha": [1.0, 2.0],
                    "teacher_model_dir": ["t"],
                }
            },
            ["alpha has 2 entries"],
        ),
        ({"UnstructurePrune": {"pruned_ratio": 0.5, "prune_ratio": 0.5}}, ["both 'pruned_ratio'"]),
    ],
)
def test_invalid_configs_name_the_key_and_the_allowed_values(config, words):
    with pytest.raises(ConfigError) as info:
        load_config(config)
    for word in words:
        assert word in str(info.value)


def test_unsupported_combination_lists_supported_ones():
    with pytest.raises(ConfigError, match="Supported"):
        load_config({"ChannelPrune": {}, "UnstructurePrune": {}})


def test_prune_then_quant_is_ordered_quant_last():
    cfg = load_config({"QuantPost": {}, "ChannelPrune": {}, "Distillation": {}})
    assert cfg.stage_keys == ["ChannelPrune", "Distillation", "QuantPost"]


def test_missing_yaml_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("QuantPost: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
