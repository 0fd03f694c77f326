"""Command line: `autocompress compress|eval|bench|report`. Errors print one clear message and exit with 2."""

from __future__ import annotations

import argparse
import json
import logging
import subprocess
import sys
from pathlib import Path
from typing import Any, NoReturn

import numpy as np

from autocompress import progress
from autocompress.errors import AutoCompressError, UsageError

log = logging.getLogger("autocompress")

EXIT_USAGE = 2


def _load_data(section, model, what):
    from autocompress.data.batches import input_specs  # noqa: PLC0415
    from autocompress.data.folder import FolderDataset  # noqa: PLC0415

    if section is None:
        return None
    specs = input_specs(model)
    if len(specs) != 1 and section.input_name is None:
        raise AutoCompressError(f"{what}: the model has inputs {[s.name for s in specs]}; set input_name")
    return FolderDataset(section, specs[0].name)


def launch_command(args) -> list[str]:
    """This `compress` command under torch.distributed.run (torchrun) with --nproc processes per node."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(args.nproc)]
    if args.nnodes == 1:
        cmd.append("--standalone")
    else:
        if not args.master_addr:
            raise AutoCompressError("--nnodes > 1 needs --master-addr: the address of the node with --node-rank 0")
        cmd += [
            "--nnodes",
            str(args.nnodes),
            "--node_rank",
            str(args.node_rank),
            "--master_addr",
            args.master_addr,
            "--master_port",
            str(args.master_port),
        ]
    cmd += [
        "-m",
        "autocompress.cli",
        "--log-level",
        args.log_level,
        *(["--quiet"] if args.quiet else []),
        "compress",
        "--config",
        args.config,
    ]
    if args.model:
        cmd += ["--model", args.model]
    if args.save_dir is not None:
        cmd += ["--save-dir", args.save_dir]
    return cmd


def cmd_compress(args) -> int:
    from autocompress.train import distributed  # noqa: PLC0415

    if (args.nproc > 1 or args.nnodes > 1) and not distributed.launched():
        cmd = launch_command(args)
        log.info("starting %d training processes per node: %s", args.nproc, " ".join(cmd))
        return subprocess.run(cmd, check=False).returncode

    from autocompress.api import AutoCompression  # noqa: PLC0415
    from autocompress.config.loader import load_config  # noqa: PLC0415
    from autocompress.graph.load import load_model  # noqa: PLC0415

    config = load_config(args.config)
    g = config.global_
    if args.model:
        g.model_dir, g.model_filename, g.params_filename = args.model, None, None
    if args.save_dir is not None:  # "" is refused by the save_dir check, not read as "not given"
        g.save_dir = args.save_dir
    if g.model_dir is None:
        raise AutoCompressError("no model: pass --model or set Global.model_dir in the config")
    if g.train_data is None:
        raise AutoCompressError("the CLI reads data from the config: set Global.train_data (and optionally eval_data)")
    model = load_model(g.model_dir, g.model_filename, g.params_filename)
    train = _load_data(g.train_data, model, "train_data")
    evald = _load_data(g.eval_data, model, "eval_data") or train
    ac = AutoCompression(
        g.model_dir,
        train,
        g.model_filename,
        g.params_filename,
        save_dir=g.save_dir,
        config=config,
        eval_dataloader=evald,
    )
    result = ac.compress()
    if not distributed.is_primary():
        return 0
    print(json.dumps({k: result.report[k] for k in ("baseline", "compressed", "speedup", "strategy")}, indent=2))
    print(f"saved to {result.save_dir}")
    return 0


def _parse_shape(text: str) -> tuple[str, list[int]]:
    name, equals, dims = text.partition("=")
    try:
        shape = [int(d) for d in dims.split(",")]
    except ValueError:
        shape = []
    if not (name and equals and shape) or min(shape) < 1:
        raise UsageError(f"--shape {text!r}: expected NAME=D1,D2,... with positive integer dims, e.g. x=1,3,224,224")
    return name, shape


def _bench_shape(spec, given: list[int] | None) -> list[int]:
    """The shape benchmarked for one input: --shape's, which must keep the input's rank and fixed dims (ONNX Runtime
    refuses others), else the model's with dynamic dims as 1."""
    if given is None:
        return [1 if d is None else d for d in spec.shape]
    if len(given) != len(spec.shape) or any(d is not None and d != g for d, g in zip(spec.shape, given)):
        dims = ["?" if d is None else d for d in spec.shape]
        raise UsageError(
            f"--shape {spec.name}={','.join(map(str, given))} does not fit input {spec.name!r} of shape {dims}: "
            f"give {len(dims)} dims, equal to the fixed ones ('?' may be any positive size)"
        )
    return given


def _bench_feed(model, shape_args: list[str] | None) -> dict[str, np.ndarray]:
    """Random inputs for `bench`, shaped by the model and --shape."""
    from autocompress.data.batches import input_specs  # noqa: PLC0415

    specs = input_specs(model)
    shapes = dict(_parse_shape(s) for s in shape_args or [])
    unknown = sorted(set(shapes) - {s.name for s in specs})
    if unknown:
        raise UsageError(f"--shape names {unknown}, which the model lacks; its inputs are {[s.name for s in specs]}")
    rng = np.random.default_rng(0)
    return {s.name: rng.standard_normal(_bench_shape(s, shapes.get(s.name))).astype(s.dtype) for s in specs}


def cmd_bench(args) -> int:
    from autocompress.graph.load import load_model  # noqa: PLC0415
    from autocompress.runtime.ort import measure_latency  # noqa: PLC0415

    model = load_model(args.model)
    feed = _bench_feed(model, args.shape)
    lat = measure_latency(model, feed, args.hardware, threads=args.threads, runs=args.runs)
    print(json.dumps(lat.to_dict(), indent=2))
    return 0


def cmd_eval(args) -> int:
    from autocompress.config.loader import load_config  # noqa: PLC0415
    from autocompress.data.batches import BatchAdapter, input_specs  # noqa: PLC0415
    from autocompress.evaluation import Evaluator  # noqa: PLC0415
    from autocompress.graph.load import load_model  # noqa: PLC0415
    from autocompress.runtime.ort import resolve_hardware  # noqa: PLC0415

    config = load_config(args.config)
    section = config.global_.eval_data or config.global_.train_data
    if section is None:
        raise AutoCompressError("set Global.eval_data in the config to evaluate")
    reference = load_model(args.reference)
    candidate = load_model(args.model)
    _check_comparable(candidate, reference)
    batches = BatchAdapter(_load_data(section, reference, "eval_data"), input_specs(reference), "eval_data")
    evaluator = Evaluator(reference, resolve_hardware(config.global_.deploy_hardware), eval_batches=batches)
    print(json.dumps({"metric_name": evaluator.name, "metric": evaluator(candidate)}, indent=2))
    return 0


def _signature(model) -> tuple[list[str], int]:
    """Input names with their types and ranks, and the output count: what `eval` needs two models to share."""
    from autocompress.data.batches import input_specs  # noqa: PLC0415

    inputs = sorted(f"{s.name}: {s.dtype.name}, rank {len(s.shape)}" for s in input_specs(model))
    return inputs, len(model.graph.output)


def _check_comparable(candidate, reference) -> None:
    (cand_in, cand_out), (ref_in, ref_out) = _signature(candidate), _signature(reference)
    if cand_in != ref_in or cand_out != ref_out:
        raise UsageError(
            f"--model has inputs {cand_in} and {cand_out} outputs, but --reference has inputs {ref_in} and {ref_out} "
            "outputs; eval compares two versions of one model, which must have the same inputs and number of outputs"
        )


_JSON_TYPES = {dict: "object", list: "array", str: "string", float: "number", int: "number", bool: "boolean"}
#: What `report` reads from report.json, with the JSON types compress writes (the optional keys checked when present).
_REPORT_FIELDS = {"baseline": dict, "compressed": dict, "speedup": float, "strategy": list}
_OPTIONAL_REPORT_FIELDS = {"elapsed_s": float, "hardware": dict, "timeline": list, "candidates": list, "plan": list}
_SUMMARY_FIELDS = {"metric": float, "metric_name": str, "latency_ms": float}
_STAGE_FIELDS = {"stage": str, "seconds": float}


def _json_type(value: Any) -> str:
    return _JSON_TYPES.get(type(value), "null")


def _is(value: Any, kind: type) -> bool:
    if kind is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, kind)


def _check_fields(value: Any, fields: dict[str, type], where: str, required: bool = True) -> None:
    """Refuse a report.json value that is not an object holding `fields` with their JSON types."""
    expected = ", ".join(f"{key!r} ({_JSON_TYPES[kind]})" for key, kind in fields.items())
    if not isinstance(value, dict):
        raise UsageError(f"{where} is a JSON {_json_type(value)}; expected an object with keys {expected}")
    for key, kind in fields.items():
        if (required or key in value) and not _is(value.get(key), kind):
            problem = "lacks key" if key not in value else f"has a JSON {_json_type(value[key])} for key"
            raise UsageError(f"{where} {problem} {key!r}; a report written by compress has {expected}")


def _read_report(path: Path) -> dict[str, Any]:
    """report.json as compress writes it; a damaged or foreign file is a UsageError naming what is wrong."""
    try:
        report = json.loads(path.read_bytes())
    except (OSError, ValueError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise UsageError(
            f"{str(path)!r} cannot be read as JSON ({exc}); report reads the report.json that compress wrote"
        ) from None
    _check_fields(report, _REPORT_FIELDS, str(path))
    _check_fields(report, _OPTIONAL_REPORT_FIELDS, str(path), required=False)
    for key in ("baseline", "compressed"):
        _check_fields(report[key], _SUMMARY_FIELDS, f"{str(path)}: {key}")
    for i, stage in enumerate(report.get("timeline", [])):
        _check_fields(stage, _STAGE_FIELDS, f"{str(path)}: timeline[{i}]")
    for key in ("strategy", "candidates", "plan"):
        kind = str if key == "strategy" else dict
        if not all(isinstance(item, kind) for item in report.get(key, [])):
            raise UsageError(f"{str(path)}: every item of {key!r} must be a JSON {_JSON_TYPES[kind]}")
    return report


def cmd_report(args) -> int:
    path = Path(args.save_dir) / "report.json"
    if not path.is_file():
        raise AutoCompressError(
            f"{str(path)!r} does not exist; is {args.save_dir!r} a save_dir written by autocompress?"
        )
    from autocompress.report.html import text_summary, write_html  # noqa: PLC0415

    report = _read_report(path)
    print(text_summary(report))
    print(f"\nwrote {write_html(report, Path(args.save_dir))}")
    return 0


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer (1, 2, ...), got {text!r}")
    return value


class _Parser(argparse.ArgumentParser):
    """argparse's parser with one-line usage errors, like every other error of the command line (exit status 2)."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"error: {message}; see '{self.prog} --help'\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="autocompress",
        description="Compress an exported ONNX (or Paddle) model: quantization, pruning, sparsity, distillation.",
    )
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    parser.add_argument("--quiet", action="store_true", help="no progress bars (whatever Global.progress says)")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser(
        "compress",
        help="run the strategies of a YAML config and write save_dir (model.onnx, config.yaml, report.json)",
        description="Compress the model named in --model or Global.model_dir with the config's strategies. "
        "Data comes from Global.train_data / Global.eval_data (a folder of images or .npy files); "
        "without an eval callback the metric is the EMD between original and compressed outputs.",
    )
    p.add_argument("--config", required=True, help="YAML config (strategy sections, TrainConfig, Global)")
    p.add_argument("--model", help="model file or folder (overrides Global.model_dir)")
    p.add_argument("--save-dir", help="output folder (overrides Global.save_dir); must not be inside the model folder")
    launch = p.add_argument_group(
        "data-parallel training",
        "train with several processes (torch.distributed, gloo on CPU, nccl on GPU); the "
        "batch size of the data is the global batch, split across all processes",
    )
    launch.add_argument("--nproc", type=_positive, default=1, help="training processes on this node (default 1)")
    launch.add_argument("--nnodes", type=_positive, default=1, help="number of machines (default 1)")
    launch.add_argument("--node-rank", type=int, default=0, help="this machine's index, 0..nnodes-1")
    launch.add_argument("--master-addr", help="address of the machine with --node-rank 0 (needed when --nnodes > 1)")
    launch.add_argument("--master-port", type=int, default=29500, help="free TCP port on that machine (default 29500)")
    p.set_defaults(func=cmd_compress)

    p = sub.add_parser("eval", help="EMD of a model's outputs to a reference model on the config's eval data")
    p.add_argument("--model", required=True, help="candidate model")
    p.add_argument("--reference", required=True, help="reference (original) model")
    p.add_argument("--config", required=True, help="YAML config with Global.eval_data")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("bench", help="median/p90 latency of a model with ONNX Runtime on this machine")
    p.add_argument("--model", required=True)
    p.add_argument("--shape", action="append", help="NAME=D1,D2,... for inputs with dynamic dims (repeatable)")
    p.add_argument("--threads", type=_positive, default=1, help="intra-op threads of ONNX Runtime, >= 1 (default 1)")
    p.add_argument("--runs", type=_positive, default=50, help="timed runs, >= 1 (default 50)")
    p.add_argument("--hardware", default="cpu")
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser("report", help="regenerate report.html of a save_dir and print its summary")
    p.add_argument("save_dir")
    p.set_defaults(func=cmd_report)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=getattr(logging, args.log_level), format="%(levelname)s %(name)s: %(message)s")
    try:
        with progress.quiet(args.quiet):
            return args.func(args)
    except AutoCompressError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
