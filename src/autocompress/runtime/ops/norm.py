"""Normalisation ops."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .registry import NodeContext, normalize_axis, register


@register("BatchNormalization", needs_training=True)
def build_batch_norm(ctx: NodeContext):
    eps = ctx.attr("epsilon", 1e-5)
    # ONNX: running = running * momentum + batch * (1 - momentum); torch weighs the batch by its momentum.
    torch_momentum = 1.0 - ctx.attr("momentum", 0.9)

    def batch_norm(training: bool, x, scale, bias, mean, var):
        return F.batch_norm(x, mean, var, scale, bias, training, torch_momentum, eps)

    return batch_norm


@register("InstanceNormalization")
def build_instance_norm(ctx: NodeContext):
    eps = ctx.attr("epsilon", 1e-5)
    return lambda x, scale, bias: F.instance_norm(x, weight=scale, bias=bias, eps=eps)


@register("LayerNormalization")
def build_layer_norm(ctx: NodeContext):
    axis = ctx.attr("axis", -1)
    eps = ctx.attr("epsilon", 1e-5)

    def layer_norm(x, scale, bias=None):
        shape = x.shape[normalize_axis(axis, x.dim()) :]
        if scale.shape == shape and (bias is None or bias.shape == shape):
            return F.layer_norm(x, shape, scale, bias, eps)
        y = F.layer_norm(x, shape, None, None, eps) * scale
        return y if bias is None else y + bias

    return layer_norm


@register("GroupNormalization")
def build_group_norm(ctx: NodeContext):
    groups = ctx.attr("num_groups")
    eps = ctx.attr("epsilon", 1e-5)
    if ctx.opset < 21:
        # Opset 18 defines scale and bias per group; they are expanded to channels.
        def group_norm_per_group(x, scale, bias):
            repeat = x.shape[1] // groups
            return F.group_norm(x, groups, scale.repeat_interleave(repeat), bias.repeat_interleave(repeat), eps)

        return group_norm_per_group
    return lambda x, scale, bias: F.group_norm(x, groups, scale, bias, eps)


@register("LpNormalization")
def build_lp_norm(ctx: NodeContext):
    axis = ctx.attr("axis", -1)
    p = ctx.attr("p", 2)
    return lambda x: x / torch.linalg.vector_norm(x, ord=p, dim=axis, keepdim=True)
