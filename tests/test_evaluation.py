"""EMD evaluation: sessions opened per evaluation."""

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from autocompress import evaluation
from autocompress.data.batches import BatchAdapter, input_specs
from autocompress.errors import ConfigError, DataError
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
    expected = emd_distance(
        [Predictor(reference)(b) for b in tiny_batches], [Predictor(candidate)(b) for b in tiny_batches]
    )
    assert evaluator(candidate) == pytest.approx(expected, rel=1e-12) and expected > 0
    assert opened == [reference, candidate]  # every reference output was cached: no second reference session


def accuracy(predictor) -> float:
    return 0.5


@pytest.mark.parametrize("value", [float("inf"), float("-inf"), float("nan"), np.float32(np.inf)])
def test_a_non_finite_callback_metric_is_refused_naming_the_callback_and_value(tiny_cnn, value):
    model = onnx.load(str(tiny_cnn))
    evaluator = evaluation.Evaluator(model, resolve_hardware("cpu"), eval_callback=lambda predictor: value)
    evaluator.name = "accuracy"
    with pytest.raises(DataError, match=rf"eval_callback 'accuracy' gave {float(value)} .*must be a finite number"):
        evaluator(model)
    assert evaluation.Evaluator(model, resolve_hardware("cpu"), eval_callback=accuracy)(model) == 0.5


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # scipy subtracts inf from inf
@pytest.mark.parametrize("bad", [np.inf, np.nan])
def test_a_non_finite_emd_is_refused(tiny_cnn, tiny_batches, bad):
    reference = onnx.load(str(tiny_cnn))
    candidate = onnx.load(str(tiny_cnn))
    bias = next(t for t in candidate.graph.initializer if t.name.endswith("head.bias"))
    values = numpy_helper.to_array(bias).copy()
    values[0] = bad  # one class's logit
    bias.CopyFrom(numpy_helper.from_array(values, bias.name))
    batches = BatchAdapter(tiny_batches, input_specs(reference), "eval")
    evaluator = evaluation.Evaluator(reference, resolve_hardware("cpu"), eval_batches=batches)
    with pytest.raises(DataError, match=r"the EMD metric gave (nan|inf) .*must be a finite number.*NaN/Inf"):
        evaluator(candidate)


def _scores(predictor) -> dict:
    return {"top1": 0.75, "top5": np.float32(0.5)}


def test_a_mapping_callback_names_the_metric_by_its_first_key_and_keeps_the_others(tiny_cnn):
    model = onnx.load(str(tiny_cnn))
    evaluator = evaluation.Evaluator(model, resolve_hardware("cpu"), eval_callback=_scores)
    assert evaluator(model) == 0.75
    assert evaluator.name == "top1" and evaluator.extra_metrics == {"top5": 0.5}
    named = evaluation.Evaluator(model, resolve_hardware("cpu"), eval_callback=_scores, metric_name="accuracy")
    assert named(model) == 0.75 and named.name == "accuracy" and named.extra_metrics == {"top5": 0.5}


def test_metric_name_names_a_plain_callback_and_must_be_text(tiny_cnn):
    model = onnx.load(str(tiny_cnn))
    assert evaluation.Evaluator(model, resolve_hardware("cpu"), accuracy, metric_name="mIoU").name == "mIoU"
    with pytest.raises(ConfigError, match="metric_name must be a non-empty string"):
        evaluation.Evaluator(model, resolve_hardware("cpu"), accuracy, metric_name=" ")


@pytest.mark.parametrize(
    ("returned", "message"),
    [
        ({}, "returned an empty mapping"),
        ({"top1": 0.5, "top5": "high"}, "'top5' is 'high'"),
        ({1: 0.5}, "its keys must be metric names"),
    ],
)
def test_a_bad_mapping_from_the_callback_is_a_config_error(tiny_cnn, returned, message):
    model = onnx.load(str(tiny_cnn))
    evaluator = evaluation.Evaluator(model, resolve_hardware("cpu"), eval_callback=lambda predictor: returned)
    with pytest.raises(ConfigError, match=message):
        evaluator(model)
