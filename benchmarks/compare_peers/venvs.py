"""One virtual environment per peer toolkit, created with `python3 -m venv` + pip and kept between runs.

None of the peers becomes a dependency of autocompress: they live in benchmarks/compare_peers/.venvs/
(git-ignored). A venv is reused when its marker file lists exactly the install steps asked for now.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

VENV_ROOT = Path(__file__).resolve().parent / ".venvs"
MARKER = "compare_peers_requirements.txt"

# pip install steps per venv, in order. Beyond each peer's own wheel, found by running it in a fresh venv:
# neural-compressor 2.6 and paddleslim 2.6.0 import six/requests/decorator without declaring them; INC 2.6
# calls onnx.mapping, gone since onnx 1.19; paddleslim pins opencv-python 4.6, built against the numpy 1 ABI;
# ACT's ONNX export needs paddle2onnx 1.x. ACT's auto mode runs a PTQ search that needs smac==1.4.0, whose
# pyrfr builds from source with SWIG: the swig wheel paddleslim installs, found on PATH only without build
# isolation (hence the second step).
REQUIREMENTS: dict[str, tuple[tuple[str, ...], ...]] = {
    "nncf": (("nncf", "onnx", "onnxruntime"),),
    "inc": (("neural-compressor<3", "six", "onnx<1.19", "onnxruntime"),),
    "paddleslim": (
        (
            "paddleslim==2.6.0",
            "paddlepaddle==3.3.1",
            "six",
            "requests",
            "decorator",
            "numpy<2",
            "paddle2onnx<2",
            "wheel",
        ),
        ("--no-build-isolation", "smac==1.4.0"),
    ),
}


class VenvError(RuntimeError):
    """A peer's venv could not be created or installed; the message is what the table reports."""


@dataclass(frozen=True)
class Venv:
    name: str
    path: Path

    @property
    def python(self) -> Path:
        return self.path / "bin" / "python"


def marker_text(name: str) -> str:
    return "".join(" ".join(step) + "\n" for step in REQUIREMENTS[name])


def ensure_venv(name: str, root: Path = VENV_ROOT, base_python: str = "python3") -> Venv:
    """The venv of peer `name`, created or completed as needed."""
    venv = Venv(name, root / name)
    marker = venv.path / MARKER
    if venv.python.exists() and marker.is_file() and marker.read_text(encoding="utf-8") == marker_text(name):
        return venv
    root.mkdir(parents=True, exist_ok=True)
    if not venv.python.exists():
        _run([base_python, "-m", "venv", str(venv.path)], f"python3 -m venv {name}")
    env = {**os.environ, "PATH": os.pathsep.join([str(venv.python.parent), os.environ.get("PATH", "")])}
    for step in REQUIREMENTS[name]:
        _run(
            [str(venv.python), "-m", "pip", "install", "--disable-pip-version-check", "-q", *step],
            f"pip install {' '.join(step)}",
            env,
        )
    marker.write_text(marker_text(name), encoding="utf-8")
    return venv


def _run(argv: list[str], what: str, env: dict[str, str] | None = None) -> None:
    done = subprocess.run(argv, capture_output=True, text=True, env=env)
    if done.returncode:
        lines = [line for line in done.stderr.splitlines() if line.strip() and "is ignored" not in line]
        raise VenvError(f"{what} failed: {lines[-1] if lines else f'exit {done.returncode}'}")
