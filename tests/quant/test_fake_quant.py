"""Fake-quant modules: forward against the quantization formulas, straight-through and PACT gradients."""

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from autocompress.errors import ConfigError
from autocompress.quant.fake_quant import (
    ForwardCounter,
    MinMaxFakeQuant,
    ObserverFakeQuant,
    PACTFakeQuant,
    WeightFakeQuant,
    activation_qparams,
    fake_quantize_range,
)
from autocompress.quant.qdq import QDQOptions, write_qdq_model
from autocompress.quant.weights import dequantize_weight, quantize_weight, weight_scales


def _reference(x: torch.Tensor, scale: float, zero_point: int, qmin: int, qmax: int) -> torch.Tensor:
    q = np.clip(np.rint(x.numpy() / np.float32(scale)) + zero_point, qmin, qmax)
    return torch.from_numpy(((q - zero_point) * np.float32(scale)).astype(np.float32))


def _ort_quantize_dequantize(x: np.ndarray, scale: float, zero_point: int, symmetric: bool) -> np.ndarray:
    dtype = np.int8 if symmetric else np.uint8
    initializers = [
        numpy_helper.from_array(np.array(scale, np.float32), "s"),
        numpy_helper.from_array(np.array(zero_point, dtype), "z"),
    ]
    graph = helper.make_graph(
        [
            helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"]),
            helper.make_node("DequantizeLinear", ["q", "s", "z"], ["y"]),
        ],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]


def _one_conv() -> onnx.ModelProto:
    w = numpy_helper.from_array(np.random.default_rng(0).standard_normal((2, 1, 1, 1)).astype(np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w"], ["y"]), helper.make_node("Sigmoid", ["y"], ["z"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 2, 2])],
        [helper.make_tensor_value_info("z", TensorProto.FLOAT, None)],
        [w],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)


@pytest.mark.parametrize("symmetric", [False, True])
@pytest.mark.parametrize("low, high", [(-0.73, 2.9), (0.0, 5.1), (-3.3, -0.2), (0.0, 0.0)])
def test_activation_qparams_are_the_qdq_writers(symmetric, low, high):
    options = QDQOptions(symmetric_activations=symmetric)
    model, _ = write_qdq_model(_one_conv(), {"x": (low, high), "y": (low, high)}, options)
    values = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    scale, zero_point, qmin, qmax = activation_qparams(low, high, symmetric)
    assert np.float32(scale) == values["x_scale"]
    assert zero_point == int(values["x_zero_point"])
    assert (qmin, qmax) == ((-128, 127) if symmetric else (0, 255))
    assert values["x_zero_point"].dtype == (np.int8 if symmetric else np.uint8)


@pytest.mark.parametrize("symmetric", [False, True])
def test_activation_fake_quant_forward_and_straight_through_gradient(symmetric):
    low, high = -1.3, 2.1
    x = torch.linspace(-3, 4, 301, requires_grad=True)
    out = fake_quantize_range(x, low, high, symmetric)
    scale, zero_point, qmin, qmax = activation_qparams(low, high, symmetric)
    torch.testing.assert_close(out, _reference(x.detach(), scale, zero_point, qmin, qmax), atol=1e-6, rtol=0)
    out.sum().backward()
    q = torch.round(x.detach() / scale) + zero_point
    inside = (q >= qmin) & (q <= qmax)
    assert 0 < int(inside.sum()) < x.numel()
    torch.testing.assert_close(x.grad, inside.float())


@pytest.mark.parametrize("symmetric", [False, True])
def test_fake_quant_equals_onnxruntime_bit_for_bit(symmetric):
    """Ties included: ORT divides by the scale, so the fake-quant must too."""
    x = np.concatenate([np.linspace(-3, 4, 3001), np.random.default_rng(0).standard_normal(100_000) * 1.5])
    x = x.astype(np.float32)
    scale, zero_point, _, _ = activation_qparams(-1.3, 2.1, symmetric)
    expected = _ort_quantize_dequantize(x, scale, zero_point, symmetric)
    np.testing.assert_array_equal(fake_quantize_range(torch.from_numpy(x), -1.3, 2.1, symmetric).numpy(), expected)


@pytest.mark.parametrize("axis", [0, None])
@pytest.mark.parametrize("bits", [8, 4])
def test_weight_fake_quant_matches_the_exported_int8_weight(axis, bits):
    weight = torch.randn(6, 3, 3, 3)
    weight[2] = 0.0  # an all-zero channel gets scale 1, as in the writer
    quantizer = WeightFakeQuant(axis, bits)
    scales = quantizer.scales(weight).numpy()
    np.testing.assert_array_equal(scales, weight_scales(weight.numpy(), axis, bits))
    expected = dequantize_weight(quantize_weight(weight.numpy(), scales, axis, bits), scales, axis)
    w = weight.clone().requires_grad_(True)
    out = quantizer(w)
    np.testing.assert_allclose(out.detach().numpy(), expected, atol=1e-6)
    out.sum().backward()
    torch.testing.assert_close(w.grad, torch.ones_like(w))  # abs-max scales never clip: STE everywhere


def test_weight_mask_keeps_zeros_and_blocks_their_gradient():
    weight = torch.randn(4, 8)
    mask = (torch.rand(4, 8) > 0.5).float()
    w = (weight * mask).requires_grad_(True)
    out = WeightFakeQuant(0, 8, mask)(w + 0.1 * (1 - mask))  # even if a pruned entry drifted, it stays zero
    assert torch.all(out[mask == 0] == 0)
    out.pow(2).sum().backward()
    assert torch.all(w.grad[mask == 0] == 0) and torch.any(w.grad[mask == 1] != 0)


def test_moving_average_follows_paddles_state_and_accum():
    rate = 0.9
    quantizer = ObserverFakeQuant("moving_average_abs_max", symmetric=True, moving_rate=rate).train()
    state = accum = 0.0
    for value in (1.0, 3.0, 2.0):
        quantizer(torch.tensor([-value / 2, value]))
        state, accum = rate * state + 1, rate * accum + value
        low, high = quantizer.current_range()
        assert high == pytest.approx(accum / state) and low == pytest.approx(-accum / state)


def test_moving_average_tracks_min_and_max_for_asymmetric_ranges():
    quantizer = ObserverFakeQuant("moving_average_abs_max", symmetric=False, moving_rate=0.5).train()
    quantizer(torch.tensor([-1.0, 4.0]))
    quantizer(torch.tensor([-3.0, 2.0]))
    assert quantizer.current_range() == pytest.approx(((0.5 * -1 - 3) / 1.5, (0.5 * 4 + 2) / 1.5))


def test_initial_range_is_the_steady_state_and_eval_does_not_update():
    quantizer = ObserverFakeQuant("moving_average_abs_max", False, initial_range=(-1.0, 2.0), moving_rate=0.9)
    quantizer.eval()(torch.tensor([-50.0, 50.0]))
    assert quantizer.current_range() == pytest.approx((-1.0, 2.0))
    quantizer.train()(torch.tensor([-1.0, 12.0]))
    assert quantizer.current_range() == pytest.approx((-1.0, (9 * 2.0 + 12.0) / 10))


def test_range_abs_max_is_the_widest_range_in_the_window():
    quantizer = ObserverFakeQuant("range_abs_max", symmetric=True, window_size=2).train()
    for value, expected in ((1.0, 1.0), (5.0, 5.0), (2.0, 5.0), (1.5, 2.0)):  # 5 leaves the window at the 4th batch
        quantizer(torch.tensor([value]))
        assert quantizer.current_range() == (-expected, expected)


def test_abs_max_uses_the_current_batch_and_keeps_it_for_export():
    quantizer = ObserverFakeQuant("abs_max", symmetric=False).train()
    quantizer(torch.tensor([-2.0, 7.0]))
    quantizer(torch.tensor([-0.5, 3.0]))
    assert quantizer.current_range() == (-0.5, 3.0)


def test_observer_updates_once_per_counted_forward():
    counter = ForwardCounter()
    quantizer = ObserverFakeQuant("moving_average_abs_max", True, moving_rate=0.5, counter=counter).train()
    counter.bump()
    for _ in range(3):  # three readers of one tensor in one forward
        quantizer(torch.tensor([2.0]))
    counter.bump()
    quantizer(torch.tensor([4.0]))
    assert quantizer.current_range()[1] == pytest.approx((0.5 * 2 + 4) / 1.5)


def test_unknown_activation_quantize_type_is_a_config_error():
    with pytest.raises(ConfigError, match="moving_average_abs_max"):
        ObserverFakeQuant("kl")


def test_pact_asymmetric_gradients_follow_the_paper():
    pact = PACTFakeQuant(symmetric=False, initial_range=(-0.5, 1.0))
    x = torch.tensor([-2.0, -0.7, -0.2, 0.3, 0.9, 1.4, 3.0], requires_grad=True)
    out = pact(x)
    clipped = x.detach().clamp(-0.5, 1.0)
    torch.testing.assert_close(out.detach(), fake_quantize_range(clipped, -0.5, 1.0, False))
    out.sum().backward()
    torch.testing.assert_close(x.grad, ((x.detach() >= -0.5) & (x.detach() <= 1.0)).float())
    assert pact.upper.grad.item() == 2.0  # d out / d upper = 1 for each x above upper
    assert pact.lower.grad.item() == 2.0  # d out / d lower = 1 for each x below lower
    assert pact.exported_range() == (-0.5, 1.0)


def test_pact_symmetric_bound_gets_both_tails():
    pact = PACTFakeQuant(symmetric=True, initial_range=(-0.2, 1.0))
    x = torch.tensor([-3.0, -1.5, 0.0, 0.5, 2.0])
    pact(x).sum().backward()
    assert pact.lower is None and pact.exported_range() == (-1.0, 1.0)
    assert pact.upper.grad.item() == 1.0 - 2.0  # one value above 1, two below -1


def test_pact_learns_to_widen_a_clipping_range():
    pact = PACTFakeQuant(symmetric=False, initial_range=(0.0, 0.5))
    optimizer = torch.optim.SGD(pact.parameters(), lr=0.3)
    x = torch.rand(256) * 2.0
    for _ in range(50):
        loss = (pact(x) - x).pow(2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert 1.8 < pact.exported_range()[1] <= 2.05


def test_pact_bounds_never_cross_zero():
    pact = PACTFakeQuant(symmetric=False, initial_range=(-1.0, 1.0))
    with torch.no_grad():
        pact.lower.fill_(0.4)  # an optimizer step past 0
        pact.upper.fill_(-0.2)
    assert pact.exported_range() == (0.0, 0.0)
    assert torch.all(pact(torch.tensor([-1.0, 0.0, 1.0])) == 0)


def test_min_max_fake_quant_takes_the_range_of_the_value():
    x = torch.tensor([-0.3, 0.1, 1.7])
    torch.testing.assert_close(MinMaxFakeQuant(symmetric=False)(x), fake_quantize_range(x, -0.3, 1.7, False))
