"""A compressed model that fails onnx.checker or gives NaN/Inf is never committed to save_dir."""

from __future__ import annotations

import copy

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

import autocompress.api as api
from autocompress import AutoCompression
from autocompress.errors import AutoCompressError
from autocompress.strategy.base import StageResult


def _times_infinity(model: onnx.ModelProto) -> onnx.ModelProto:
    """Multiply the first output by +inf (NaN where it is 0): a model that runs but is broken."""
    out = model.graph.output[0].name
    producer = next(n for n in model.graph.node if out in n.output)
    producer.output[list(producer.output).index(out)] = f"{out}_finite"
    model.graph.initializer.append(numpy_helper.from_array(np.array(np.inf, np.float32), "infinity"))
    model.graph.node.append(helper.make_node("Mul", [f"{out}_finite", "infinity"], [out], name="poison"))
    return model


def _unknown_op(model: onnx.ModelProto) -> onnx.ModelProto:
    model.graph.node.append(helper.make_node("NoSuchOp", [model.graph.input[0].name], ["unused"], name="bad"))
    return model


class _BreakingStage:
    def __init__(self, breaker):
        self.name, self.breaker = "breaking", breaker

    def run(self, model, ctx):
        return StageResult(self.breaker(copy.deepcopy(model)))


@pytest.mark.parametrize("breaker, message", [(_times_infinity, "NaN/Inf"), (_unknown_op, "onnx.checker")])
def test_broken_result_is_refused_and_save_dir_keeps_the_previous_result(
    tiny_cnn, tiny_batches, tmp_path, monkeypatch, breaker, message
):
    save = tmp_path / "out"
    AutoCompression(tiny_cnn, tiny_batches, save_dir=save, eval_dataloader=tiny_batches).compress()
    before = {p.name: p.read_bytes() for p in save.iterdir()}
    monkeypatch.setattr(api, "plan_stages", lambda config: [_BreakingStage(breaker)])
    with pytest.raises(AutoCompressError, match=message):
        AutoCompression(tiny_cnn, tiny_batches, save_dir=save, eval_dataloader=tiny_batches).compress()
    assert {p.name: p.read_bytes() for p in save.iterdir()} == before
    assert not [p for p in tmp_path.iterdir() if ".tmp-" in p.name]
