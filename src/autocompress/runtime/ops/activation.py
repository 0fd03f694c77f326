"""Activations and softmax-like ops."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .registry import NodeContext, normalize_axis, register


@register("Relu")
def build_relu(ctx: NodeContext):
    return F.relu


@register("Sigmoid")
def build_sigmoid(ctx: NodeContext):
    return torch.sigmoid


@register("Tanh")
def build_tanh(ctx: NodeContext):
    return torch.tanh


@register("LeakyRelu")
def build_leaky_relu(ctx: NodeContext):
    slope = ctx.attr("alpha", 0.01)
    return lambda x: F.leaky_relu(x, slope)


@register("PRelu")
def build_prelu(ctx: NodeContext):
    # ONNX slopes broadcast unidirectionally (often [C,1,1]); F.prelu wants a 1-D slope.
    return lambda x, slope: torch.where(x >= 0, x, x * slope)


@register("Elu")
def build_elu(ctx: NodeContext):
    alpha = ctx.attr("alpha", 1.0)
    return lambda x: F.elu(x, alpha)


@register("Celu")
def build_celu(ctx: NodeContext):
    alpha = ctx.attr("alpha", 1.0)
    return lambda x: F.celu(x, alpha)


@register("Selu")
def build_selu(ctx: NodeContext):
    alpha = ctx.attr("alpha", 1.67326319217681884765625)
    gamma = ctx.attr("gamma", 1.05070102214813232421875)
    return lambda x: gamma * torch.where(x > 0, x, alpha * torch.expm1(x))


@register("Softplus")
def build_softplus(ctx: NodeContext):
    return F.softplus


@register("Softsign")
def build_softsign(ctx: NodeContext):
    return F.softsign


@register("Mish")
def build_mish(ctx: NodeContext):
    return F.mish


@register("Gelu")
def build_gelu(ctx: NodeContext):
    approximate = ctx.attr("approximate", "none")
    return lambda x: F.gelu(x, approximate=approximate)


@register("HardSigmoid")
def build_hard_sigmoid(ctx: NodeContext):
    alpha = ctx.attr("alpha", 0.2)
    beta = ctx.attr("beta", 0.5)
    return lambda x: torch.clamp(x * alpha + beta, 0.0, 1.0)


@register("HardSwish")
def build_hard_swish(ctx: NodeContext):
    return F.hardswish


def _bound(ctx: NodeContext, index: int, attr_name: str):
    """A Clip bound as a python number when static, None when absent, else 'dynamic'."""
    if ctx.opset < 11:
        return ctx.attr(attr_name)
    if not ctx.has_input(index):
        return None
    value = ctx.static(index)
    return "dynamic" if value is None else value.item()


@register("Clip", static_inputs=(1, 2))
def build_clip(ctx: NodeContext):
    low, high = _bound(ctx, 1, "min"), _bound(ctx, 2, "max")
    if "dynamic" in (low, high):
        return lambda x, lo=None, hi=None: torch.clamp(x, lo, hi)
    if low is None and high is None:
        return lambda x, *_: x
    if low == 0 and high == 6:
        return lambda x, *_: F.relu6(x)
    return lambda x, *_: torch.clamp(x, low, high)


def _softmax_builder(fn):
    def build(ctx: NodeContext):
        if ctx.opset >= 13:
            axis = ctx.attr("axis", -1)
            return lambda x: fn(x, axis)
        # Before opset 13 the input is flattened to 2-D at `axis` and normalised over the tail.
        axis = ctx.attr("axis", 1)

        def legacy(x: torch.Tensor) -> torch.Tensor:
            start = normalize_axis(axis, x.dim())
            if start == x.dim() - 1:
                return fn(x, -1)
            rows = math.prod(x.shape[:start])
            return fn(x.reshape(rows, -1), -1).reshape(x.shape)

        return legacy

    return build


register("Softmax")(_softmax_builder(torch.softmax))
register("LogSoftmax")(_softmax_builder(torch.log_softmax))
