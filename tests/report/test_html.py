"""report.html is self-contained and shows its figures (rendered in headless Chromium when it is installed)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import pytest

from autocompress.cli import main
from autocompress.report.html import render_html

REPORT = {
    "baseline": {"metric": 0.71, "metric_name": "IoU", "latency_ms": 50.0, "size_mb": 4.7, "params": 1_171_628, "macs": 2_300_000_000},
    "compressed": {"metric": 0.70, "metric_name": "IoU", "latency_ms": 25.0, "size_mb": 1.3, "params": 1_171_628, "macs": 2_300_000_000},
    "speedup": 2.0,
    "metric_higher_is_better": True,
    "strategy": ["QuantPost+HPO"],
    "plan": [{"plan": ["QuantPost: int8"], "reasons": ["model type: cnn"]}],
    "timeline": [{"stage": "QuantPost+HPO", "seconds": 12.5, "info": {
        "trials": [{"params": {"algo": a, "batch_num": 4}, "score": s, "metric": 0.7, "seconds": 1.0}
                   for a, s in (("KL", 0.01), ("hist", 0.02), ("avg", 0.005))],
        "sensitivity": {"conv_1": 0.3, "conv_2": 0.1},
    }}],
    "candidates": [{"metric": 0.70 - i / 100, "latency_ms": 25.0 + i} for i in range(3)],
    "elapsed_s": 14.0,
    "hardware": {"deploy_hardware": "cpu", "latency_threads": 1, "processor": "x86_64", "onnxruntime": "1.x"},
}


def test_html_embeds_every_figure_as_data():
    html = render_html(REPORT)
    figures = re.findall(r'data-figure="([a-z]+)" src="data:image/png;base64,', html)
    assert set(figures) == {"timeline", "pareto", "trials", "sensitivity"}
    assert "http://" not in html and "https://" not in html  # readable offline
    assert "QuantPost+HPO" in html and "0.71" in html


def test_report_command_regenerates_html(tmp_path):
    (tmp_path / "report.json").write_text(json.dumps(REPORT))
    assert main(["report", str(tmp_path)]) == 0
    assert (tmp_path / "report.html").stat().st_size > 10_000


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium package is not installed")
def test_chromium_renders_the_plots(tmp_path):
    page = tmp_path / "report.html"
    page.write_text(render_html(REPORT))
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={tmp_path / 'profile'}"]
    dom = subprocess.run([CHROMIUM, *flags, "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=60)
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert dom.stdout.count("data:image/png;base64,") == 4
    shot = tmp_path / "shot.png"
    subprocess.run([CHROMIUM, *flags, f"--screenshot={shot}", "--window-size=1000,3000", page.as_uri()],
                   capture_output=True, timeout=60)
    assert shot.is_file() and shot.stat().st_size > 20_000
