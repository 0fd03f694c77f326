"""The QuantAware stage end to end through AutoCompression, on a small digit classifier."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from sklearn.datasets import load_digits
from torch import nn

from autocompress import AutoCompression
from autocompress.errors import ConfigError
from autocompress.strategy.quant_aware import INITIAL_RANGES
from autocompress.train.checkpoint import CHECKPOINT_NAME

# 2-bit weights: a setting where post-training quantization visibly loses accuracy and training must win it back.
QAT_CONFIG = {
    "QuantAware": {"weight_bits": 2},
    "Distillation": {},
    "TrainConfig": {"train_iter": 20, "eval_iter": 10},
}


class _Digits(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(1, 8, 3, padding=1),
            nn.BatchNorm2d(8),
            nn.ReLU(),
            nn.Conv2d(8, 16, 3, stride=2, padding=1),
            nn.BatchNorm2d(16),
            nn.ReLU(),
            nn.Flatten(),
        )
        self.head = nn.Linear(16 * 4 * 4, 10)

    def forward(self, x):
        return self.head(self.body(x))


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    """(model dir, train batches, held-out images, held-out labels) of a briefly trained classifier."""
    data = load_digits()
    images = (data.images[:, None] / 16.0).astype(np.float32)
    order = np.random.default_rng(0).permutation(len(images))
    images, labels = images[order], data.target[order]
    torch.manual_seed(0)
    net = _Digits()
    optimizer = torch.optim.Adam(net.parameters(), 1e-2)
    for _ in range(2):
        for i in range(0, 1200, 64):
            logits = net(torch.from_numpy(images[i : i + 64]))
            loss = nn.functional.cross_entropy(logits, torch.from_numpy(labels[i : i + 64]))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    model_dir = tmp_path_factory.mktemp("digits")
    torch.onnx.export(
        net.eval(),
        torch.randn(1, 1, 8, 8),
        str(model_dir / "digits.onnx"),
        input_names=["x"],
        output_names=["logits"],
        dynamic_axes={"x": {0: "n"}, "logits": {0: "n"}},
        opset_version=13,
        dynamo=False,
    )
    train = [{"x": images[i : i + 32]} for i in range(0, 256, 32)]
    return model_dir, train, images[1200:], labels[1200:]


@pytest.fixture(autouse=True)
def _statistics_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("AUTOCOMPRESS_CACHE_DIR", str(tmp_path / "cache"))


def _accuracy(images, labels):
    def accuracy(predictor) -> float:
        return float(np.mean(predictor({"x": images})[0].argmax(1) == labels))

    return accuracy


def _compress(digits, save_dir, config, eval_callback=None):
    model_dir, train, images, labels = digits
    return AutoCompression(
        model_dir, train, save_dir=save_dir, config=config, eval_callback=eval_callback or _accuracy(images, labels)
    ).compress()


def test_qat_with_distillation_beats_post_training_quantization(digits, tmp_path):
    ptq = _compress(digits, tmp_path / "ptq", {"QuantPost": {"weight_bits": 2}})
    qat = _compress(digits, tmp_path / "qat", QAT_CONFIG)
    info = qat.report["timeline"][0]["info"]
    assert info["steps"] == 20 and info["selected"] == "trained"
    # training starts from the best of the candidate PTQ ranges, QuantPost's default (hist 0.999) among them
    assert info["initial_ranges"] in {"hist 0.999", "avg", "mse"}
    assert info["initial_metric"] >= ptq.compressed.metric - 1e-9
    assert info["trained_metric"] >= ptq.compressed.metric + 0.05
    assert qat.compressed.metric == pytest.approx(info["trained_metric"])
    saved = onnx.load(str(qat.model_path))
    weights = [
        onnx.numpy_helper.to_array(t)
        for t in saved.graph.initializer
        if t.name.endswith("_quantized") and len(t.dims) > 1
    ]  # not the int32 biases
    assert weights and all(w.dtype == np.int8 and np.abs(w).max() <= 1 for w in weights)  # 2 bits: {-1, 0, 1}


def test_tensorrt_target_gets_symmetric_activations(digits, tmp_path):
    config = {
        **QAT_CONFIG,
        "QuantAware": {"for_tensorrt": True, "use_pact": True},
        "TrainConfig": {"train_iter": 4, "eval_iter": 4},
    }
    result = _compress(digits, tmp_path / "trt", config)
    saved = onnx.load(str(result.model_path))
    zero_points = [onnx.numpy_helper.to_array(t) for t in saved.graph.initializer if t.name.endswith("_zero_point")]
    assert zero_points and all(z.dtype == np.int8 and not z.any() for z in zero_points)
    assert result.report["timeline"][0]["info"]["activation_quantize_type"] == "pact"


def test_sparse_model_stays_sparse_through_qat(digits, tmp_path):
    model_dir, train, images, labels = digits
    model = onnx.load(str(model_dir / "digits.onnx"))
    rng = np.random.default_rng(0)
    pruned = {}  # conv weight shape -> where it is zero
    for tensor in model.graph.initializer:
        if len(tensor.dims) == 4:
            value = onnx.numpy_helper.to_array(tensor) * (rng.random(tuple(tensor.dims)) > 0.5)
            tensor.CopyFrom(onnx.numpy_helper.from_array(value, tensor.name))
            pruned[value.shape] = value == 0
    sparse_dir = tmp_path / "sparse"
    sparse_dir.mkdir()
    onnx.save(model, str(sparse_dir / "digits.onnx"))
    train_config = {
        "train_iter": 10,
        "eval_iter": 10,
        "sparse_model": True,
        "learning_rate": 0.003,
        "optimizer_builder": {"optimizer": {"type": "Adam"}},
    }  # steps larger than a weight step
    # the dense model teaches its pruned copy, so training clearly improves on the starting point
    config = {
        "QuantAware": {"float_stem": False},
        "Distillation": {"teacher_model_dir": str(model_dir)},
        "TrainConfig": train_config,
    }  # the 1-channel stem quantized too, so every conv weight is checked
    result = _compress((sparse_dir, train, images, labels), tmp_path / "o", config)
    saved = [onnx.numpy_helper.to_array(t) for t in onnx.load(str(result.model_path)).graph.initializer]
    exported = {w.shape: w for w in saved if w.dtype == np.int8 and w.ndim == 4}
    assert exported.keys() == pruned.keys()
    assert all(np.all(exported[shape][zero] == 0) for shape, zero in pruned.items())
    info = result.report["timeline"][0]["info"]
    assert info["keeps_zeros"] and info["selected"] == "trained"


class _Interrupted(Exception):
    pass


#: Evaluations before the first training step: the baseline and each candidate of the initial ranges.
BEFORE_TRAINING = 1 + len(INITIAL_RANGES)


def test_an_interrupted_run_resumes_from_its_checkpoint(digits, tmp_path):
    model_dir, train, images, labels = digits
    accuracy = _accuracy(images, labels)
    calls = []

    def failing_on_the_second_training_eval(predictor):
        calls.append(1)
        if len(calls) == BEFORE_TRAINING + 2:  # step 10, then step 20 fails
            raise _Interrupted
        return accuracy(predictor)

    save_dir = tmp_path / "resumed"
    with pytest.raises(_Interrupted):
        _compress(digits, save_dir, QAT_CONFIG, failing_on_the_second_training_eval)
    assert (tmp_path / "resumed.work" / "QuantAware" / CHECKPOINT_NAME).exists()

    rerun_calls = []

    def counting(predictor):
        rerun_calls.append(1)
        return accuracy(predictor)

    resumed = _compress(digits, save_dir, QAT_CONFIG, counting)
    assert len(rerun_calls) == BEFORE_TRAINING + 2  # step 20, final: steps 1-10 were not redone
    uninterrupted = _compress(digits, tmp_path / "straight", QAT_CONFIG)
    assert resumed.report["timeline"][0]["info"]["steps"] == 20
    assert onnx.load(str(resumed.model_path)) == onnx.load(str(uninterrupted.model_path))


def test_qat_without_training_data_is_a_config_error(digits, tmp_path):
    model_dir, train, images, labels = digits
    with pytest.raises(ConfigError, match="train_dataloader"):
        AutoCompression(
            model_dir,
            None,
            save_dir=tmp_path / "o",
            config=QAT_CONFIG,
            eval_callback=_accuracy(images, labels),
            eval_dataloader=train,
        ).compress()


def test_op_types_matching_nothing_are_a_config_error_not_a_float_export(digits, tmp_path):
    config = {**QAT_CONFIG, "QuantAware": {"quantize_op_types": ["ConvTranspose"]}}
    with pytest.raises(ConfigError, match="match no quantizable node"):
        _compress(digits, tmp_path / "o", config)


def _conv_scale_model(model_dir):
    """x -> Conv -> Relu -> Div by 6 -> Conv, hardswish's tail: PTQ folds the Div into the second Conv."""
    rng = np.random.default_rng(0)
    initializers = [
        onnx.numpy_helper.from_array(rng.standard_normal((4, 3, 3, 3)).astype(np.float32), "W"),
        onnx.numpy_helper.from_array(np.array(6.0, np.float32), "six"),
        onnx.numpy_helper.from_array(rng.standard_normal((2, 4, 1, 1)).astype(np.float32), "W2"),
    ]
    nodes = [
        onnx.helper.make_node("Conv", ["x", "W"], ["c"], pads=[1, 1, 1, 1]),
        onnx.helper.make_node("Relu", ["c"], ["r"]),
        onnx.helper.make_node("Div", ["r", "six"], ["d"]),
        onnx.helper.make_node("Conv", ["d", "W2"], ["y"]),
    ]
    graph = onnx.helper.make_graph(
        nodes,
        "conv_scale",
        [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["n", 3, 8, 8])],
        [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, ["n", 2, 8, 8])],
        initializers,
    )
    model = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 13)], ir_version=8)
    onnx.save(model, str(model_dir / "model.onnx"))


def test_qat_folds_constant_scales_into_convs_like_ptq(tmp_path):
    """The exported QAT model has PTQ's node structure: no Div left behind for ORT to run as an extra kernel."""
    (tmp_path / "model").mkdir()
    _conv_scale_model(tmp_path / "model")
    rng = np.random.default_rng(1)
    train = [{"x": rng.standard_normal((4, 3, 8, 8)).astype(np.float32)} for _ in range(4)]

    def op_types(config, name):
        result = AutoCompression(
            str(tmp_path / "model"),
            train,
            save_dir=tmp_path / name,
            config=config,
            eval_callback=lambda predictor: -float(np.abs(predictor(train[0])[0]).mean()),
        ).compress()
        return sorted(n.op_type for n in onnx.load(str(result.model_path)).graph.node)

    # the model's only Conv reads 3 channels: quantize it anyway (float_stem would leave it float on CPU)
    qat_config = {
        "QuantAware": {"float_stem": False},
        "Distillation": {},
        "TrainConfig": {"train_iter": 2, "eval_iter": 2},
    }
    qat, ptq = op_types(qat_config, "qat"), op_types({"QuantPost": {"float_stem": False}}, "ptq")
    assert "Div" not in qat
    assert qat == ptq
