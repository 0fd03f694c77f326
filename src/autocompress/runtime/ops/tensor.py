"""Ops that select, combine or create tensors: Concat, Split, Slice, Gather, Pad, Cast, Range, ..."""

from __future__ import annotations

import numpy as np
import onnx
import torch
import torch.nn.functional as F
from onnx import numpy_helper

from .registry import NodeContext, normalize_axis, register


def numpy_to_torch_dtype(np_dtype: np.dtype) -> torch.dtype:
    return torch.from_numpy(np.zeros(0, dtype=np_dtype)).dtype


def torch_dtype(onnx_type: int) -> torch.dtype:
    """The torch dtype of an ONNX TensorProto data type."""
    return numpy_to_torch_dtype(onnx.helper.tensor_dtype_to_np_dtype(onnx_type))


@register("Concat")
def build_concat(ctx: NodeContext):
    axis = ctx.attr("axis")
    return lambda *xs: torch.cat(xs, axis)


@register("Split", static_inputs=(1,), num_outputs=None)
def build_split(ctx: NodeContext):
    axis = ctx.attr("axis", 0)
    parts = len(ctx.node.output)
    sizes = ctx.attr("split") if ctx.opset < 13 else ctx.static_ints(1)
    if sizes is not None:
        sizes = list(sizes)
        return lambda x, *_: torch.split(x, sizes, axis)
    if ctx.has_input(1) and ctx.opset >= 13:
        return lambda x, split_t: torch.split(x, [int(v) for v in split_t.tolist()], axis)

    def equal_split(x, *_):
        # Equal parts; with num_outputs (opset 18) the last part may be smaller.
        size = -(-x.shape[axis] // parts)
        return torch.split(x, size, axis)

    return equal_split


def _slice_axis(x: torch.Tensor, axis: int, start: int, end: int, step: int) -> torch.Tensor:
    """ONNX Slice on one axis, clamping like the spec; negative steps go through a flip."""
    dim = x.shape[axis]
    if start < 0:
        start += dim
    if end < 0:
        end += dim
    index = [slice(None)] * x.dim()
    if step > 0:
        start, end = min(max(start, 0), dim), min(max(end, 0), dim)
        index[axis] = slice(start, end, step)
        return x[tuple(index)]
    start, end = min(max(start, 0), dim - 1), min(max(end, -1), dim - 1)
    # Element i of x is element dim-1-i of the flipped tensor.
    index[axis] = slice(dim - 1 - start, dim - 1 - end, -step)
    return torch.flip(x, (axis,))[tuple(index)]


def _slice(x: torch.Tensor, starts, ends, axes, steps) -> torch.Tensor:
    axes = axes if axes is not None else range(len(starts))
    steps = steps if steps is not None else [1] * len(starts)
    for start, end, axis, step in zip(starts, ends, axes, steps):
        x = _slice_axis(x, normalize_axis(axis, x.dim()), start, end, step)
    return x


@register("Slice", static_inputs=(1, 2, 3, 4))
def build_slice(ctx: NodeContext):
    if ctx.opset < 10:
        starts, ends, axes = ctx.attr("starts"), ctx.attr("ends"), ctx.attr("axes")
        return lambda x: _slice(x, list(starts), list(ends), axes, None)
    params = [ctx.static_ints(i) if ctx.has_input(i) else None for i in range(1, 5)]
    dynamic = [i for i in range(1, 5) if ctx.has_input(i) and params[i - 1] is None]
    if not dynamic:
        return lambda x, *_: _slice(x, *params)

    def dynamic_slice(x, *given):
        values = list(params)
        for i in dynamic:
            values[i - 1] = [int(v) for v in given[i - 1].reshape(-1).tolist()]
        return _slice(x, *values)

    return dynamic_slice


def _positive_indices(indices: torch.Tensor, dim: int) -> torch.Tensor:
    return torch.where(indices < 0, indices + dim, indices)


@register("Gather")
def build_gather(ctx: NodeContext):
    axis = ctx.attr("axis", 0)
    static = ctx.static(1)
    if static is not None and static.ndim == 0:
        index = int(static)
        return lambda x, _i: x.select(axis, index)

    def gather(x, indices):
        ax = normalize_axis(axis, x.dim())
        flat = _positive_indices(indices.reshape(-1).long(), x.shape[ax])
        picked = x.index_select(ax, flat)
        return picked.reshape(x.shape[:ax] + indices.shape + x.shape[ax + 1 :])

    return gather


@register("GatherElements")
def build_gather_elements(ctx: NodeContext):
    axis = ctx.attr("axis", 0)

    def gather_elements(x, indices):
        ax = normalize_axis(axis, x.dim())
        return torch.gather(x, ax, _positive_indices(indices.long(), x.shape[ax]))

    return gather_elements


@register("GatherND")
def build_gather_nd(ctx: NodeContext):
    batch_dims = ctx.attr("batch_dims", 0)
    if batch_dims:
        raise ctx.unsupported("batch_dims > 0")

    def gather_nd(x, indices):
        depth = indices.shape[-1]
        idx = _positive_indices(indices.long(), torch.tensor(x.shape[:depth], device=x.device))
        return x[tuple(idx[..., i] for i in range(depth))]

    return gather_nd


@register("ScatterND")
def build_scatter_nd(ctx: NodeContext):
    if ctx.attr("reduction", "none") != "none":
        raise ctx.unsupported("reduction")

    def scatter_nd(x, indices, updates):
        depth = indices.shape[-1]
        y = x.clone()
        y[tuple(indices[..., i].long() for i in range(depth))] = updates
        return y

    return scatter_nd


_PAD_MODES = {"constant": "constant", "reflect": "reflect", "edge": "replicate", "wrap": "circular"}


@register("Pad", static_inputs=(1, 2, 3))
def build_pad(ctx: NodeContext):
    mode = ctx.attr("mode", "constant")
    if mode not in _PAD_MODES:
        raise ctx.unsupported(f"mode={mode!r}")
    torch_mode = _PAD_MODES[mode]
    if ctx.has_input(3):
        raise ctx.unsupported("the axes input")

    def pad(x, pads: list[int], value: float):
        rank = x.dim()
        begins, ends = pads[:rank], pads[rank:]
        # Pad only as many trailing dims as needed: torch's non-constant modes pad trailing dims only.
        first = next((i for i in range(rank) if begins[i] or ends[i]), rank)
        pairs = []
        for i in reversed(range(first, rank)):
            pairs += [begins[i], ends[i]]
        if not pairs:
            return x
        if torch_mode == "constant":
            return F.pad(x, pairs, value=value)
        return F.pad(x, pairs, mode=torch_mode)

    if ctx.opset < 11:
        pads, value = list(ctx.attr("pads")), ctx.attr("value", 0.0)
        return lambda x: pad(x, pads, value)
    static_pads = ctx.static_ints(1)
    static_value = ctx.static(2)
    if ctx.has_input(2) and static_value is None:
        raise ctx.unsupported("a computed constant_value")
    value = 0.0 if static_value is None or static_value.size == 0 else static_value.item()
    if static_pads is not None:
        return lambda x, *_: pad(x, static_pads, value)
    return lambda x, pads_t, *_: pad(x, [int(v) for v in pads_t.tolist()], value)


@register("Cast")
def build_cast(ctx: NodeContext):
    dtype = torch_dtype(ctx.attr("to"))
    return lambda x: x.to(dtype)


@register("CastLike")
def build_cast_like(ctx: NodeContext):
    return lambda x, like: x.to(like.dtype)


@register("ConstantOfShape", static_inputs=(0,))
def build_constant_of_shape(ctx: NodeContext):
    value = ctx.attr("value")
    array = numpy_helper.to_array(value) if value is not None else np.zeros(1, dtype=np.float32)
    fill = array.reshape(-1)[0].item()
    dtype = numpy_to_torch_dtype(array.dtype)
    return lambda shape: torch.full([int(v) for v in shape.tolist()], fill, dtype=dtype, device=shape.device)


@register("Range")
def build_range(ctx: NodeContext):
    def arange(start, limit, delta):
        return torch.arange(start.item(), limit.item(), delta.item(), dtype=start.dtype, device=start.device)

    return arange


@register("Trilu", static_inputs=(1,))
def build_trilu(ctx: NodeContext):
    fn = torch.triu if ctx.attr("upper", 1) else torch.tril
    return lambda x, k=None: fn(x, 0 if k is None else int(k))


@register("OneHot", static_inputs=(1,))
def build_one_hot(ctx: NodeContext):
    axis = ctx.attr("axis", -1)

    def one_hot(indices, depth, values):
        d = int(depth.reshape(-1)[0])
        idx = torch.where(indices < 0, indices + d, indices).long()
        hot = F.one_hot(idx, d).movedim(-1, normalize_axis(axis, indices.dim() + 1))
        return torch.where(hot.bool(), values[1], values[0])

    return one_hot
