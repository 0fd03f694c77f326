"""`python -m benchmarks.zoo [--models a,b] [--tools auto,...] [--keep-rows] [--out BENCHMARKS.md]`: compress every
zoo model with every tool, score and time the results, and write the `## Zoo` section of the output file."""

from __future__ import annotations

import argparse
import logging
import shlex
import shutil
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from benchmarks.common import ROOT, MachineInfo, source_revision, write_section
from benchmarks.zoo.runner import DEFAULT_TOOL_TIMEOUT_S, Row, compress_model, measure_model
from benchmarks.zoo.spec import all_models
from benchmarks.zoo.table import HEADING, new_section, read_section, render, run_line
from benchmarks.zoo.tools import TOOLS, Sizes, load_model

log = logging.getLogger("benchmarks.zoo")


def tool_list(text: str) -> list[str]:
    """The tools of `--tools`, checked against the known ones."""
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in TOOLS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"unknown tools {unknown or [text]}; known: {', '.join(TOOLS)}")
    return names


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.zoo", description=__doc__.splitlines()[0])
    parser.add_argument("--models", help="comma-separated model names (default: every zoo model)")
    parser.add_argument(
        "--tools",
        type=tool_list,
        help=f"comma-separated tools among {', '.join(TOOLS)} (default: all; fp32 always runs, the others compare to it)",
    )
    parser.add_argument(
        "--keep-rows",
        action="store_true",
        help="keep the table's rows of other models and tools, replacing only this run's (model, tool) rows",
    )
    parser.add_argument("--out", type=Path, default=ROOT / "BENCHMARKS.md")
    parser.add_argument("--time-budget", type=float, help="Global.time_budget in seconds for auto and QuantPost")
    parser.add_argument(
        "--tool-timeout",
        type=float,
        default=DEFAULT_TOOL_TIMEOUT_S,
        help="seconds after which a tool's process is stopped (its outcome: timeout)",
    )
    parser.add_argument("--calibration", type=int, help="calibration feeds (default: each model's own)")
    parser.add_argument("--evaluation", type=int, help="evaluation samples (default: each model's own)")
    parser.add_argument("--latency-seconds", type=float, default=8.0, help="rough timing budget per thread setting")
    parser.add_argument("--work", type=Path, help="keep every tool's files here (default: a temporary folder)")
    return parser.parse_args(argv)


def run(args: argparse.Namespace) -> list[list[Row]]:
    """Every requested model: compress with each tool in fresh processes, then score and time in this one."""
    names = args.models.split(",") if args.models else sorted(all_models())
    work = args.work or Path(tempfile.mkdtemp(prefix="zoo_"))
    by_model = []
    try:
        for name in names:
            model = load_model(name.strip())
            sizes = Sizes.of(model, args.calibration, args.evaluation)
            results = compress_model(model, work / model.name, sizes, args.tool_timeout, args.time_budget, args.tools)
            by_model.append(measure_model(model, results, sizes, args.latency_seconds))
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    return by_model


def main(argv: Sequence[str] | None = None) -> None:
    from autocompress.config.global_section import GlobalConfig

    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    command = "python -m benchmarks.zoo " + shlex.join(argv if argv is not None else sys.argv[1:])
    by_model = run(args)
    tolerance = GlobalConfig.model_fields["auto_max_relative_drop"].default
    budget = f"Global.time_budget {args.time_budget:.0f} s. " if args.time_budget else ""
    run_text = run_line(
        command.strip(), source_revision(), MachineInfo.current(), f"{budget}Tool timeout {args.tool_timeout:.0f} s."
    )
    section = new_section(by_model, run_text)
    if args.keep_rows and args.out.is_file():
        section = read_section(args.out.read_text(encoding="utf-8")).merged(section)
    write_section(args.out, HEADING, render(section, tolerance))
    log.info("wrote %s to %s", HEADING, args.out)


if __name__ == "__main__":
    main()
