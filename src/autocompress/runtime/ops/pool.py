"""Pooling: MaxPool, AveragePool, global pools, LpPool."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .padding import spatial_padding
from .registry import NodeContext, register

_MAX_POOL = {1: F.max_pool1d, 2: F.max_pool2d, 3: F.max_pool3d}
_AVG_POOL = {1: F.avg_pool1d, 2: F.avg_pool2d, 3: F.avg_pool3d}


def _window(ctx: NodeContext):
    kernel = list(ctx.attr("kernel_shape"))
    rank = len(kernel)
    if rank not in _MAX_POOL:
        raise ctx.unsupported(f"{rank}-D pooling")
    strides = list(ctx.attr("strides", [1] * rank))
    dilations = list(ctx.attr("dilations", [1] * rank))
    return kernel, strides, dilations, bool(ctx.attr("ceil_mode", 0))


@register("MaxPool")
def build_max_pool(ctx: NodeContext):
    kernel, strides, dilations, ceil_mode = _window(ctx)
    pool = _MAX_POOL[len(kernel)]
    pad = spatial_padding(ctx, kernel, strides, dilations, fill=float("-inf"))

    def max_pool(x):
        x, padding = pad(x)
        if any(2 * p > k for p, k in zip(padding, kernel)):
            # torch limits pads to half the kernel; pad explicitly beyond that.
            x = F.pad(x, [p for p in reversed(padding) for _ in range(2)], value=float("-inf"))
            padding = [0] * len(kernel)
        return pool(x, kernel, strides, padding, dilations, ceil_mode)

    return max_pool


@register("AveragePool")
def build_average_pool(ctx: NodeContext):
    kernel, strides, dilations, ceil_mode = _window(ctx)
    if any(d != 1 for d in dilations):
        raise ctx.unsupported("dilated AveragePool")
    pool = _AVG_POOL[len(kernel)]
    count_include_pad = bool(ctx.attr("count_include_pad", 0))
    explicit = ctx.attr("auto_pad", "NOTSET") == "NOTSET"
    rank = len(kernel)
    pads = list(ctx.attr("pads", [0] * (2 * rank))) if explicit else None
    if explicit and pads[:rank] == pads[rank:] and all(2 * p <= k for p, k in zip(pads, kernel)):
        padding = pads[:rank]
        return lambda x: pool(x, kernel, strides, padding, ceil_mode, count_include_pad)
    # Asymmetric or SAME pads: pad with zeros, and when pads must not count, divide by the
    # pooled count of real elements instead of the window size.
    pad = spatial_padding(ctx, kernel, strides, dilations)

    def average_pool(x):
        padded, _ = pad(x)
        y = pool(padded, kernel, strides, 0, ceil_mode, True)
        if count_include_pad:
            return y
        ones = pad(torch.ones_like(x[:1, :1]))[0]
        return y / pool(ones, kernel, strides, 0, ceil_mode, True)

    return average_pool


@register("GlobalAveragePool")
def build_global_average_pool(ctx: NodeContext):
    return lambda x: x.mean(dim=tuple(range(2, x.dim())), keepdim=True)


@register("GlobalMaxPool")
def build_global_max_pool(ctx: NodeContext):
    return lambda x: x.amax(dim=tuple(range(2, x.dim())), keepdim=True)


@register("LpPool")
def build_lp_pool(ctx: NodeContext):
    kernel, strides, _, ceil_mode = _window(ctx)
    if len(kernel) > 2 or any(ctx.attr("pads", [0])):
        raise ctx.unsupported("padded or 3-D LpPool")
    p = float(ctx.attr("p", 2))
    fn = F.lp_pool1d if len(kernel) == 1 else F.lp_pool2d
    return lambda x: fn(x, p, kernel, strides, ceil_mode)
