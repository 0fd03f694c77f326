"""Progress bars on stderr (Global.progress, --quiet) and a library that prints nothing unless asked."""

import contextlib
import io
import re
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import yaml

from autocompress import AutoCompression, progress
from autocompress.cli import main
from autocompress.config import HyperParameterOptimization
from autocompress.errors import ConfigError
from autocompress.runtime.ort import measure_latency
from autocompress.search.hpo import search_ptq

#: What only a tqdm bar writes: its elapsed-time field, "[00:00<?" or "[00:01, ".
BAR = re.compile(r"\[\d\d:\d\d[<,]")


class Terminal(io.StringIO):
    """A stderr that says it is a terminal, so that `auto` shows bars."""

    def isatty(self) -> bool:
        return True


def _bars_on_a_terminal(run) -> bool:
    """Whether `run()` draws a bar when stderr is a terminal (set inside the test: pytest sets its own before)."""
    terminal = Terminal()
    with contextlib.redirect_stderr(terminal):
        run()
    return bool(BAR.search(terminal.getvalue()))


def _compress(model, batches, save_dir, config):
    return AutoCompression(model, batches, save_dir=save_dir, config=config, eval_dataloader=batches).compress()


def test_forced_progress_shows_calibration_and_stage_bars(tiny_cnn, tiny_batches, tmp_path, capsys):
    config = {"Global": {"progress": True, "cache_dir": str(tmp_path / "cache")}, "QuantPost": {"batch_nums": 2}}
    _compress(tiny_cnn, tiny_batches, tmp_path / "out", config)
    err = capsys.readouterr().err
    assert re.search(r"calibration:\s+0%\|.*\| 0/2 ", err), err
    assert re.search(r"QuantPost: 100%\|.*\| 1/1 ", err), err
    assert re.search(r"evaluation: .*\| 3/3 ", err) and "latency" in err


@pytest.mark.parametrize("setting, shown", [(False, False), ("auto", True), (True, True)])
def test_global_progress_decides_the_bars_on_a_terminal(tiny_cnn, tiny_batches, tmp_path, setting, shown):
    config = {"Global": {"progress": setting}, "QuantPost": {}}
    assert _bars_on_a_terminal(lambda: _compress(tiny_cnn, tiny_batches, tmp_path / "out", config)) is shown


def test_auto_shows_no_bar_when_stderr_is_not_a_terminal(tiny_cnn, tiny_batches, tmp_path, capsys):
    _compress(tiny_cnn, tiny_batches, tmp_path / "out", {"QuantPost": {}})
    assert not BAR.search(capsys.readouterr().err)


def test_training_bar_shows_loss_lr_and_step_time(tiny_cnn, tiny_batches, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(progress, "MIN_INTERVAL", 0.0)  # every step redrawn: a 3-step run is faster than 0.1 s
    config = {"Global": {"progress": True}, "Distillation": {}, "TrainConfig": {"train_iter": 3, "eval_iter": 3}}
    _compress(tiny_cnn, tiny_batches, tmp_path / "out", config)
    err = capsys.readouterr().err
    assert re.search(r"training: .*\| 3/3 \[.*loss=[\d.e+-]+, lr=[\d.e+-]+, step=\d+ms\]", err), err


def test_stage_logs_one_info_line_with_its_best_metric(tiny_cnn, tiny_batches, tmp_path, caplog):
    with caplog.at_level("INFO", logger="autocompress.progress"):
        _compress(tiny_cnn, tiny_batches, tmp_path / "out", {"QuantPost": {}})
    lines = [r.getMessage() for r in caplog.records if r.name == "autocompress.progress"]
    assert len(lines) == 1 and re.fullmatch(
        r"stage QuantPost done in [\d.]+ s: best EMD [\d.e+-]+ over \d+ "
        r"evaluations?",
        lines[0],
    ), lines


def test_library_prints_nothing_without_logging_configured(tiny_cnn, tmp_path):
    # batch_nums above the 3 batches given makes the calibration log a warning, which must not reach stderr
    script = textwrap.dedent(f"""
        import numpy as np
        from autocompress import AutoCompression
        rng = np.random.default_rng(0)
        batches = [{{"x": rng.standard_normal((2, 3, 16, 16)).astype(np.float32)}} for _ in range(3)]
        config = {{"Global": {{"cache_dir": {str(tmp_path / "cache")!r}}}, "QuantPost": {{"batch_nums": 5}}}}
        AutoCompression({str(tiny_cnn)!r}, batches, save_dir={str(tmp_path / "out")!r}, config=config,
                        eval_dataloader=batches).compress()
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and (tmp_path / "out" / "model.onnx").is_file(), done.stderr
    assert (done.stdout, done.stderr) == ("", "")


@pytest.mark.parametrize("quiet", [False, True])
def test_cli_quiet_shows_no_bar(tiny_cnn, tmp_path, quiet):
    data = tmp_path / "data"
    data.mkdir()
    for i in range(2):
        np.save(data / f"{i}.npy", np.random.default_rng(i).standard_normal((3, 16, 16)).astype(np.float32))
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(
        yaml.safe_dump(
            {
                "Global": {
                    "model_dir": str(tiny_cnn),
                    "save_dir": str(tmp_path / "out"),
                    "progress": True,
                    "train_data": {"path": str(data), "format": "npy"},
                },
                "QuantPost": {},
            }
        )
    )
    argv = ["--log-level", "ERROR", *(["--quiet"] if quiet else []), "compress", "--config", str(cfg)]
    assert _bars_on_a_terminal(lambda: main(argv)) is not quiet


def test_search_bar_shows_the_best_score_so_far(capsys):
    scores = {"avg": 0.5, "abs_max": 0.25, "mse": 0.75}

    def evaluate(params):
        return scores[params["algo"]], 1.0 - scores[params["algo"]], {}

    space = HyperParameterOptimization(ptq_algo=list(scores), max_quant_count=3)
    with progress.using(True):
        trials = search_ptq(space, evaluate)
    best = min(t.score for t in trials)
    err = capsys.readouterr().err
    assert re.search(rf"PTQ search: 100%\|.*\| 3/3 .*best_score={best:.4g}, metric={1 - best:.4g}\]", err), err


def test_latency_probe_is_one_bar_that_counts_the_runs(tiny_cnn, tiny_batches, capsys):
    with progress.using(True):
        measure_latency(str(tiny_cnn), {"x": tiny_batches[0]["x"][:1]}, runs=7, warmup=1)
    err = capsys.readouterr().err
    assert err.count("latency: ") >= 1 and re.search(r"latency: 100%\|.*\| 7/7 ", err), err


def test_progress_setting_is_validated():
    with pytest.raises(ConfigError, match="progress"):
        AutoCompression("model.onnx", [], config={"Global": {"progress": "sometimes"}}, eval_callback=len)
