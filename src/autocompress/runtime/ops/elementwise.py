"""Elementwise arithmetic, comparison and logic ops (numpy-style broadcasting, as ONNX)."""

from __future__ import annotations

import functools
import operator

import torch

from .registry import NodeContext, register


def _int_aware_div(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    # ONNX integer Div truncates (C semantics); torch's `/` would produce floats.
    if a.is_floating_point() or (isinstance(b, torch.Tensor) and b.is_floating_point()):
        return a / b
    return torch.div(a, b, rounding_mode="trunc")


_BINARY = {
    "Add": operator.add,
    "Sub": operator.sub,
    "Mul": operator.mul,
    "Div": _int_aware_div,
    "Equal": torch.eq,
    "Less": torch.lt,
    "LessOrEqual": torch.le,
    "Greater": torch.gt,
    "GreaterOrEqual": torch.ge,
    "And": torch.logical_and,
    "Or": torch.logical_or,
    "Xor": torch.logical_xor,
}

_UNARY = {
    "Sqrt": torch.sqrt,
    "Exp": torch.exp,
    "Log": torch.log,
    "Neg": torch.neg,
    "Abs": torch.abs,
    "Reciprocal": torch.reciprocal,
    "Floor": torch.floor,
    "Ceil": torch.ceil,
    "Round": torch.round,  # round-half-to-even, as ONNX
    "Not": torch.logical_not,
    "Sign": torch.sign,
    "Erf": torch.erf,
    "Sin": torch.sin,
    "Cos": torch.cos,
    "Tan": torch.tan,
    "Atan": torch.atan,
    "IsNaN": torch.isnan,
}


@register(*_BINARY)
def build_binary(ctx: NodeContext):
    return _BINARY[ctx.node.op_type]


@register(*_UNARY)
def build_unary(ctx: NodeContext):
    return _UNARY[ctx.node.op_type]


@register("Pow")
def build_pow(ctx: NodeContext):
    exponent = ctx.static(1)
    if exponent is not None and exponent.size == 1:
        value = exponent.item()
        if value == 2:
            return lambda x, _e: x * x
        return lambda x, _e: torch.pow(x, value)
    # ONNX Pow keeps the base's type even when the exponent's type differs.
    return lambda x, e: torch.pow(x, e).to(x.dtype)


@register("Mod")
def build_mod(ctx: NodeContext):
    return torch.fmod if ctx.attr("fmod", 0) else torch.remainder


def _fold(fn):
    return lambda *xs: functools.reduce(fn, xs)


@register("Min")
def build_min(ctx: NodeContext):
    return _fold(torch.minimum)


@register("Max")
def build_max(ctx: NodeContext):
    return _fold(torch.maximum)


@register("Sum")
def build_sum(ctx: NodeContext):
    return _fold(operator.add)


@register("Mean")
def build_mean(ctx: NodeContext):
    count = ctx.num_inputs
    return lambda *xs: functools.reduce(operator.add, xs) / count


@register("Where")
def build_where(ctx: NodeContext):
    return torch.where
