"""Convolution and transposed convolution (1-D, 2-D, 3-D)."""

from __future__ import annotations

import torch.nn.functional as F

from .padding import spatial_padding
from .registry import NodeContext, register

_CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}
_CONV_TRANSPOSE = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}


def _kernel_shape(ctx: NodeContext) -> list[int]:
    kernel = ctx.attr("kernel_shape")
    if kernel is not None:
        return list(kernel)
    weight_shape = ctx.constant_shape(1)
    if weight_shape is None:
        raise ctx.unsupported("a computed weight without kernel_shape")
    return list(weight_shape[2:])


@register("Conv")
def build_conv(ctx: NodeContext):
    kernel = _kernel_shape(ctx)
    rank = len(kernel)
    conv = _CONV.get(rank)
    if conv is None:
        raise ctx.unsupported(f"{rank}-D convolution")
    strides = list(ctx.attr("strides", [1] * rank))
    dilations = list(ctx.attr("dilations", [1] * rank))
    groups = ctx.attr("group", 1)
    pad = spatial_padding(ctx, kernel, strides, dilations)

    def convolution(x, weight, bias=None):
        x, padding = pad(x)
        return conv(x, weight, bias, strides, padding, dilations, groups)

    return convolution


@register("ConvTranspose")
def build_conv_transpose(ctx: NodeContext):
    rank = len(_kernel_shape(ctx))
    conv_t = _CONV_TRANSPOSE.get(rank)
    if conv_t is None:
        raise ctx.unsupported(f"{rank}-D transposed convolution")
    strides = list(ctx.attr("strides", [1] * rank))
    dilations = list(ctx.attr("dilations", [1] * rank))
    groups = ctx.attr("group", 1)
    output_padding = list(ctx.attr("output_padding", [0] * rank))
    output_shape = ctx.attr("output_shape")
    auto_pad = ctx.attr("auto_pad", "NOTSET")
    if output_shape is not None or auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        raise ctx.unsupported("output_shape / SAME auto_pad")
    pads = [0] * (2 * rank) if auto_pad == "VALID" else list(ctx.attr("pads", [0] * (2 * rank)))
    begins, ends = pads[:rank], pads[rank:]
    if begins == ends:
        return lambda x, w, b=None: conv_t(x, w, b, strides, begins, output_padding, groups, dilations)
    # Asymmetric pads: run with the smaller pad per axis, then crop the remainder (pads crop the output).
    common = [min(b, e) for b, e in zip(begins, ends)]
    crops = [slice(b - c, (-(e - c)) or None) for b, e, c in zip(begins, ends, common)]

    def asymmetric(x, w, b=None):
        y = conv_t(x, w, b, strides, common, output_padding, groups, dilations)
        return y[(slice(None), slice(None), *crops)]

    return asymmetric
