"""The side-by-side benchmark's own parts, without any peer venv: data export, metric, a worker run, the table.

Only the ONNX Runtime worker runs here, in this venv; venv creation is patched to fail so that no test
installs a peer.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import onnx
import pytest

from benchmarks.common import MachineInfo, write_section
from benchmarks.compare_peers import venvs
from benchmarks.compare_peers.driver import HEADING, CaseTable, Row, render, shown_argv
from benchmarks.compare_peers.peers import PEERS, WORKERS, Outcome, last_error_line, run_peer
from benchmarks.compare_peers.workers.peer_io import PeerData, evaluate, load_case, ort_predictor, save_case
from benchmarks.ptq_cases import DataSizes
from examples.common.evaluation import make_top1_eval
from examples.ocr_det.metric import make_iou_eval


@pytest.fixture(autouse=True)
def no_venv_creation(monkeypatch):
    def refuse(argv, what, env=None):
        raise AssertionError(f"a smoke test tried to run {what}")

    monkeypatch.setattr(venvs, "_run", refuse)


@pytest.fixture
def tiny_data(tiny_cnn, tmp_path) -> PeerData:
    rng = np.random.default_rng(0)
    inputs = rng.standard_normal((10, 3, 16, 16)).astype(np.float32)
    labels = rng.integers(0, 10, 10)
    return PeerData(
        name="tiny",
        fp32_path=tiny_cnn,
        input_name="x",
        metric="top1",
        calibration=rng.standard_normal((7, 3, 16, 16)).astype(np.float32),
        calibration_batch=3,
        eval_inputs=inputs,
        eval_targets=labels,
        eval_batch=4,
    )


def test_exported_case_reads_back_identically(tiny_data, tmp_path):
    loaded = load_case(save_case(tmp_path / "case", tiny_data))
    assert loaded.fp32_path == tiny_data.fp32_path and loaded.paddle_model_dir is None
    assert np.array_equal(loaded.calibration, tiny_data.calibration)
    assert [len(f["x"]) for f in loaded.calibration_feeds()] == [3, 3, 1]  # batches as the tools get them
    assert [len(t) for _, t in loaded.eval_items()] == [4, 4, 2] and len(loaded.eval_items(batch=1)) == 10


def test_worker_metric_is_the_examples_metric(tiny_data):
    predictor = ort_predictor(tiny_data.fp32_path)
    ours, per_item = evaluate(predictor, "top1", tiny_data.eval_items())
    assert ours == pytest.approx(make_top1_eval(tiny_data.eval_inputs, tiny_data.eval_targets, 4)(predictor))
    assert len(per_item) == 3

    rng = np.random.default_rng(1)
    images = rng.random((3, 1, 8, 8)).astype(np.float32)
    masks = (rng.random((3, 8, 8)) > 0.5).astype(np.uint8)
    identity = lambda feed: [feed["x"]]  # noqa: E731 - the "model" outputs its input as the probability map
    items = [({"x": images[i : i + 1]}, masks[i : i + 1]) for i in range(3)]
    assert evaluate(identity, "iou", items)[0] == pytest.approx(make_iou_eval(images, masks, 1)(identity))


def test_ort_worker_runs_in_a_fresh_process_and_reports(tiny_data, tmp_path):
    case_dir = save_case(tmp_path / "case", tiny_data)
    outcome = run_peer(PEERS["ort"], case_dir, tmp_path / "ort", timeout=120, has_paddle_model=False)
    assert outcome.error is None, outcome.error
    assert {"QuantizeLinear", "DequantizeLinear"} <= {n.op_type for n in onnx.load(str(outcome.model)).graph.node}
    assert outcome.seconds > 0 and outcome.process_seconds > outcome.seconds
    assert 20 < outcome.peak_rss_mb < 2000 and "onnxruntime" in outcome.versions

    failed = run_peer(PEERS["ort"], tmp_path / "missing", tmp_path / "bad", timeout=120, has_paddle_model=False)
    assert failed.model is None and failed.error.startswith("exit 1: FileNotFoundError")
    no_paddle = run_peer(PEERS["act_ptq"], case_dir, tmp_path / "act", 120, has_paddle_model=False)
    assert no_paddle.error.startswith("no Paddle")


def test_cached_venv_is_reused_without_pip(tmp_path):
    python = tmp_path / "nncf" / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.touch()
    (tmp_path / "nncf" / venvs.MARKER).write_text(venvs.marker_text("nncf"))
    assert venvs.ensure_venv("nncf", root=tmp_path).python == python
    (tmp_path / "nncf" / venvs.MARKER).write_text("nncf==0.1\n")  # other requirements: pip would run
    with pytest.raises(AssertionError, match="pip install"):
        venvs.ensure_venv("nncf", root=tmp_path)


def test_table_shows_deltas_speedups_and_failures(tmp_path):
    fp32 = Row("fp32", None, tmp_path / "a.onnx", metric=0.9, latency_ms={1: 2.0, 2: 1.2})
    ok = Row(
        "NNCF quantize",
        Outcome(
            PEERS["nncf"],
            seconds=3.25,
            process_seconds=9.6,
            peak_rss_mb=512.4,
            versions={"nncf": "3.4.0"},
            notes="defaults",
        ),
        tmp_path / "b.onnx",
        metric=0.85,
        latency_ms={1: 1.0, 2: 0.8},
    )
    failed = Row("INC", Outcome(PEERS["inc"], peak_rss_mb=300.0, error="exit 1: ImportError: x"), None)
    body = render(
        [CaseTable("tiny", "accuracy", [fp32, ok, failed])],
        MachineInfo.current(),
        "cmd",
        ("1 / 1 / 1", "2 / 2 / 2"),
        DataSizes(),
        5.0,
        "abc",
    )
    assert (
        "| tiny | NNCF quantize | 0.8500 | -0.0500 | 1.00 | 2.00x | 0.80 | 1.50x | 3.2 (10) | 512 | defaults |" in body
    )
    assert "| tiny | INC | - |  | - | - | - | - | - | 300 | no model: exit 1: ImportError: x |" in body
    assert "Versions: nncf venv: nncf 3.4.0." in body and "at start 1 / 1 / 1" in body

    out = tmp_path / "BENCHMARKS.md"
    out.write_text("# Benchmarks\n\n## Someone else's section\n\nkeep me\n")
    write_section(out, HEADING, body)
    text = out.read_text()
    assert "keep me" in text and text.index("## Someone else's") < text.index(HEADING)


def test_last_error_line_prefers_the_exception(tmp_path):
    log = tmp_path / "w.log"
    log.write_text("Traceback (most recent call last):\n  File x\nValueError: bad shape\nshutting down\n")
    assert last_error_line(log) == "ValueError: bad shape"
    log.write_text("progress 1\nno model within the trial budget\n")
    assert last_error_line(log) == "no model within the trial budget"
    log.write_text("[ERROR] scale must be >= 0\nFatalError: `Process abort signal` is detected\n")
    assert last_error_line(log) == "[ERROR] scale must be >= 0"


def test_a_worker_that_dies_after_recording_keeps_its_notes(tiny_data, tmp_path):
    """ACT's worker records its choice before paddle2onnx, which may abort the process."""
    script = tmp_path / "dies.py"
    script.write_text(
        f"import os, sys\nsys.path.insert(0, {str(WORKERS)!r})\nfrom peer_io import write_result\n"
        "write_result(__import__('pathlib').Path(sys.argv[2]), None, 1.5, {}, 'QAT chosen')\nos.abort()\n"
    )
    peer = dataclasses.replace(PEERS["ort"], script=str(script))
    outcome = run_peer(peer, save_case(tmp_path / "case", tiny_data), tmp_path / "out", 60, has_paddle_model=False)
    assert outcome.model is None and outcome.notes == "QAT chosen" and outcome.seconds == 1.5
    assert outcome.error.startswith("exit -6")


def test_command_line_shown_without_the_workdir():
    assert shown_argv(["--models", "ocr_cls", "--workdir", "/tmp/x", "--quick", "--workdir=/y"]) == [
        "--models",
        "ocr_cls",
        "--quick",
    ]
