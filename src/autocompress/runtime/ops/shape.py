"""Ops that only rearrange or describe a tensor: Shape, Reshape, Transpose, Squeeze, Expand, ...

Shape-valued inputs are int64 tensors at run time; when they are static the python values are
baked into the kernel at build time, so the common case costs no host/device round trip.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .registry import NodeContext, normalize_axis, register


def _ints(t: torch.Tensor) -> list[int]:
    return [int(v) for v in t.reshape(-1).tolist()]


def _static_or_runtime(ctx: NodeContext, index: int, use):
    """Kernel x, ints -> y using the static ints of input `index` when known, else its runtime value."""
    values = ctx.static_ints(index)
    if values is not None:
        return lambda x, *_: use(x, values)
    return lambda x, t, *_: use(x, _ints(t))


@register("Shape")
def build_shape(ctx: NodeContext):
    start, end = ctx.attr("start", 0), ctx.attr("end")
    return lambda x: torch.tensor(x.shape[start:end], dtype=torch.int64, device=x.device)


@register("Size")
def build_size(ctx: NodeContext):
    return lambda x: torch.tensor(x.numel(), dtype=torch.int64, device=x.device)


@register("Reshape", static_inputs=(1,))
def build_reshape(ctx: NodeContext):
    allow_zero = bool(ctx.attr("allowzero", 0))

    def reshape(x: torch.Tensor, shape: list[int]) -> torch.Tensor:
        if not allow_zero:
            shape = [x.shape[i] if d == 0 else d for i, d in enumerate(shape)]
        return x.reshape(shape)

    if ctx.opset < 5:
        shape = list(ctx.attr("shape"))
        return lambda x: reshape(x, shape)
    return _static_or_runtime(ctx, 1, reshape)


@register("Flatten")
def build_flatten(ctx: NodeContext):
    axis = ctx.attr("axis", 1)

    def flatten(x):
        start = normalize_axis(axis, x.dim())
        return x.reshape(math.prod(x.shape[:start]), -1)

    return flatten


@register("Transpose")
def build_transpose(ctx: NodeContext):
    perm = ctx.attr("perm")
    if perm is None:
        return lambda x: x.permute(*reversed(range(x.dim())))
    perm = list(perm)
    return lambda x: x.permute(perm)


def _axes_builder(ctx: NodeContext, use):
    """Squeeze/Unsqueeze take axes from an attribute before opset 13, from input 1 since."""
    if ctx.opset < 13:
        axes = ctx.attr("axes")
        return lambda x: use(x, list(axes) if axes is not None else None)
    if not ctx.has_input(1):
        return lambda x: use(x, None)
    return _static_or_runtime(ctx, 1, use)


def _squeeze(x: torch.Tensor, axes: list[int] | None) -> torch.Tensor:
    if axes is None:
        return x.squeeze()
    return x.squeeze(tuple(normalize_axis(a, x.dim()) for a in axes))


def _unsqueeze(x: torch.Tensor, axes: list[int]) -> torch.Tensor:
    rank = x.dim() + len(axes)
    for axis in sorted(normalize_axis(a, rank) for a in axes):
        x = x.unsqueeze(axis)
    return x


@register("Squeeze", static_inputs=(1,))
def build_squeeze(ctx: NodeContext):
    return _axes_builder(ctx, _squeeze)


@register("Unsqueeze", static_inputs=(1,))
def build_unsqueeze(ctx: NodeContext):
    return _axes_builder(ctx, _unsqueeze)


@register("Expand", static_inputs=(1,))
def build_expand(ctx: NodeContext):
    # ONNX Expand broadcasts both ways: a 1 in `shape` keeps the input's dimension.
    return _static_or_runtime(ctx, 1, lambda x, shape: x.expand(torch.broadcast_shapes(x.shape, tuple(shape))))


@register("Tile", static_inputs=(1,))
def build_tile(ctx: NodeContext):
    return _static_or_runtime(ctx, 1, lambda x, repeats: x.repeat(repeats))


@register("Identity")
def build_identity(ctx: NodeContext):
    return lambda x: x


@register("Dropout", static_inputs=(1, 2), needs_training=True)
def build_dropout(ctx: NodeContext):
    """Identity for inference; drops like the source framework while the executor trains."""
    if ctx.opset < 12:
        ratio = ctx.attr("ratio", 0.5)
    elif not ctx.has_input(1):
        ratio = 0.5
    elif ctx.static(1) is not None:
        ratio = float(ctx.static(1))
    else:
        raise ctx.unsupported("a computed ratio")
    return lambda training, x, *_: F.dropout(x, ratio, True) if training and ratio > 0 else x


@register("DepthToSpace")
def build_depth_to_space(ctx: NodeContext):
    block = ctx.attr("blocksize")
    if ctx.attr("mode", "DCR") == "CRD":
        return lambda x: F.pixel_shuffle(x, block)

    def depth_to_space(x):
        n, c, h, w = x.shape
        y = x.reshape(n, block, block, c // block**2, h, w).permute(0, 3, 4, 1, 5, 2)
        return y.reshape(n, c // block**2, h * block, w * block)

    return depth_to_space


@register("SpaceToDepth")
def build_space_to_depth(ctx: NodeContext):
    block = ctx.attr("blocksize")

    def space_to_depth(x):
        n, c, h, w = x.shape
        y = x.reshape(n, c, h // block, block, w // block, block).permute(0, 3, 5, 1, 2, 4)
        return y.reshape(n, c * block * block, h // block, w // block)

    return space_to_depth
