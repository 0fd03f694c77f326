"""The strategies: one record per config key, read by config loading, combination checks and planning.

A strategy is added with one register_strategy call naming its key, its typed config section, the stage that
runs it, its place in the execution order, the rules it combines by and its older key names; nothing else
lists strategies. The stage may be given as "package.module:Class", imported only when a run plans it, so
loading a config never imports the stages (they pull in torch).
"""

from __future__ import annotations

from dataclasses import dataclass

from autocompress.config.base import Section
from autocompress.errors import ConfigError

#: Top-level config sections that are not strategies.
RESERVED_KEYS = ("Global", "TrainConfig")


@dataclass(frozen=True)
class StrategySpec:
    """Everything the package knows about one strategy key."""

    key: str
    section: type[Section]
    #: The Stage subclass that runs the strategy, or "package.module:Class"; None for a section that another
    #: strategy's stage reads (part_of).
    stage: type | str | None = None
    #: Stages run in ascending order: structure changes first, then distillation, quantization last.
    order: int = 0
    #: At most one strategy of a family per run (e.g. one quantization).
    family: str | None = None
    #: The strategy whose stage reads this section; the run must have it.
    part_of: str | None = None
    #: The stage trains the model, so a distillation in the same run is its loss rather than a stage of its own.
    trains: bool = False
    #: A distillation: the loss of the run's training stage when there is one, a stage of its own otherwise.
    distils: bool = False
    #: No other strategy may be in the same run.
    runs_alone: bool = False
    #: Older key names read as this key (PaddleSlim's Quantization for QuantAware).
    aliases: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if (self.stage is None) == (self.part_of is None):
            raise ConfigError(
                f"strategy {self.key!r}: give either stage (the Stage class that runs it, or 'module:Class') or "
                "part_of (the strategy whose stage reads its section), not both or neither"
            )
        if not (isinstance(self.section, type) and issubclass(self.section, Section)):
            raise ConfigError(f"strategy {self.key!r}: section must be a Section subclass, got {self.section!r}")


_SPECS: dict[str, StrategySpec] = {}
#: Every key and alias -> its key.
_NAMES: dict[str, str] = {}


def register_strategy(spec: StrategySpec) -> StrategySpec:
    """Make `spec.key` (and its aliases) a config section, a member of the combination rules and a planned stage."""
    for name in (spec.key, *spec.aliases):
        if name in RESERVED_KEYS or name in _NAMES:
            taken = "a built-in section" if name in RESERVED_KEYS else f"strategy {_NAMES[name]!r}"
            raise ConfigError(f"strategy name {name!r} is already used by {taken}; choose another key or alias")
    _SPECS[spec.key] = spec
    _NAMES.update(dict.fromkeys((spec.key, *spec.aliases), spec.key))
    return spec


def strategy_spec(name: str) -> StrategySpec | None:
    """The record of a strategy key or of one of its aliases; None for any other name."""
    key = _NAMES.get(name)
    return None if key is None else _SPECS[key]


def strategy_specs() -> tuple[StrategySpec, ...]:
    """Every registered strategy, in registration order."""
    return tuple(_SPECS.values())
