"""An earlier result in save_dir for the fault tests to keep; what the kill tests did, printed after the run."""

from __future__ import annotations

from pathlib import Path

import pytest

from autocompress.savedir import write_marker

_RECORDS = pytest.StashKey[list]()


@pytest.fixture
def previous(tmp_path) -> tuple[Path, dict[str, bytes]]:
    """A save_dir holding an earlier result (marked as autocompress's), and its bytes."""
    save_dir = tmp_path / "out"
    save_dir.mkdir()
    write_marker(save_dir)
    for name in ("model.onnx", "config.yaml", "report.json"):
        (save_dir / name).write_bytes(f"earlier {name}".encode())
    return save_dir, {p.name: p.read_bytes() for p in save_dir.iterdir()}


@pytest.fixture
def fault_records(request) -> list:
    """Append `(Run, wall seconds)` for the summary."""
    return request.config.stash.setdefault(_RECORDS, [])


def pytest_terminal_summary(terminalreporter, config) -> None:
    records = config.stash.get(_RECORDS, [])
    if not records:
        return
    terminalreporter.section("fault injection (SIGKILL)")
    for run, seconds in records:
        phases = ", ".join(f"{count} {phase}" for phase, count in sorted(run.phases.items()))
        checked = (
            f"{run.checkpoints_checked} checkpoints loaded after a kill"
            if run.scenario == "train"
            else f"{run.trials_checked} finished trials found again in the final reports"
        )
        terminalreporter.write_line(
            f"{run.scenario}: {run.kills} kills in {run.cycles} cycles ({run.starts} process starts), {checked}, "
            f"data lost 0, {seconds:.0f} s; kills landed: {phases}"
        )
