"""TrainConfig.amp_config (Paddle AMP keys) -> torch.autocast and a GradScaler.

On CPU the autocast dtype is bfloat16 (float16 matmuls are slow on CPUs and bf16 needs no loss scaling); on
CUDA it is `dtype` (float16 by default, with dynamic loss scaling by torch.amp.GradScaler; bfloat16 without).

Paddle keys mapped: enable, dtype, init_loss_scaling -> init_scale, incr_ratio -> growth_factor,
decr_ratio -> backoff_factor, incr_every_n_steps -> growth_interval. Accepted and ignored (logged), because
torch's autocast decides per op and its scaler is always dynamic: level, custom_white_list, custom_black_list,
custom_black_varnames, use_dynamic_loss_scaling, decr_every_n_nan_or_inf, use_pure_fp16, use_fp16_guard, use_promote.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import torch

from autocompress.errors import ConfigError

log = logging.getLogger(__name__)

_SCALER_KEYS = {
    "init_loss_scaling": "init_scale",
    "incr_ratio": "growth_factor",
    "decr_ratio": "backoff_factor",
    "incr_every_n_steps": "growth_interval",
}
_IGNORED_KEYS = {
    "level",
    "custom_white_list",
    "custom_black_list",
    "custom_black_varnames",
    "use_dynamic_loss_scaling",
    "decr_every_n_nan_or_inf",
    "use_pure_fp16",
    "use_fp16_guard",
    "use_promote",
}
_DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16}


@dataclass
class AmpPolicy:
    enabled: bool
    device_type: str
    dtype: torch.dtype
    scaler: torch.amp.GradScaler

    def autocast(self) -> torch.autocast:
        return torch.autocast(self.device_type, dtype=self.dtype, enabled=self.enabled)


def amp_policy(amp_config: dict[str, Any] | None, device: torch.device) -> AmpPolicy:
    """The autocast/scaler settings for `amp_config` on `device`; a disabled policy when amp_config is None."""
    config = dict(amp_config or {})
    allowed = {"enable", "dtype"} | set(_SCALER_KEYS) | _IGNORED_KEYS
    unknown = set(config) - allowed
    if unknown:
        raise ConfigError(
            f"TrainConfig.amp_config: unknown key(s) {sorted(unknown)}; allowed keys are {sorted(allowed)}"
        )
    enabled = amp_config is not None and bool(config.pop("enable", True))
    dtype_name = config.pop("dtype", "float16")
    if dtype_name not in _DTYPES:
        raise ConfigError(f"TrainConfig.amp_config.dtype = {dtype_name!r}; allowed {sorted(_DTYPES)}")
    for key in sorted(set(config) & _IGNORED_KEYS):
        log.info("amp_config.%s has no torch autocast equivalent; ignored", key)
    dtype = _DTYPES[dtype_name] if device.type == "cuda" else torch.bfloat16
    if enabled and device.type != "cuda" and dtype_name == "float16":
        log.info("AMP on %s uses bfloat16", device.type)
    use_scaler = enabled and dtype == torch.float16
    scaler_args = {new: config[old] for old, new in _SCALER_KEYS.items() if old in config}
    scaler = torch.amp.GradScaler(device.type, enabled=use_scaler, **(scaler_args if use_scaler else {}))
    return AmpPolicy(enabled, device.type, dtype, scaler)
