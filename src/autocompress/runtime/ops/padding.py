"""ONNX padding attributes (pads / auto_pad) shared by convolution and pooling."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

from .registry import NodeContext


def same_pads(
    sizes: Sequence[int], kernel: Sequence[int], strides: Sequence[int], dilations: Sequence[int], upper: bool
) -> tuple[list[int], list[int]]:
    """Begin/end pads for auto_pad SAME_UPPER/SAME_LOWER: output = ceil(input / stride)."""
    begins, ends = [], []
    for size, k, s, d in zip(sizes, kernel, strides, dilations):
        total = max((math.ceil(size / s) - 1) * s + (k - 1) * d + 1 - size, 0)
        small, large = total // 2, total - total // 2
        begins.append(small if upper else large)
        ends.append(large if upper else small)
    return begins, ends


def torch_pad_list(begins: Sequence[int], ends: Sequence[int]) -> list[int]:
    """F.pad wants (begin, end) pairs starting from the last dimension."""
    pairs: list[int] = []
    for b, e in zip(reversed(begins), reversed(ends)):
        pairs += [b, e]
    return pairs


PadFn = Callable[[torch.Tensor], tuple[torch.Tensor, list[int]]]


def spatial_padding(
    ctx: NodeContext,
    kernel: Sequence[int],
    strides: Sequence[int],
    dilations: Sequence[int],
    fill: float = 0.0,
) -> PadFn:
    """A function x -> (x', symmetric_pads) so that the torch op with `symmetric_pads` matches ONNX.

    Symmetric explicit pads go to the torch op (cheapest); asymmetric or SAME pads are applied with
    F.pad using `fill` first, since torch convolutions and pools only pad symmetrically.
    """
    rank = len(kernel)
    auto_pad = ctx.attr("auto_pad", "NOTSET")
    if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        upper = auto_pad == "SAME_UPPER"

        def pad_same(x: torch.Tensor):
            begins, ends = same_pads(x.shape[2:], kernel, strides, dilations, upper)
            if any(begins) or any(ends):
                x = F.pad(x, torch_pad_list(begins, ends), value=fill)
            return x, [0] * rank

        return pad_same
    if auto_pad == "VALID":
        pads = [0] * (2 * rank)
    elif auto_pad == "NOTSET":
        pads = list(ctx.attr("pads", [0] * (2 * rank)))
    else:
        raise ctx.unsupported(f"auto_pad={auto_pad!r}")
    begins, ends = pads[:rank], pads[rank:]
    if begins == ends:
        return lambda x: (x, begins)
    pad_list = torch_pad_list(begins, ends)
    return lambda x: (F.pad(x, pad_list, value=fill), [0] * rank)
