"""Reductions (ReduceMean/Sum/Max/...), ArgMax/ArgMin, CumSum and TopK."""

from __future__ import annotations

import torch

from .registry import NodeContext, register


def _prod(x: torch.Tensor, dim, keepdim: bool) -> torch.Tensor:
    for axis in sorted(dim, reverse=True):
        x = torch.prod(x, axis, keepdim=keepdim)
    return x


_REDUCERS = {
    "ReduceMean": lambda x, dim, keep: torch.mean(x, dim, keepdim=keep),
    "ReduceSum": lambda x, dim, keep: torch.sum(x, dim, keepdim=keep),
    "ReduceMax": lambda x, dim, keep: torch.amax(x, dim, keepdim=keep),
    "ReduceMin": lambda x, dim, keep: torch.amin(x, dim, keepdim=keep),
    "ReduceProd": _prod,
    "ReduceL1": lambda x, dim, keep: torch.sum(torch.abs(x), dim, keepdim=keep),
    "ReduceL2": lambda x, dim, keep: torch.linalg.vector_norm(x, 2, dim, keepdim=keep),
    "ReduceSumSquare": lambda x, dim, keep: torch.sum(x * x, dim, keepdim=keep),
    "ReduceLogSumExp": lambda x, dim, keep: torch.logsumexp(x, dim, keepdim=keep),
    "ReduceLogSum": lambda x, dim, keep: torch.log(torch.sum(x, dim, keepdim=keep)),
}

# Opset from which each reduction takes its axes as an input instead of an attribute.
_AXES_INPUT_OPSET = {op: (13 if op == "ReduceSum" else 18) for op in _REDUCERS}


@register(*_REDUCERS, static_inputs=(1,))
def build_reduce(ctx: NodeContext):
    reduce = _REDUCERS[ctx.node.op_type]
    keep = bool(ctx.attr("keepdims", 1))
    noop_when_empty = bool(ctx.attr("noop_with_empty_axes", 0))
    if ctx.opset >= _AXES_INPUT_OPSET[ctx.node.op_type] and ctx.has_input(1):
        axes = ctx.static_ints(1)
        if axes is None:
            return lambda x, axes_t: _reduce_all_or(reduce, x, [int(a) for a in axes_t.tolist()], keep, False)
    else:
        axes = ctx.attr("axes")
        axes = list(axes) if axes is not None else None
    return lambda x, *_: _reduce_all_or(reduce, x, axes or [], keep, noop_when_empty)


def _reduce_all_or(reduce, x: torch.Tensor, axes: list[int], keep: bool, noop_when_empty: bool):
    if not axes:
        if noop_when_empty:
            return x
        axes = list(range(x.dim()))
    return reduce(x, tuple(axes), keep)


def _arg_builder(fn):
    def build(ctx: NodeContext):
        axis = ctx.attr("axis", 0)
        keep = bool(ctx.attr("keepdims", 1))
        last = bool(ctx.attr("select_last_index", 0))

        def arg(x):
            if not last:
                return fn(x, axis, keepdim=keep)
            flipped = fn(torch.flip(x, (axis,)), axis, keepdim=keep)
            return x.shape[axis] - 1 - flipped

        return arg

    return build


register("ArgMax")(_arg_builder(torch.argmax))
register("ArgMin")(_arg_builder(torch.argmin))


@register("CumSum", static_inputs=(1,))
def build_cumsum(ctx: NodeContext):
    exclusive = bool(ctx.attr("exclusive", 0))
    reverse = bool(ctx.attr("reverse", 0))

    def cumsum(x, axis_t):
        axis = int(axis_t)
        if reverse:
            x = torch.flip(x, (axis,))
        y = torch.cumsum(x, axis)
        if exclusive:
            y = y - x
        return torch.flip(y, (axis,)) if reverse else y

    return cumsum


@register("TopK", static_inputs=(1,), num_outputs=2)
def build_topk(ctx: NodeContext):
    axis = ctx.attr("axis", -1)
    largest = bool(ctx.attr("largest", 1))
    sorted_ = bool(ctx.attr("sorted", 1))
    if ctx.opset < 10:
        k = ctx.attr("k")
        return lambda x: tuple(torch.topk(x, k, axis, largest, sorted_))
    return lambda x, k: tuple(torch.topk(x, int(k.reshape(-1)[0]), axis, largest, sorted_))
