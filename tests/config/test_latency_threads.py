"""Global.latency_threads: a positive count or "all" (every core), anything else refused naming what is allowed."""

import pytest

from autocompress.config import load_config
from autocompress.errors import ConfigError
from autocompress.runtime.latency import all_cores


def test_all_stays_as_written_and_resolves_to_every_core(tmp_path):
    path = tmp_path / "all.yaml"
    path.write_text("Global:\n  latency_threads: all\n", encoding="utf-8")
    config = load_config(path)
    assert config.global_.latency_threads == "all"
    assert config.global_.resolved_latency_threads() == all_cores()
    assert load_config(config.to_dict()).global_.latency_threads == "all"


def test_the_default_is_one_thread_and_a_count_is_kept():
    assert load_config({}).global_.resolved_latency_threads() == 1
    assert load_config({"Global": {"latency_threads": 3}}).global_.resolved_latency_threads() == 3


@pytest.mark.parametrize("value", ["two", "", 0, -2, 1.5])
def test_other_values_are_refused_with_the_allowed_ones(value):
    with pytest.raises(ConfigError) as error:
        load_config({"Global": {"latency_threads": value}})
    assert "Global.latency_threads" in str(error.value) and "a positive integer or 'all'" in str(error.value)


def test_a_run_with_all_measures_at_every_core(tiny_cnn, tmp_path):
    """Latency threads "all" reach the run as the number of cores, not as a string ONNX Runtime would refuse."""
    import numpy as np

    from autocompress import AutoCompression

    rng = np.random.default_rng(0)
    data = [{"x": rng.standard_normal((2, 3, 16, 16)).astype(np.float32)} for _ in range(2)]
    config = {"Global": {"latency_threads": "all"}, "QuantPost": {"algo": "abs_max", "batch_nums": 1}}
    result = AutoCompression(tiny_cnn, data, save_dir=tmp_path / "o", eval_dataloader=data, config=config).compress()
    assert result.report["hardware"]["latency_threads"] == all_cores()
