"""A strategy defined outside the package is registered with one call and then loaded, validated and planned."""

from __future__ import annotations

import dataclasses

import onnx
import pytest
import yaml

from autocompress import AutoCompression
from autocompress.config import load_config, registry
from autocompress.config.base import Section
from autocompress.config.registry import StrategySpec, register_strategy, strategy_spec
from autocompress.errors import ConfigError, StrategyNotImplementedError
from autocompress.strategy.base import CompressionContext, Stage, StageResult
from autocompress.strategy.plan import plan_stages
from autocompress.strategy.quant_post import QuantPostStage


class Stamp(Section):
    """Writes a text into the model's metadata."""

    text: str = "stamped"


class StampStage(Stage):
    key = "Stamp"

    def run(self, model: onnx.ModelProto, ctx: CompressionContext) -> StageResult:
        stamped = onnx.ModelProto()
        stamped.CopyFrom(model)
        onnx.helper.set_model_props(stamped, {"stamp": self.section.text})
        return StageResult(stamped, {"stamp": self.section.text})


class OtherStage(Stage):
    key = "Other"

    def run(self, model: onnx.ModelProto, ctx: CompressionContext) -> StageResult:
        return StageResult(model)


@pytest.fixture(autouse=True)
def own_registry(monkeypatch):
    """Registrations made by a test vanish after it."""
    monkeypatch.setattr(registry, "_SPECS", dict(registry._SPECS))
    monkeypatch.setattr(registry, "_NAMES", dict(registry._NAMES))


@pytest.fixture
def stamp() -> StrategySpec:
    return register_strategy(
        StrategySpec("Stamp", Stamp, StampStage, order=15, family="prune/sparse", trains=True, aliases=("Mark",))
    )


def test_one_call_makes_a_config_section_with_its_alias_and_order(stamp):
    config = load_config({"QuantPost": {}, "Mark": {"text": "hi"}})
    assert config.strategies["Stamp"].text == "hi"
    assert config.stage_keys == ["Stamp", "QuantPost"]
    with pytest.raises(ConfigError, match=r"Stamp\.txt: unknown key"):
        load_config({"Stamp": {"txt": "hi"}})


def test_the_new_strategy_takes_part_in_the_combination_rules(stamp):
    with pytest.raises(ConfigError, match="choose one") as info:
        load_config({"Stamp": {}, "ChannelPrune": {}})
    assert "prune/sparse: ChannelPrune/ASPPrune/TransformerPrune/UnstructurePrune/Stamp" in str(info.value)


def test_plan_stages_builds_its_stage_in_order_and_joins_distillation_to_it(stamp):
    config = load_config({"QuantPost": {}, "Stamp": {}, "Distillation": {}})
    assert [type(stage) for stage in plan_stages(config)] == [StampStage, QuantPostStage]


def test_a_compression_runs_the_new_stage(stamp, tiny_cnn, tiny_batches, tmp_path):
    save = tmp_path / "out"
    result = AutoCompression(
        tiny_cnn, tiny_batches, save_dir=save, config={"Mark": {"text": "hi"}}, eval_dataloader=tiny_batches
    ).compress()
    props = {p.key: p.value for p in onnx.load(str(result.model_path)).metadata_props}
    assert props["stamp"] == "hi"
    assert yaml.safe_load((save / "config.yaml").read_text())["Stamp"] == {"text": "hi"}


def test_a_part_of_section_needs_its_strategy_and_runs_in_its_stage(stamp):
    register_strategy(StrategySpec("StampExtras", Stamp, part_of="Stamp"))
    with pytest.raises(ConfigError, match="add a Stamp section"):
        load_config({"StampExtras": {}})
    config = load_config({"StampExtras": {"text": "x"}, "Stamp": {}})
    assert config.stage_keys == ["Stamp"]
    assert [type(stage) for stage in plan_stages(config)] == [StampStage]


@pytest.mark.parametrize("name", ["QuantAware", "Quantization", "Global", "Mark"])
def test_a_taken_key_or_alias_is_refused(stamp, name):
    with pytest.raises(ConfigError, match=f"{name!r} is already used"):
        register_strategy(StrategySpec("Fresh", Stamp, StampStage, aliases=(name,)))
    assert strategy_spec("Fresh") is None


def test_a_record_needs_exactly_one_of_stage_and_part_of():
    with pytest.raises(ConfigError, match="either stage"):
        StrategySpec("Fresh", Stamp)
    with pytest.raises(ConfigError, match="either stage"):
        StrategySpec("Fresh", Stamp, StampStage, part_of="QuantPost")


def test_a_stage_of_another_key_is_refused_when_planned():
    register_strategy(StrategySpec("Fresh", Stamp, OtherStage))
    with pytest.raises(ConfigError, match="whose key is 'Fresh'"):
        plan_stages(load_config({"Fresh": {}}))


def test_a_stage_path_that_does_not_import_is_not_implemented(stamp):
    registry._SPECS["Stamp"] = dataclasses.replace(stamp, stage="autocompress.strategy.no_such_module:Stage")
    with pytest.raises(StrategyNotImplementedError, match="'Stamp' is not implemented"):
        plan_stages(load_config({"Stamp": {}}))
