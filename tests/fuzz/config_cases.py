"""Hypothesis strategies for untrusted configs: YAML text (valid, mutated, garbage, hostile) and API arguments.

Section bodies are drawn from the real field names and annotations of every section class, so most cases get
past the first key check and exercise the value validation; the rest is random structure.
"""

from __future__ import annotations

import math
import typing
from pathlib import Path
from typing import Any

import yaml
from hypothesis import strategies as st
from pydantic import BaseModel

from autocompress.config import CompressConfig, GlobalConfig, TrainConfig, load_config
from autocompress.config.registry import strategy_specs

STRATEGY_SECTIONS = {spec.key: spec.section for spec in strategy_specs()}
LEGACY_SECTION_NAMES = {alias: spec.key for spec in strategy_specs() for alias in spec.aliases}

SECTION_CLASSES: dict[str, type[BaseModel]] = {"Global": GlobalConfig, "TrainConfig": TrainConfig, **STRATEGY_SECTIONS}
SECTION_NAMES = [*SECTION_CLASSES, *LEGACY_SECTION_NAMES]

BOUNDARY_INTS = [0, 1, -1, 2, 16, 2**31, 2**63, -(2**63) - 1, 10**30]
BOUNDARY_FLOATS = [0.0, -0.0, 1.0, 0.999, 1e-12, -1.0, 1e308, math.inf, -math.inf, math.nan]

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.sampled_from(BOUNDARY_INTS),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.binary(max_size=6),
    st.dates(),
)
hashable_scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=12))
any_value = st.recursive(
    scalars,
    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(hashable_scalars, kids, max_size=4),
    max_leaves=12,
)


def section_class(name: str) -> type[BaseModel]:
    return SECTION_CLASSES[LEGACY_SECTION_NAMES.get(name, name)]


def plausible_values(annotation: Any, depth: int = 0) -> st.SearchStrategy:
    """Values shaped like `annotation` (a pydantic field type), with boundary cases and an occasional stray type."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Literal:
        shaped = st.sampled_from(args)
    elif origin is typing.Union:
        shaped = st.one_of([plausible_values(a, depth) for a in args])
    elif origin is list:
        shaped = st.lists(plausible_values(args[0], depth + 1), max_size=4)
    elif origin is dict:
        shaped = st.dictionaries(st.text(max_size=8), plausible_values(args[1], depth + 1), max_size=3)
    elif annotation is bool:
        shaped = st.booleans()
    elif annotation is int:
        shaped = st.integers(-3, 20000) | st.sampled_from(BOUNDARY_INTS)
    elif annotation is float:
        shaped = st.floats(-2.0, 2.0) | st.sampled_from(BOUNDARY_FLOATS)
    elif annotation is str:
        shaped = st.text(max_size=10) | st.sampled_from(["cpu", "gpu", "x", "", "../up", "/abs"])
    elif annotation is type(None):
        shaped = st.none()
    elif isinstance(annotation, type) and issubclass(annotation, BaseModel) and depth < 2:
        shaped = section_bodies(annotation, depth + 1)
    else:
        shaped = any_value
    return st.one_of(shaped, shaped, shaped, any_value)


@st.composite
def section_bodies(draw, cls: type[BaseModel], depth: int = 0) -> dict[str, Any]:
    """A mapping of real keys (current and legacy) of `cls`, sometimes with an unknown key."""
    aliases = dict(getattr(cls, "legacy_aliases", {}))
    keys = draw(st.lists(st.sampled_from([*cls.model_fields, *aliases]), unique=True, max_size=5))
    body = {key: draw(plausible_values(cls.model_fields[aliases.get(key, key)].annotation, depth)) for key in keys}
    if draw(st.integers(0, 9)) == 0:
        body[draw(st.text(max_size=10))] = draw(any_value)
    return body


@st.composite
def config_dicts(draw) -> dict[Any, Any]:
    names = draw(st.lists(st.sampled_from(SECTION_NAMES), unique=True, max_size=3))
    config: dict[Any, Any] = {}
    for name in names:
        config[name] = draw(any_value) if draw(st.integers(0, 9)) == 0 else draw(section_bodies(section_class(name)))
    if draw(st.integers(0, 9)) == 0:
        config[draw(hashable_scalars)] = draw(any_value)
    return config


def dump_yaml(data: dict[Any, Any]) -> str:
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)


YAML_NOISE = st.text(alphabet=":-[]{}&*!|>'\"%@`#,?\n\t \\.0123456789abc\x00\ufeff", min_size=1, max_size=8)


@st.composite
def mutated_text(draw, text: str) -> str:
    """One or more edits: delete, duplicate or insert YAML-significant characters at random places."""
    for _ in range(draw(st.integers(1, 3))):
        i = draw(st.integers(0, len(text)))
        j = draw(st.integers(i, min(len(text), i + 20)))
        op = draw(st.sampled_from(["delete", "duplicate", "insert"]))
        if op == "delete":
            text = text[:i] + text[j:]
        elif op == "duplicate":
            text = text[:j] + text[i:j] + text[j:]
        else:
            text = text[:i] + draw(YAML_NOISE) + text[i:]
    return text


@st.composite
def hostile_yaml(draw) -> str:
    """Known-bad shapes: code-executing tags, deep nesting, alias bombs, cycles, huge numbers, huge strings."""
    n = draw(st.integers(20, 3000))
    levels, width = draw(st.integers(2, 9)), draw(st.integers(2, 9))
    bomb = ["TrainConfig:", "  amp_config:", "    l0: &l0 [x, x]"]
    bomb += [f"    l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * width)}]" for i in range(1, levels)]
    templates = [
        "QuantPost: !!python/object/apply:os.system ['true']\n",
        "!!python/object/apply:subprocess.check_output [['true']]\n",
        "Global: {model_dir: !!python/name:os.system }\n",
        "TrainConfig: !!python/object/new:dict {}\n",
        "Global: !custom {a: 1}\n",
        "TrainConfig: {amp_config: {a: !!binary /w==}}\n",
        "TrainConfig: {amp_config: {a: !!set {x, y}}}\n",
        "TrainConfig: {amp_config: !!omap [{a: 1}, {b: 2}]}\n",
        "TrainConfig: {amp_config: &a {x: *a}}\n",
        "QuantPost: &a [*a]\n",
        "Global: {model_dir: *undefined}\n",
        "---\nGlobal: {}\n---\nQuantPost: {}\n",
        "Global: {}\nGlobal: {devices: gpu}\n",
        f"a: {'[' * n}{']' * n}\n",
        f"TrainConfig: {{amp_config: {'{a: ' * n}1{'}' * n}}}\n",
        "TrainConfig:\n  amp_config:\n" + "".join(f"{'  ' * (i + 2)}k{i}:\n" for i in range(min(n, 400))),
        "\n".join(bomb) + "\n",
        f"QuantPost: {{batch_size: {'9' * n}}}\n",
        f"Distillation: {{alpha: 1{'0' * n}.0}}\n",
        f"Global: {{model_dir: {'a' * (n * 50)}}}\n",
        f"{'k' * n}: 1\n",
        "\ufeffGlobal: {devices: cpu}\n",
        "Global:\n\tdevices: cpu\n",
    ]
    return draw(st.sampled_from(templates))


yaml_texts = st.one_of(
    config_dicts().map(dump_yaml),
    config_dicts().map(dump_yaml).flatmap(mutated_text),
    hostile_yaml(),
    st.text(max_size=200),
)
yaml_files = st.one_of(
    yaml_texts.map(lambda t: t.encode("utf-8")),
    yaml_texts.map(lambda t: t.encode("utf-16")),
    st.binary(max_size=300),
)


@st.composite
def api_arguments(draw) -> dict[str, Any]:
    """load_config's three arguments as an API user could pass them (no strings: those are paths)."""
    config = draw(st.one_of(st.none(), config_dicts(), config_dicts(), st.lists(scalars, max_size=2), st.integers()))
    strategy_config = draw(
        st.one_of(
            st.none(),
            st.dictionaries(st.sampled_from(list(STRATEGY_SECTIONS)), st.just(None), max_size=2).flatmap(
                lambda keys: st.fixed_dictionaries({k: section_bodies(STRATEGY_SECTIONS[k]) for k in keys})
            ),
            st.lists(st.sampled_from(list(STRATEGY_SECTIONS)).map(lambda k: {k: {}}) | any_value, max_size=2),
            any_value,
        )
    )
    train_config = draw(st.one_of(st.none(), section_bodies(TrainConfig), any_value))
    return {"config": config, "strategy_config": strategy_config, "train_config": train_config}


def load_and_round_trip(config: Any, strategy_config: Any = None, train_config: Any = None) -> CompressConfig:
    """Load, then check that the effective config (what save_dir/config.yaml holds) loads back to itself."""
    loaded = load_config(config, strategy_config, train_config)
    written = loaded.to_yaml()
    again = load_config(yaml.safe_load(written))
    assert again.to_yaml() == written, f"config.yaml does not load back to itself:\n{written}\n---\n{again.to_yaml()}"
    return loaded


def load_yaml_file(path: Path, content: bytes) -> CompressConfig:
    path.write_bytes(content)
    return load_and_round_trip(path)
