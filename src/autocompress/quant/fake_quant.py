"""Fake-quant modules for quantization-aware training, with straight-through gradients.

Each module quantizes and dequantizes in float so the network trains against the rounding it will see
after export. The arithmetic is the QDQ writer's (quant.scales), so a trained range exports unchanged:

* weights: symmetric signed, scale = abs max / (2**(bits-1) - 1) per output channel or per tensor,
  recomputed from the current weight every step (Paddle's channel_wise_abs_max / abs_max);
* activations: a range (low, high) per tensor; symmetric S8 (zero point 0, for TensorRT) uses
  scale = max(|low|, |high|) / 127, asymmetric U8 (ORT CPU) uses scale = (high - low) / 255 with
  low <= 0 <= high and an integer zero point. The range comes from an observer (moving_average_abs_max,
  range_abs_max, abs_max) or, with PACT, from learnable clipping bounds.

Gradients: d out / d x = 1 where x lies inside the representable range and 0 where it is clipped
(the straight-through estimator).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from autocompress.errors import ConfigError
from autocompress.quant.scales import activation_qparams
from autocompress.quant.weights import broadcast_scale, quantization_levels

ACTIVATION_QUANTIZE_TYPES = ("moving_average_abs_max", "range_abs_max", "abs_max")
# Paddle's initial PACT clipping value when no calibration range is known.
PACT_DEFAULT_CLIP = 20.0


class ForwardCounter:
    """Counts forwards of the graph that owns the quantizers.

    One activation tensor feeds several quantized consumers, each through the same quantizer; the counter
    lets an observer update its statistics once per forward however many consumers call it.
    """

    def __init__(self) -> None:
        self.count = 0

    def bump(self, *_: object) -> None:
        self.count += 1


class _RoundToGrid(torch.autograd.Function):
    """(clamp(round(x / scale) + zp, qmin, qmax) - zp) * scale with a straight-through gradient inside the grid.

    Written out rather than torch.fake_quantize_per_*_affine: those multiply by 1 / scale while ONNX Runtime's
    QuantizeLinear divides, and the two round exact ties differently (4 values in 1e5 standard normals), which
    would break bit-exact agreement between the trained graph and the exported model.
    """

    @staticmethod
    def forward(ctx, x, scale, zero_point, qmin, qmax):
        q = torch.div(x, scale).round_().add_(zero_point)
        clamped = q.clamp(qmin, qmax)
        ctx.save_for_backward(clamped == q)  # inside the grid: the only place a gradient passes
        return clamped.sub_(zero_point).mul_(scale)

    @staticmethod
    def backward(ctx, grad):
        (inside,) = ctx.saved_tensors
        return torch.where(inside, grad, 0.0), None, None, None, None


def fake_quantize(
    x: torch.Tensor, scale: torch.Tensor | float, zero_point: torch.Tensor | int, qmin: int, qmax: int
) -> torch.Tensor:
    """Quantize-dequantize on an affine grid (scale/zero_point broadcast against x), as ORT's Q then DQ."""
    return _RoundToGrid.apply(x, scale, zero_point, qmin, qmax)


def fake_quantize_range(x: torch.Tensor, low: float, high: float, symmetric: bool, bits: int = 8) -> torch.Tensor:
    """Quantize-dequantize x on the grid of range (low, high); straight-through gradient inside the range."""
    scale, zero_point, qmin, qmax = activation_qparams(low, high, symmetric, bits)
    return fake_quantize(x, scale, zero_point, qmin, qmax)


def batch_range(x: torch.Tensor, symmetric: bool) -> tuple[float, float]:
    """(min, max) of a batch; (-abs max, abs max) for symmetric quantization (Paddle's abs_max statistic)."""
    if x.numel() == 0:
        return 0.0, 0.0
    low, high = (float(v) for v in torch.aminmax(x.detach()))
    if symmetric:
        abs_max = max(-low, high)
        return -abs_max, abs_max
    return low, high


class WeightFakeQuant(nn.Module):
    """Symmetric signed weight fake-quant with abs-max scales from the current weight (per channel or tensor).

    `mask` (1 = keep, 0 = pruned) multiplies the weight first: pruned entries stay exactly zero and get no
    gradient, so a sparse model stays sparse through training.
    """

    def __init__(self, axis: int | None, bits: int = 8, mask: torch.Tensor | None = None):
        super().__init__()
        self.axis, self.bits = axis, bits
        self.levels = quantization_levels(bits)
        if mask is not None:
            self.register_buffer("mask", mask.detach().clone())
        else:
            self.mask = None

    def scales(self, weight: torch.Tensor) -> torch.Tensor:
        """float32 scales as quant.weights.weight_scales computes them (all-zero channels get 1)."""
        weight = self.masked(weight).detach()
        if self.axis is None:
            abs_max = weight.abs().max().double()
        else:
            dims = [d for d in range(weight.dim()) if d != self.axis]
            abs_max = weight.abs().amax(dim=dims).double()
        scale = abs_max / self.levels
        return torch.where(scale > 0, scale, torch.ones_like(scale)).float()

    def masked(self, weight: torch.Tensor) -> torch.Tensor:
        return weight if self.mask is None else weight * self.mask

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        scale = broadcast_scale(self.scales(weight), self.axis, weight.dim())
        return fake_quantize(self.masked(weight), scale, 0, -self.levels, self.levels)


class RangeFakeQuant(nn.Module):
    """Base of the activation fake-quants: a (low, high) range and the grid it defines."""

    def __init__(self, symmetric: bool, bits: int = 8):
        super().__init__()
        self.symmetric, self.bits = symmetric, bits

    def current_range(self) -> tuple[float, float]:
        """The range that is exported for this tensor."""
        raise NotImplementedError

    def exported_range(self) -> tuple[float, float]:
        low, high = self.current_range()
        if self.symmetric:
            bound = max(abs(low), abs(high))
            return -bound, bound
        return low, high


class MinMaxFakeQuant(nn.Module):
    """Fake-quant on the range of the value itself, recomputed on every call: for float constants (the addend
    of an Add), whose range the QDQ writer takes from the exported value."""

    def __init__(self, symmetric: bool, bits: int = 8):
        super().__init__()
        self.symmetric, self.bits = symmetric, bits

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return fake_quantize_range(x, *batch_range(x, self.symmetric), self.symmetric, self.bits)


class ObserverFakeQuant(RangeFakeQuant):
    """Activation fake-quant whose range an observer tracks during training (Paddle's three types).

    moving_average_abs_max: state = r * state + 1, accum = r * accum + batch, range = accum / state
      (per bound; symmetric bounds are +-abs max, so this is Paddle's formula exactly).
    range_abs_max: the widest batch range over the last window_size training batches.
    abs_max: the current batch's range.
    In training the batch updates the range before quantizing it (as Paddle does); in eval the stored
    range is used. An initial range (from calibration) starts the moving average at its steady state,
    as if every earlier batch had had that range.
    """

    def __init__(
        self,
        quantize_type: str = "moving_average_abs_max",
        symmetric: bool = False,
        initial_range: Sequence[float] | None = None,
        moving_rate: float = 0.9,
        window_size: int = 10000,
        bits: int = 8,
        counter: ForwardCounter | None = None,
    ):
        super().__init__(symmetric, bits)
        if quantize_type not in ACTIVATION_QUANTIZE_TYPES:
            raise ConfigError(
                f"activation_quantize_type: unknown value {quantize_type!r}; allowed: {list(ACTIVATION_QUANTIZE_TYPES)}"
            )
        self.quantize_type, self.moving_rate, self.counter = quantize_type, moving_rate, counter
        self._seen_forward = -1
        known = initial_range is not None
        low, high = initial_range if known else (0.0, 0.0)
        if symmetric:
            low, high = -max(abs(low), abs(high)), max(abs(low), abs(high))
        start = torch.tensor([low, high], dtype=torch.float64)
        self.register_buffer("range", start.clone())
        if quantize_type == "moving_average_abs_max":
            state = 1.0 / (1.0 - moving_rate) if known else 0.0
            self.register_buffer("state", torch.tensor(state, dtype=torch.float64))
            self.register_buffer("accum", start * state)
        elif quantize_type == "range_abs_max":
            self.register_buffer("window", start.repeat(window_size, 1))
            self.register_buffer("filled", torch.tensor(int(known)))
            self.register_buffer("position", torch.tensor(int(known) % window_size))

    def _observe(self, x: torch.Tensor) -> None:
        batch = torch.tensor(batch_range(x, self.symmetric), dtype=torch.float64, device=self.range.device)
        if self.quantize_type == "moving_average_abs_max":
            self.state.mul_(self.moving_rate).add_(1.0)
            self.accum.mul_(self.moving_rate).add_(batch)
            self.range.copy_(self.accum / self.state)
        elif self.quantize_type == "range_abs_max":
            size = self.window.shape[0]
            self.window[int(self.position)] = batch
            self.position.fill_((int(self.position) + 1) % size)
            self.filled.fill_(min(int(self.filled) + 1, size))
            seen = self.window[: int(self.filled)]
            self.range.copy_(torch.stack([seen[:, 0].min(), seen[:, 1].max()]))
        else:
            self.range.copy_(batch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            if self.counter is None or self._seen_forward != self.counter.count:
                self._observe(x)
                self._seen_forward = -1 if self.counter is None else self.counter.count
        return fake_quantize_range(x, *self.current_range(), self.symmetric, self.bits)

    def current_range(self) -> tuple[float, float]:
        low, high = self.range.tolist()
        return low, high


class PACTFakeQuant(RangeFakeQuant):
    """PACT (Choi et al., 2018): clip to learnable bounds, then fake-quantize on the grid of those bounds.

    clipped = x - relu(x - upper) + relu(lower - x), so d clipped / d upper = 1 where x > upper and
    d / d lower = 1 where x < lower; the rounding passes gradients straight through (the paper's STE), so
    the bounds learn only from clipping. Symmetric: lower = -upper (Paddle's two-sided PACT), and
    d / d upper = 1 above upper and -1 below -upper. Asymmetric: independent lower <= 0 <= upper, so a
    ReLU output starting at lower = 0 keeps all 256 levels for [0, upper]. The bounds are the exported range.
    """

    def __init__(self, symmetric: bool = False, initial_range: Sequence[float] | None = None, bits: int = 8):
        super().__init__(symmetric, bits)
        low, high = initial_range if initial_range is not None else (-PACT_DEFAULT_CLIP, PACT_DEFAULT_CLIP)
        if symmetric:
            self.upper = nn.Parameter(torch.tensor(max(abs(low), abs(high)), dtype=torch.float32))
            self.lower = None
        else:
            self.upper = nn.Parameter(torch.tensor(max(high, 0.0), dtype=torch.float32))
            self.lower = nn.Parameter(torch.tensor(min(low, 0.0), dtype=torch.float32))

    def bounds(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(lower, upper), held on their side of 0 as the exported range always contains 0."""
        upper = self.upper.clamp(min=0.0)
        return (-upper if self.lower is None else self.lower.clamp(max=0.0)), upper

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lower, upper = self.bounds()
        clipped = x - torch.relu(x - upper) + torch.relu(lower - x)
        # Straight through the rounding without the grid's own clipping mask: the bounds' gradient comes
        # from `clipped`, and the grid's edge may fall half a step inside a bound (U8 zero-point rounding).
        rounded = fake_quantize_range(clipped.detach(), *self.current_range(), self.symmetric, self.bits)
        return clipped + (rounded - clipped.detach())

    def current_range(self) -> tuple[float, float]:
        lower, upper = self.bounds()
        return float(lower.detach()), float(upper.detach())
