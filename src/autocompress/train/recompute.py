"""TrainConfig.recompute_config -> activation checkpointing of the student's forward.

The student is one module (an ONNX graph run by TorchGraph), so its forward is wrapped in one
torch.utils.checkpoint segment: its intermediate activations are dropped after the forward and recomputed during
backward. That frees the student's activations while the teachers run and the losses are computed; the backward
peak stays that of one full forward. Paddle's `checkpoints` (tensor names where segments split) are accepted and
logged: splitting the graph into segments at named tensors is not done. RNG state is replayed during recomputation
(preserve_rng_state), and buffers the forward updates in place (BatchNormalization running statistics, moving
quantization ranges) are set to their pre-forward values for the recomputation and back afterwards, so the
recomputation sees what the forward saw and buffers are updated once per step: results equal a run without
recompute.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from typing import Any

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from autocompress.errors import ConfigError

log = logging.getLogger(__name__)

_ALLOWED_KEYS = {"checkpoints", "enable_offload"}


def _buffer_values(module: nn.Module) -> list[torch.Tensor]:
    return [b.detach().clone() for b in module.buffers()]


def _set_buffers(module: nn.Module, values: list[torch.Tensor]) -> None:
    with torch.no_grad():
        for buffer, value in zip(module.buffers(), values):
            buffer.copy_(value)


@contextmanager
def _replayed_buffers(module: nn.Module, before_forward: list[torch.Tensor]) -> Iterator[None]:
    """The recomputation sees the buffers the forward saw, and leaves them as the forward left them."""
    after_forward = _buffer_values(module)
    _set_buffers(module, before_forward)
    try:
        yield
    finally:
        _set_buffers(module, after_forward)


@contextmanager
def activation_checkpointing(module: nn.Module, recompute_config: dict[str, Any] | None) -> Iterator[None]:
    """Within the context, `module`'s forward recomputes its activations in backward (see module docstring)."""
    if recompute_config is None:
        yield
        return
    unknown = set(recompute_config) - _ALLOWED_KEYS
    if unknown:
        raise ConfigError(
            f"TrainConfig.recompute_config: unknown key(s) {sorted(unknown)}; allowed keys are {sorted(_ALLOWED_KEYS)}"
        )
    if recompute_config.get("enable_offload"):
        raise ConfigError("TrainConfig.recompute_config.enable_offload (CPU offload of activations) is not supported")
    if recompute_config.get("checkpoints"):
        log.info("recompute: the student forward is one checkpoint segment; 'checkpoints' names are not split at")
    forward = module.forward

    def checkpointed(*args, **kwargs):
        before = _buffer_values(module)

        def contexts():
            return nullcontext(), _replayed_buffers(module, before)

        return checkpoint(forward, *args, use_reentrant=False, context_fn=contexts, **kwargs)

    module.forward = checkpointed
    try:
        yield
    finally:
        del module.forward  # the class's forward again
