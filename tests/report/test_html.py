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
    "baseline": {
        "metric": 0.7097467718887187,
        "metric_name": "IoU",
        "latency_ms": 50.123456789012345,
        "size_mb": 4.712345678901234,
        "params": 1_171_628,
        "macs": 2_300_000_000,
        "extra_metrics": {"dice": 0.8123456789012345},
        "latency_ms_by_threads": {"1": 50.98765432109876, "16": 9.876543210987654},
    },
    "compressed": {
        "metric": 0.7012345678901234,
        "metric_name": "IoU",
        "latency_ms": 25.012345678901234,
        "size_mb": 0.3123456789012345,
        "params": 1_171_628,
        "macs": 2_300_000_000,
        "extra_metrics": {"dice": 0.8012345678901234},
        "latency_ms_by_threads": {"1": 24.98765432109876, "16": 6.123456789012345},
    },
    "speedup": 2.0039487654321,
    "speedup_by_threads": {"1": 2.0405, "16": 1.6129},
    "size_ratio": 15.0871,
    "metric_higher_is_better": True,
    "strategy": ["QuantPost+HPO"],
    "plan": [{"plan": ["QuantPost: int8"], "reasons": ["model type: cnn"]}],
    "timeline": [
        {
            "stage": "QuantPost+HPO",
            "seconds": 12.512345678901234,
            "info": {
                "trials": [
                    {
                        "params": {"algo": a, "hist_percent": 0.9999912345678901, "batch_num": 4},
                        "score": s,
                        "metric": 0.7012345678901234,
                        "seconds": 1.0123456789012345,
                    }
                    for a, s in (("KL", 0.0123456789012345), ("hist", 0.0234567890123456), ("avg", 0.0051234567890123))
                ],
                "sensitivity": {"conv_1": 0.3123456789012345, "conv_2": 0.1},
                "warnings": ["the int8 model is slower than the float input"],
                "ops": [
                    {"name": "conv_1", "op_type": "Conv", "action": "float", "reason": "skip_tensor_list"},
                    {"name": "conv_2", "op_type": "Conv", "action": "int8"},
                ],
            },
        }
    ],
    "candidates": [
        {
            "metric": 0.7012345678901234 - i / 100,
            "latency_ms": 25.012345678901234 + i,
            "params": {"algo": "KL", "batch_num": i},
        }
        for i in range(3)
    ],
    "elapsed_s": 14.012345678901234,
    "hardware": {"deploy_hardware": "cpu", "latency_threads": 1, "processor": "x86_64", "onnxruntime": "1.x"},
}

#: A number printed as Python prints a float: ten or more digits after the point.
RAW_FLOAT = re.compile(r"\d\.\d{10,}")


def _page_text(page: str) -> str:
    """The page without its embedded images (base64 holds digit runs that are not numbers)."""
    return re.sub(r'src="data:[^"]*"', "", page)


def test_html_embeds_every_figure_as_data():
    html = render_html(REPORT)
    figures = re.findall(r'data-figure="([a-z]+)" src="data:image/png;base64,', html)
    assert set(figures) == {"timeline", "pareto", "trials", "sensitivity"}
    assert "http://" not in html and "https://" not in html  # readable offline
    assert "QuantPost+HPO" in html and "0.7097" in html


def test_the_page_shows_formatted_numbers_never_raw_floats():
    text = _page_text(render_html(REPORT))
    assert RAW_FLOAT.findall(text) == []
    assert "0.7097" in text and "0.7012" in text and "-0.008512 (-1.20 %)" in text  # 4 significant digits, delta
    assert "50.99 ms" in text and "2.04x faster" in text and "6.12 ms" in text and "1.61x faster" in text
    assert "16 threads (all cores)" in text and "312.3 KB" in text and "15.09x smaller" in text
    assert "dice" in text and "1.172 M" in text


def test_warnings_come_first_and_each_op_has_its_row():
    text = _page_text(render_html(REPORT))
    assert text.index("the int8 model is slower") < text.index("Before and after")
    rows = re.findall(r"<tr><td>QuantPost\+HPO</td>(.*?)</tr>", text)
    cells = [re.findall(r"<td[^>]*>(.*?)</td>", row) for row in rows]
    assert cells == [["conv_1", "Conv", "float", "", "skip_tensor_list"], ["conv_2", "Conv", "int8", "", ""]]


def test_report_command_prints_the_summary_table(tmp_path, capsys):
    (tmp_path / "report.json").write_text(json.dumps(REPORT))
    assert main(["report", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "WARNING QuantPost+HPO: the int8 model is slower" in out
    table = {line.split("  ")[0]: line for line in out.splitlines()}
    assert "24.99 ms" in table["latency, 1 thread"] and "2.04x faster" in table["latency, 1 thread"]
    assert "0.7097" in table["IoU"] and "1 float, 1 int8" in out
    assert RAW_FLOAT.findall(out) == []


def test_report_command_regenerates_html(tmp_path):
    (tmp_path / "report.json").write_text(json.dumps(REPORT))
    assert main(["report", str(tmp_path)]) == 0
    assert (tmp_path / "report.html").stat().st_size > 10_000


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium package is not installed")
def test_chromium_renders_the_plots(tmp_path):
    page = tmp_path / "report.html"
    page.write_text(render_html(REPORT))
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}",
    ]
    dom = subprocess.run([CHROMIUM, *flags, "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=60)
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert dom.stdout.count("data:image/png;base64,") == 4
    assert RAW_FLOAT.findall(_page_text(dom.stdout)) == []
    shot = tmp_path / "shot.png"
    subprocess.run(
        [CHROMIUM, *flags, f"--screenshot={shot}", "--window-size=1000,3000", page.as_uri()],
        capture_output=True,
        timeout=60,
    )
    assert shot.is_file() and shot.stat().st_size > 20_000
