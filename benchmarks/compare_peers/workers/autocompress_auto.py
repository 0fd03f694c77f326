"""autocompress in auto mode: AutoCompression with config=None, as a user without a strategy would call it.

    PYTHONPATH=src:. .venv/bin/python benchmarks/compare_peers/workers/autocompress_auto.py CASE_DIR OUT_DIR

The calibration batches are the train_dataloader; the eval_callback is the table's metric on the table's
evaluation set (the same set NNCF's and INC's accuracy control see). Statistics cache in a fresh folder.
"""

from __future__ import annotations

import sys

from peer_io import Stopwatch, evaluate, package_versions, worker_args, write_result

from autocompress import AutoCompression


def main(argv: list[str]) -> None:
    data, out_dir, _ = worker_args(argv)
    items = data.eval_items()
    with Stopwatch() as watch:
        result = AutoCompression(
            model_dir=str(data.fp32_path.parent),
            model_filename=data.fp32_path.name,
            train_dataloader=data.calibration_feeds(),
            save_dir=str(out_dir / "save"),
            config={"Global": {"cache_dir": str(out_dir / "cache")}},
            eval_callback=lambda predictor: evaluate(predictor, data.metric, items)[0],
            deploy_hardware="cpu",
        ).compress()
    auto = next((s["info"] for s in result.report.get("timeline", []) if s["stage"].startswith("Auto")), {})
    notes = "plan: " + " -> ".join(auto.get("plan", result.strategy))
    if auto.get("reasons"):
        notes += "; " + "; ".join(auto["reasons"])
    write_result(out_dir, result.model_path, watch.seconds, package_versions("onnxruntime", "onnx"), notes)


if __name__ == "__main__":
    main(sys.argv[1:])
