"""Long fuzz run of the config loader and the ONNX loader: the CI harnesses of tests/fuzz with many more cases.

Prints, per harness, the cases run, successes, documented errors (AutoCompressError with a message) and crashes
(any other exception, a case past its time limit, or a process killed by a signal), with the first crashes and
their inputs. Batches run in child processes, two at a time, so that a crash inside native code (onnx's C++
shape inference, protobuf) is counted and reported instead of ending the run. Exit status 1 if any case crashed.

    PYTHONPATH=src:. .venv/bin/python benchmarks/fuzz_long.py [--configs 10000] [--models 5000] [--seed 0] [--jobs 2]
"""

from __future__ import annotations

import argparse
import json
import logging
import pickle
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st

from tests.fuzz.config_cases import api_arguments, load_and_round_trip, load_yaml_file, yaml_files
from tests.fuzz.harness import Tally
from tests.fuzz.onnx_cases import Sandbox, corrupted_bytes, input_shapes, load_and_prepare, mutated_models

BATCH = 1000
#: harness name -> (kind of count it takes, per-case time limit in seconds)
HARNESSES = {
    "config YAML files": ("configs", 20),
    "config API arguments": ("configs", 20),
    "ONNX corrupted bytes": ("models", 60),
    "ONNX mutated protos": ("models", 60),
}


def harness(name: str, work: Path):
    """(strategy, run_one) of a harness; sandbox files live under `work`."""
    if name == "config YAML files":
        return yaml_files, lambda c: load_yaml_file(work / "config.yaml", c)
    if name == "config API arguments":
        return api_arguments(), lambda a: load_and_round_trip(**a)
    box = Sandbox.create(work / "sandbox")
    cases = corrupted_bytes() if name == "ONNX corrupted bytes" else mutated_models(box)
    return st.tuples(cases, input_shapes), lambda c: load_and_prepare(box, *c)


def run_batch(name: str, examples: int, rng_seed: int, out: Path) -> None:
    """Child process: run one batch, keeping the counts and the current case on disk as it goes."""
    logging.disable(logging.WARNING)  # the simplifier's warnings on broken models would drown the output
    out.mkdir(parents=True, exist_ok=True)
    timeout_s = HARNESSES[name][1]
    tally = Tally()
    with tempfile.TemporaryDirectory() as tmp:
        strategy, run_one = harness(name, Path(tmp))

        @seed(rng_seed)
        @settings(
            max_examples=examples,
            deadline=None,
            database=None,
            phases=[Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        @given(case=strategy)
        def body(case):
            (out / "case.txt").write_text(repr(case)[:2000])
            (out / "case.pickle").write_bytes(pickle.dumps(case))
            tally.record(lambda: run_one(case), lambda: repr(case), timeout_s)
            (out / "tally.json").write_text(json.dumps({"counts": tally.counts, "crashes": tally.crashes}))

        body()


def launch(name: str, examples: int, rng_seed: int, out: Path) -> dict:
    out.mkdir(parents=True)
    cmd = [
        sys.executable,
        __file__,
        "--batch-of",
        name,
        "--examples",
        str(examples),
        "--seed",
        str(rng_seed),
        "--out",
        str(out),
    ]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=examples * HARNESSES[name][1])
        status, stderr = proc.returncode, proc.stderr[-300:]
    except subprocess.TimeoutExpired:
        status, stderr = "timed out", ""
    tally_file, case_file = out / "tally.json", out / "case.txt"
    result = json.loads(tally_file.read_text()) if tally_file.exists() else {"counts": {}, "crashes": []}
    if status != 0:  # killed by a signal (negative status) or stuck in native code: the case on disk did it
        case = case_file.read_text()[:300] if case_file.exists() else "?"
        result["counts"]["crash"] = result["counts"].get("crash", 0) + 1
        result["crashes"].append((f"batch process ended with {status}: {stderr}", case))
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", type=int, default=10000, help="cases per config harness (YAML, API arguments)")
    parser.add_argument("--models", type=int, default=5000, help="cases per model harness (bytes, protos)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--jobs", type=int, default=2, help="batches run at the same time")
    parser.add_argument("--batch-of", help=argparse.SUPPRESS)
    parser.add_argument("--examples", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.batch_of:
        run_batch(args.batch_of, args.examples, args.seed, args.out)
        return 0

    crashes = 0
    with tempfile.TemporaryDirectory() as tmp, ThreadPoolExecutor(args.jobs) as pool:
        for name, (kind, _) in HARNESSES.items():
            total = getattr(args, kind)
            sizes = [min(BATCH, total - start) for start in range(0, total, BATCH)]
            started = time.perf_counter()
            futures = [
                pool.submit(launch, name, size, args.seed * 100_003 + i, Path(tmp) / f"{name}-{i}".replace(" ", "_"))
                for i, size in enumerate(sizes)
            ]
            tally = Tally()
            for future in futures:
                result = future.result()
                tally.counts.update(result["counts"])
                tally.crashes.extend(tuple(c) for c in result["crashes"][: tally.keep - len(tally.crashes)])
            crashes += tally.counts["crash"]
            print(tally.summary(name) + f" ({time.perf_counter() - started:.0f} s)", flush=True)
    print(f"total crashes: {crashes}")
    return 1 if crashes else 0


if __name__ == "__main__":
    sys.exit(main())
