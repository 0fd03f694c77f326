"""Matrix products: MatMul, Gemm, Einsum."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .registry import NodeContext, register


@register("MatMul")
def build_matmul(ctx: NodeContext):
    return torch.matmul


@register("Gemm")
def build_gemm(ctx: NodeContext):
    alpha = ctx.attr("alpha", 1.0)
    beta = ctx.attr("beta", 1.0)
    trans_a = ctx.attr("transA", 0)
    trans_b = ctx.attr("transB", 0)
    if alpha == 1.0 and beta == 1.0 and not trans_a and trans_b:
        # The nn.Linear layout that torch exports: one fused kernel.
        return lambda a, b, c=None: F.linear(a, b, c)

    def gemm(a, b, c=None):
        y = (a.t() if trans_a else a) @ (b.t() if trans_b else b)
        if alpha != 1.0:
            y = y * alpha
        if c is None:
            return y
        return y + (c if beta == 1.0 else c * beta)

    return gemm


@register("Einsum")
def build_einsum(ctx: NodeContext):
    equation = ctx.attr("equation")
    return lambda *xs: torch.einsum(equation, *xs)
