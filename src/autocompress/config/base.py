"""Base class of every typed config section.

Sections are pydantic models that forbid unknown keys, so a typo is an error instead of a silently ignored
setting (ACT's most confusing behaviour). Older PaddleSlim key names are accepted as aliases and normalised to the
current names, so the effective config written to save_dir always uses one vocabulary. Seed keys that
autocompress accepts but does not apply say so once, with a warning, when they are set to anything but their default.
"""

from __future__ import annotations

import logging
import types
import typing
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

from autocompress.errors import ConfigError

log = logging.getLogger(__name__)


class Section(BaseModel):
    """A config section: strict, typed, with documented legacy aliases."""

    #: NaN and infinity are refused in float fields: no setting means them, and they poison training silently.
    model_config = ConfigDict(extra="forbid", validate_assignment=True, frozen=False, allow_inf_nan=False)

    #: legacy key -> current key, applied before validation.
    legacy_aliases: ClassVar[dict[str, str]] = {}
    #: seed key accepted but not applied -> what autocompress does instead; warned about when not the default.
    unapplied_keys: ClassVar[dict[str, str]] = {}

    @model_validator(mode="before")
    @classmethod
    def _rename_legacy_keys(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        data = dict(data)
        for old, new in cls.legacy_aliases.items():
            if old in data:
                if new in data:
                    raise ValueError(f"both '{old}' and its current name '{new}' are set; keep only '{new}'")
                log.info("%s: legacy key '%s' read as '%s'", cls.__name__, old, new)
                data[new] = data.pop(old)
        return {key: _none_literal(cls, key, value) for key, value in data.items()}

    def model_post_init(self, context: Any, /) -> None:
        """Warn once, when the section is built, about each seed key that is set but has no effect here."""
        for key, instead in self.unapplied_keys.items():
            value = getattr(self, key)
            if key in self.model_fields_set and value != type(self).model_fields[key].get_default():
                log.warning("%s.%s = %r is not applied: %s", type(self).__name__, key, value, instead)

    @classmethod
    def parse(cls, data: Any, section: str | None = None) -> Section:
        """Validate `data` (dict, None or an instance) into this section, raising ConfigError on failure."""
        if isinstance(data, cls):
            return data
        if data is None:
            data = {}
        if hasattr(data, "__dict__") and not isinstance(data, dict):
            # PaddleSlim-style strategy objects (plain classes holding their fields as attributes).
            data = {k: v for k, v in vars(data).items() if not k.startswith("_") and k != "name"}
        if not isinstance(data, dict):
            raise ConfigError(
                f"{section or cls.__name__}: expected a mapping of keys to values, got {type(data).__name__} {data!r}"
            )
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise ConfigError(format_validation_error(exc, section or cls.__name__, cls)) from None

    def __setattr__(self, name: str, value: Any) -> None:
        """Assignments are validated too (API arguments override config keys this way): a bad value is a
        ConfigError naming the key, as when the config is loaded."""
        try:
            super().__setattr__(name, _none_literal(type(self), name, value))
        except ValidationError as exc:
            raise ConfigError(format_validation_error(exc, type(self).__name__, type(self))) from None

    def to_dict(self) -> dict[str, Any]:
        """Plain data with every default filled in, as written to save_dir/config.yaml."""
        return self.model_dump(mode="json")


def _allows_none(annotation: Any) -> bool:
    return typing.get_origin(annotation) in (typing.Union, types.UnionType) and type(None) in typing.get_args(
        annotation
    )


def _none_literal(model: type[BaseModel], key: str, value: Any) -> Any:
    """The seed writes `None` for an unset key, which YAML reads as the string 'None': it means None wherever a
    key may be None."""
    field = model.model_fields.get(key) if isinstance(value, str) else None
    return None if value == "None" and field is not None and _allows_none(field.annotation) else value


def _section_at(model: type[BaseModel], path: tuple) -> type[BaseModel] | None:
    """The nested section a key path leads to (gmp_config inside UnstructurePrune), None when it is no section."""
    for part in path:
        field = model.model_fields.get(part) if isinstance(part, str) else None
        if field is None:
            return None
        nested = [
            a
            for a in (field.annotation, *typing.get_args(field.annotation))
            if isinstance(a, type) and issubclass(a, BaseModel)
        ]
        if not nested:
            return None
        model = nested[0]
    return model


def format_validation_error(exc: ValidationError, section: str, model: type[BaseModel]) -> str:
    """One line per problem: the key path, the offending value and what is allowed."""
    lines = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"])
        key = f"{section}.{loc}" if loc else section
        if err["type"] == "extra_forbidden":
            path = err["loc"][:-1]
            owner = _section_at(model, path) or model
            where = ".".join([section, *map(str, path)]) if owner is not model else section
            lines.append(f"{key}: unknown key; allowed keys of {where} are {sorted(owner.model_fields)}")
            continue
        value = err.get("input")
        msg = err["msg"]
        if msg.startswith("Value error, "):
            msg = msg[len("Value error, ") :]
        lines.append(f"{key} = {value!r}: {msg}")
    return "invalid config:\n  " + "\n  ".join(lines)
