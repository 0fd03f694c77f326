"""Resize (opset 10+) and Upsample (opset 7-9): nearest and (bi/tri)linear.

Modes that F.interpolate reproduces exactly take that fast path. Every other coordinate mapping
(ONNX has six, plus four nearest-rounding rules) goes through a separable gather: per resized
axis, source indices (and linear weights) are computed once per (input, output) length and cached,
then applied with index_select, which autograd differentiates like F.interpolate.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from .registry import NodeContext, register

_ROUNDING = {
    "round_prefer_floor": lambda v: np.ceil(v - 0.5),
    "round_prefer_ceil": lambda v: np.floor(v + 0.5),
    "floor": np.floor,
    "ceil": np.ceil,
}
_LINEAR_MODES = {3: "linear", 4: "bilinear", 5: "trilinear"}


def source_coordinates(out_len: int, in_len: int, scale: float, transform: str) -> np.ndarray:
    """Float source coordinate of every output index along one axis (ONNX Resize spec)."""
    x = np.arange(out_len, dtype=np.float32)
    scale = np.float32(scale)
    if transform == "half_pixel":
        return (x + 0.5) / scale - 0.5
    if transform == "pytorch_half_pixel":
        return (x + 0.5) / scale - 0.5 if out_len > 1 else np.zeros_like(x)
    if transform == "align_corners":
        return x * np.float32(in_len - 1) / np.float32(out_len - 1) if out_len > 1 else np.zeros_like(x)
    if transform == "asymmetric":
        return x / scale
    if transform == "tf_half_pixel_for_nn":
        return (x + 0.5) / scale
    raise ValueError(transform)


class _AxisPlans:
    """Cache of per-axis index/weight tensors keyed by lengths, scale and device."""

    def __init__(self, mode: str, transform: str, nearest_mode: str):
        self.mode, self.transform, self.nearest_mode = mode, transform, nearest_mode
        self._cache: dict = {}

    def get(self, in_len: int, out_len: int, scale: float, device: torch.device):
        key = (in_len, out_len, scale, device)
        plan = self._cache.get(key)
        if plan is None:
            plan = self._cache[key] = self._make(in_len, out_len, scale, device)
        return plan

    def _make(self, in_len, out_len, scale, device):
        coords = source_coordinates(out_len, in_len, scale, self.transform)
        if self.mode == "nearest":
            index = np.clip(_ROUNDING[self.nearest_mode](coords), 0, in_len - 1).astype(np.int64)
            return (torch.from_numpy(index).to(device),)
        coords = np.clip(coords, 0, in_len - 1)
        low = np.floor(coords).astype(np.int64)
        high = np.minimum(low + 1, in_len - 1)
        weight = (coords - low).astype(np.float32)
        return tuple(torch.from_numpy(a).to(device) for a in (low, high, weight))


def _gather_resize(x: torch.Tensor, out_sizes: list[int], scales: list[float], plans: _AxisPlans) -> torch.Tensor:
    for axis in range(x.dim()):
        in_len, out_len = x.shape[axis], out_sizes[axis]
        if in_len == out_len and scales[axis] == 1.0:
            continue
        plan = plans.get(in_len, out_len, scales[axis], x.device)
        if len(plan) == 1:
            x = x.index_select(axis, plan[0])
            continue
        low, high, weight = plan
        shape = [1] * x.dim()
        shape[axis] = out_len
        weight = weight.to(x.dtype).reshape(shape)
        below, above = x.index_select(axis, low), x.index_select(axis, high)
        x = below + (above - below) * weight
    return x


def _fast_path(mode: str, transform: str, nearest_mode: str, rank: int):
    """The F.interpolate call equal to this ONNX configuration, or None."""
    if mode == "nearest" and transform == "asymmetric" and nearest_mode == "floor":
        return lambda x, size, scale: F.interpolate(x, size=size, scale_factor=scale, mode="nearest")
    if mode == "linear" and rank in _LINEAR_MODES and transform in ("half_pixel", "align_corners"):
        torch_mode, corners = _LINEAR_MODES[rank], transform == "align_corners"
        return lambda x, size, scale: F.interpolate(
            x, size=size, scale_factor=scale, mode=torch_mode, align_corners=corners
        )
    return None


def _make_resizer(ctx: NodeContext, mode: str, transform: str, nearest_mode: str):
    """Kernel from (x, scales or None, sizes or None) in python lists to the resized tensor."""
    if mode not in ("nearest", "linear"):
        raise ctx.unsupported(f"mode={mode!r}")
    if transform not in ("half_pixel", "pytorch_half_pixel", "align_corners", "asymmetric", "tf_half_pixel_for_nn"):
        raise ctx.unsupported(f"coordinate_transformation_mode={transform!r}")
    if nearest_mode not in _ROUNDING:
        raise ctx.unsupported(f"nearest_mode={nearest_mode!r}")
    plans = _AxisPlans(mode, transform, nearest_mode)

    def resize(x: torch.Tensor, scales: list[float] | None, sizes: list[int] | None) -> torch.Tensor:
        if sizes is not None:
            out = list(sizes)
            scales = [o / i for o, i in zip(out, x.shape)]
        else:
            out = [math.floor(i * s) for i, s in zip(x.shape, scales)]
        if out[:2] == list(x.shape[:2]):
            fast = _fast_path(mode, transform, nearest_mode, x.dim())
            if fast is not None:
                # Give torch the scale when ONNX maps coordinates with it, so both agree exactly.
                if sizes is None and transform != "align_corners":
                    return fast(x, None, scales[2:])
                return fast(x, out[2:], None)
        return _gather_resize(x, out, scales, plans)

    return resize


def _floats(t: torch.Tensor | None) -> list[float] | None:
    return None if t is None or t.numel() == 0 else [float(v) for v in t.reshape(-1).tolist()]


def _ints(t: torch.Tensor | None) -> list[int] | None:
    return None if t is None or t.numel() == 0 else [int(v) for v in t.reshape(-1).tolist()]


@register("Resize", static_inputs=(1, 2, 3))
def build_resize(ctx: NodeContext):
    mode = ctx.attr("mode", "nearest")
    if ctx.opset < 11:
        resize = _make_resizer(ctx, mode, "asymmetric", "floor")
        static_scales = ctx.static(1)
        if static_scales is not None:
            scales = [float(v) for v in static_scales.reshape(-1)]
            return lambda x, *_: resize(x, scales, None)
        return lambda x, scales_t: resize(x, _floats(scales_t), None)
    if ctx.attr("axes") is not None or ctx.attr("keep_aspect_ratio_policy", "stretch") != "stretch":
        raise ctx.unsupported("axes / keep_aspect_ratio_policy")
    if ctx.attr("antialias", 0):
        raise ctx.unsupported("antialias")
    transform = ctx.attr("coordinate_transformation_mode", "half_pixel")
    resize = _make_resizer(ctx, mode, transform, ctx.attr("nearest_mode", "round_prefer_floor"))
    static = [ctx.static(i) for i in (2, 3)]
    dynamic = [ctx.has_input(i) and static[i - 2] is None for i in (2, 3)]
    if not any(dynamic):
        scales = None if static[0] is None or static[0].size == 0 else [float(v) for v in static[0].reshape(-1)]
        sizes = None if static[1] is None or static[1].size == 0 else [int(v) for v in static[1].reshape(-1)]
        return lambda x, *_: resize(x, scales, sizes)
    return lambda x, _roi=None, scales=None, sizes=None: resize(x, _floats(scales), _ints(sizes))


@register("Upsample", static_inputs=(1,))
def build_upsample(ctx: NodeContext):
    resize = _make_resizer(ctx, ctx.attr("mode", "nearest"), "asymmetric", "floor")
    if ctx.opset < 9:
        scales = list(ctx.attr("scales"))
        return lambda x: resize(x, scales, None)
    static_scales = ctx.static(1)
    if static_scales is not None:
        scales = [float(v) for v in static_scales.reshape(-1)]
        return lambda x, *_: resize(x, scales, None)
    return lambda x, scales_t: resize(x, _floats(scales_t), None)
