"""Untrusted configs: every YAML file or API argument either loads (and round-trips) or raises ConfigError."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings

from autocompress.config import load_config
from autocompress.errors import ConfigError
from tests.fuzz.config_cases import api_arguments, load_and_round_trip, load_yaml_file, yaml_files
from tests.fuzz.harness import DOCUMENTED_ERROR, OK, run_case, time_limit

CI_SETTINGS = settings(
    derandomize=True,
    max_examples=200,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example],
)


@CI_SETTINGS
@given(content=yaml_files)
def test_any_yaml_file_loads_or_raises_config_error(content):
    with tempfile.TemporaryDirectory() as tmp:
        assert run_case(lambda: load_yaml_file(Path(tmp) / "config.yaml", content)) in (OK, DOCUMENTED_ERROR)


@CI_SETTINGS
@given(arguments=api_arguments())
def test_any_api_arguments_load_or_raise_config_error(arguments):
    assert run_case(lambda: load_and_round_trip(**arguments)) in (OK, DOCUMENTED_ERROR)


@pytest.mark.parametrize(
    "payload",
    [
        "Global: !!python/object/apply:os.system ['touch {marker}']\n",
        "!!python/object/apply:os.system ['touch {marker}']\n",
        "Global: {{model_dir: !!python/object/apply:subprocess.call [['touch', '{marker}']]}}\n",
        "Global: {{model_dir: !!python/object/new:os.system ['touch {marker}']}}\n",
    ],
)
def test_python_tags_are_refused_and_never_run(tmp_path, payload):
    marker = tmp_path / "executed"
    path = tmp_path / "config.yaml"
    path.write_text(payload.format(marker=marker))
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(path)
    assert not marker.exists()


def test_binary_file_is_a_config_error(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_bytes(b"Global: {devices: \x9c\xff}\n")
    with pytest.raises(ConfigError, match="not valid YAML: unacceptable character #x009c"):
        load_config(path)


def test_alias_bomb_is_refused_quickly(tmp_path):
    lines = ["TrainConfig:", "  amp_config:", "    l0: &l0 [x, x, x, x, x, x, x, x, x]"]
    lines += [f"    l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]" for i in range(1, 9)]
    path = tmp_path / "config.yaml"
    path.write_text("\n".join(lines) + "\n")
    with time_limit(5), pytest.raises(ConfigError, match="too large"):
        load_config(path)


@pytest.mark.parametrize("depth", [200, 5000])
def test_deep_nesting_is_a_config_error(tmp_path, depth):
    path = tmp_path / "config.yaml"
    path.write_text(f"TrainConfig: {{amp_config: {{a: {'[' * depth}{']' * depth}}}}}\n")
    with pytest.raises(ConfigError, match="nest"):
        load_config(path)


@pytest.mark.parametrize(
    "text",
    [
        "Distillation: {alpha: .nan}",
        "TrainConfig: {learning_rate: .inf}",
        "ChannelPrune: {pruned_ratio: {conv: .nan}}",
        "QuantPost: {max_metric_drop: .inf}",
    ],
)
def test_nan_and_infinity_are_refused_in_float_fields(tmp_path, text):
    path = tmp_path / "config.yaml"
    path.write_text(text + "\n")
    with pytest.raises(ConfigError, match="finite number"):
        load_config(path)


def test_config_that_cannot_be_written_back_is_refused_at_load_time():
    with pytest.raises(ConfigError, match="cannot be written as YAML"):
        load_config({"TrainConfig": {"amp_config": {"level": b"\xff"}}})
