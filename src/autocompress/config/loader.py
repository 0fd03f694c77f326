"""Load, validate and write the full config (YAML file, dict, or typed objects)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from autocompress.config.base import Section
from autocompress.config.combinations import check_combination, ordered_stage_keys
from autocompress.config.global_section import GlobalConfig
from autocompress.config.registry import RESERVED_KEYS, strategy_spec, strategy_specs
from autocompress.config.train import TrainConfig
from autocompress.config.yaml_reader import parse_yaml
from autocompress.errors import ConfigError


@dataclass
class CompressConfig:
    """The effective config: every section typed, every default filled in."""

    global_: GlobalConfig = field(default_factory=GlobalConfig)
    train: TrainConfig | None = None
    strategies: dict[str, Section] = field(default_factory=dict)

    @property
    def stage_keys(self) -> list[str]:
        return ordered_stage_keys(set(self.strategies))

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"Global": self.global_.to_dict()}
        for key in self.stage_keys + [k for k in self.strategies if k not in self.stage_keys]:
            out[key] = self.strategies[key].to_dict()
        if self.train is not None:
            out["TrainConfig"] = self.train.to_dict()
        return out

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False, allow_unicode=True)


#: Limits on a YAML file's data: aliases let a few lines expand to billions of values, and nesting this deep
#: is never a config but exhausts the recursion of the validators.
MAX_YAML_VALUES = 100_000
MAX_YAML_DEPTH = 32


def _check_yaml_size(data: Any, path: Path) -> None:
    """Walk the loaded data (aliases counted each time they are used) and refuse bombs and deep nesting."""
    stack = [(data, 0)]
    seen = 0
    while stack:
        value, depth = stack.pop()
        seen += 1
        if seen > MAX_YAML_VALUES:
            raise ConfigError(
                f"config file {str(path)!r} is too large: more than {MAX_YAML_VALUES} values once its aliases "
                "are expanded"
            )
        if depth > MAX_YAML_DEPTH:
            raise ConfigError(f"config file {str(path)!r} nests deeper than {MAX_YAML_DEPTH} levels")
        if isinstance(value, dict):
            stack.extend((v, depth + 1) for v in value.values())
        elif isinstance(value, (list, tuple, set)):
            stack.extend((v, depth + 1) for v in value)


def _read_yaml(path: str | os.PathLike) -> dict[str, Any]:
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file {str(p)!r} does not exist")
    try:
        # Bytes, so that PyYAML detects UTF-8/UTF-16 from the BOM and reports undecodable bytes as a YAMLError.
        data = parse_yaml(p.read_bytes())
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {str(p)!r} is not valid YAML: {exc}") from None
    except RecursionError:
        raise ConfigError(f"config file {str(p)!r} nests deeper than {MAX_YAML_DEPTH} levels") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {str(p)!r} must hold a mapping of sections, got {type(data).__name__}")
    _check_yaml_size(data, p)
    return data


def _check_writable(config: CompressConfig) -> None:
    """The effective config is written to save_dir/config.yaml at the end of a run; fail now, not then."""
    try:
        config.to_yaml()
    except (ValueError, TypeError, yaml.YAMLError) as exc:  # e.g. non-UTF-8 bytes or a cycle in a free-form dict
        raise ConfigError(
            f"the config holds a value that cannot be written as YAML ({exc}); use plain strings, numbers, "
            "booleans, lists and mappings"
        ) from None


def load_config(
    config: str | os.PathLike | Mapping[str, Any] | CompressConfig | None = None,
    strategy_config: Mapping[str, Any] | None = None,
    train_config: Any = None,
) -> CompressConfig:
    """Merge a YAML path or dict with the seed-style `strategy_config` / `train_config` arguments.

    Legacy section names (Quantization, Prune) and legacy keys are normalised. Unknown sections, keys,
    wrong types and unsupported combinations raise ConfigError naming the key and what is allowed.
    """
    if isinstance(config, CompressConfig):
        raw: dict[str, Any] = config.to_dict()
    elif config is None:
        raw = {}
    elif isinstance(config, Mapping):
        raw = dict(config)
    elif isinstance(config, (str, os.PathLike)):
        raw = _read_yaml(config)
    else:
        raise ConfigError(f"config must be a YAML path, a dict or None, got {type(config).__name__}")

    if strategy_config is not None:
        if isinstance(strategy_config, (list, tuple)):
            merged: dict[str, Any] = {}
            for part in strategy_config:
                if not isinstance(part, Mapping):
                    raise ConfigError(
                        f"strategy_config as a list must hold dicts of sections, got {type(part).__name__}"
                    )
                merged.update(part)
            strategy_config = merged
        if not isinstance(strategy_config, Mapping):
            raise ConfigError("strategy_config must be a dict such as {'QuantPost': QuantPost(...)}")
        for key, value in strategy_config.items():
            raw[key] = value
    if train_config is not None:
        raw["TrainConfig"] = train_config

    sections: dict[str, Any] = {}
    for key, value in raw.items():
        spec = strategy_spec(key)
        name = spec.key if spec else key
        if spec is None and name not in RESERVED_KEYS:
            allowed = [*RESERVED_KEYS, *(s.key for s in strategy_specs())]
            raise ConfigError(f"unknown config section {key!r}; allowed sections are {allowed}")
        if name in sections:
            raise ConfigError(f"section {name!r} is given twice (as {key!r} and under its other name)")
        sections[name] = value

    result = CompressConfig()
    result.global_ = GlobalConfig.parse(sections.pop("Global", None), "Global")
    if "TrainConfig" in sections:
        result.train = TrainConfig.parse(sections.pop("TrainConfig"), "TrainConfig")
    for key, value in sections.items():
        result.strategies[key] = strategy_spec(key).section.parse(value, key)
    check_combination(set(result.strategies))
    _check_writable(result)
    return result


def save_config(config: CompressConfig, path: str | os.PathLike) -> None:
    Path(path).write_text(config.to_yaml(), encoding="utf-8")
