"""Which strategy keys may be combined, and in which order their stages run, as the registered records say.

With the built-in records: the seed's eight combinations, QuantPost alone, and a prune/sparse stage followed by
quantization (quantization always last). A training strategy given without Distillation distils from the
original model with default settings, as ACT does internally.
"""

from __future__ import annotations

from collections.abc import Iterable

from autocompress.config.registry import StrategySpec, strategy_spec, strategy_specs
from autocompress.errors import ConfigError


def check_combination(keys: set[str]) -> None:
    """Raise ConfigError naming the supported combinations if `keys` is not one of them."""
    specs = [spec for spec in map(strategy_spec, sorted(keys)) if spec is not None]
    problems = [*_family_problems(specs), *_part_of_problems(specs, keys)]
    problems += [f"{spec.key} runs alone" for spec in specs if spec.runs_alone and len(keys) > 1]
    if problems:
        raise ConfigError(
            f"unsupported strategy combination {sorted(keys)}: "
            + "; ".join(problems)
            + f". Supported: {supported_combinations()}"
        )


def _families(specs: Iterable[StrategySpec]) -> dict[str, list[str]]:
    families: dict[str, list[str]] = {}
    for spec in specs:
        if spec.family is not None:
            families.setdefault(spec.family, []).append(spec.key)
    return families


def _family_problems(specs: list[StrategySpec]) -> list[str]:
    return [
        f"at most one {family} strategy per run, got {members}; choose one"
        for family, members in _families(specs).items()
        if len(members) > 1
    ]


def _part_of_problems(specs: list[StrategySpec], keys: set[str]) -> list[str]:
    return [
        f"{spec.key} holds settings of the {spec.part_of} stage; add a {spec.part_of} section"
        for spec in specs
        if spec.part_of is not None and spec.part_of not in keys
    ]


def supported_combinations() -> str:
    """The combination rules of every registered strategy, in words."""
    specs = strategy_specs()
    families = "; ".join(f"{family}: {'/'.join(members)}" for family, members in _families(specs).items())
    rules = [f"at most one strategy of each family ({families})"]
    rules += [f"{spec.key} only with {spec.part_of}" for spec in specs if spec.part_of is not None]
    rules += [f"{spec.key} alone" for spec in specs if spec.runs_alone]
    return ", ".join(rules)


def ordered_stage_keys(keys: Iterable[str]) -> list[str]:
    """The keys that run as stages, in execution order (a part_of section belongs to its strategy's stage)."""
    wanted = set(keys)
    stages = [spec for spec in strategy_specs() if spec.key in wanted and spec.stage is not None]
    return [spec.key for spec in sorted(stages, key=lambda spec: spec.order)]
