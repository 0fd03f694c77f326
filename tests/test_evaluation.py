"""EMD evaluation: sessions opened per evaluation."""

import onnx
import pytest
from onnx import numpy_helper

from autocompress import evaluation
from autocompress.data.batches import BatchAdapter, input_specs
from autocompress.runtime.ort import Predictor, resolve_hardware
from autocompress.search.emd import emd_distance


@pytest.fixture()
def opened(monkeypatch) -> list[onnx.ModelProto]:
    """The model of every session the evaluator opens."""
    models: list[onnx.ModelProto] = []

    def counting(model, *args, **kwargs):
        models.append(model)
        return Predictor(model, *args, **kwargs)

    monkeypatch.setattr(evaluation, "Predictor", counting)
    return models


def test_the_baseline_evaluation_opens_one_session_of_the_original(tiny_cnn, tiny_batches, opened):
    reference = onnx.load(str(tiny_cnn))
    candidate = onnx.load(str(tiny_cnn))
    for tensor in candidate.graph.initializer:
        values = numpy_helper.to_array(tensor)
        tensor.CopyFrom(numpy_helper.from_array((values * 1.05).astype(values.dtype), tensor.name))
    batches = BatchAdapter(tiny_batches, input_specs(reference), "eval")
    evaluator = evaluation.Evaluator(reference, resolve_hardware("cpu"), eval_batches=batches)

    assert evaluator(reference) == pytest.approx(0.0, abs=1e-12)
    assert opened == [reference]  # the reference outputs and the scored outputs come from one session
    expected = emd_distance([Predictor(reference)(b) for b in tiny_batches],
                            [Predictor(candidate)(b) for b in tiny_batches])  # fmt: skip
    assert evaluator(candidate) == pytest.approx(expected, rel=1e-12) and expected > 0
    assert opened == [reference, candidate]  # every reference output was cached: no second reference session
