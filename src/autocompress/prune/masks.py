"""Weight masks shared by every pruning method, and the torch module that applies one during training.

Channel pruning, unstructured sparsity and 2:4 sparsity all end in the same object: a 0/1 array per
weight name. Training multiplies each weight by its mask after every update (or in the forward pass
through MaskModule), so pruned entries stay zero until they are removed or exported as sparse.
"""

from __future__ import annotations

import numpy as np
import onnx
import torch
from torch import nn

from autocompress.graph.index import GraphIndex
from autocompress.prune.constants import set_constant
from autocompress.prune.groups import ChannelAnalysis, removed_indices

# roles whose zeroing silences a channel; running statistics and activations are left alone
CHANNEL_MASK_ROLES = (
    "producer",
    "producer_bias",
    "depthwise",
    "norm_scale",
    "norm_bias",
    "channel_constant",
    "consumer",
)


class MaskModule(nn.Module):
    """Multiplies its input by a fixed mask (broadcast); register it as a parametrization of a weight
    (torch.nn.utils.parametrize) or call it on the weight before use."""

    def __init__(self, mask: np.ndarray | torch.Tensor):
        super().__init__()
        self.register_buffer("mask", torch.as_tensor(np.asarray(mask, dtype=np.float32)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.mask.to(dtype=x.dtype)


def channel_masks(
    analysis: ChannelAnalysis, keep: dict[int, np.ndarray], roles: tuple[str, ...] = CHANNEL_MASK_ROLES
) -> dict[str, np.ndarray]:
    """0/1 masks, shaped like each constant, that zero the channels `keep` drops (see select_channels)."""
    index = GraphIndex(analysis.model)
    masks: dict[str, np.ndarray] = {}
    for member in analysis.constant_members:
        if member.role not in roles or member.segment.group not in keep:
            continue
        if member.tensor not in masks:
            masks[member.tensor] = np.ones(index.constant_value(member.tensor).shape, dtype=np.float32)
        dropped = removed_indices([member.segment], keep)
        view = np.moveaxis(masks[member.tensor], member.axis, 0)
        view[dropped] = 0.0
    return masks


def apply_masks(model: onnx.ModelProto, masks: dict[str, np.ndarray]) -> onnx.ModelProto:
    """A copy of `model` whose named constants are multiplied by their masks."""
    masked = onnx.ModelProto()
    masked.CopyFrom(model)
    index = GraphIndex(masked)
    for name, mask in masks.items():
        value = index.constant_value(name)
        set_constant(index, name, value * mask.astype(value.dtype))
    return masked


def sparsity(array: np.ndarray) -> float:
    """Fraction of exact zeros."""
    return float((array == 0).sum()) / max(array.size, 1)
