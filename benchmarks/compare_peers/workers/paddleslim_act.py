"""PaddleSlim ACT on the Paddle inference model (Paddle 3 needs FLAGS_enable_pir_api=0, set by the driver).

    .venvs/paddleslim/bin/python paddleslim_act.py CASE_DIR OUT_DIR {quant_post|auto}

quant_post: a QuantPost section (ACT's defaults: hist, channel_wise_abs_max weights) saved in the ONNX
quantize/dequantize format paddle2onnx turns into QDQ. auto: config=None, ACT's own strategy choice (a 1-trial
PTQ search, then by its EMD loss PTQ or QAT with distillation). The eval_callback is the table's metric.
The result is a Paddle inference model; it is exported to ONNX the way ACT's own export_onnx does (paddle2onnx
1.x, deploy_backend onnxruntime: QDQ; paddle2onnx 2.x maps quantize_linear to float8 only), outside the timing.
"""

from __future__ import annotations

import sys

import paddle2onnx
from paddleslim.auto_compression import AutoCompression
from peer_io import Stopwatch, evaluate, package_versions, worker_args, write_result

MODEL_FILE, PARAMS_FILE = "inference.pdmodel", "inference.pdiparams"


def act_choice(compressor: AutoCompression) -> str:
    """What ACT ran: its strategies, and in auto mode what the 1-trial PTQ's EMD loss made it run next."""
    text = f"strategies {compressor._strategy}"
    if compressor._strategy == ["ptq_hpo"]:
        from paddleslim.auto_compression.auto_strategy import get_final_quant_config
        from paddleslim.quant import post_quant_hpo

        loss = post_quant_hpo.g_min_emd_loss
        follow = get_final_quant_config(loss, compressor.model_type)
        text += f", trial EMD loss {loss:.3g} -> " + ("kept" if follow is None else " + ".join(follow[0]))
    return text


def main(argv: list[str]) -> None:
    data, out_dir, extra = worker_args(argv)
    mode = extra[0] if extra else "quant_post"
    if data.paddle_model_dir is None:
        raise SystemExit(f"{data.name} has no Paddle inference model; ACT needs one")
    feeds = data.calibration_feeds()
    items = data.eval_items()

    def loader():
        yield from feeds

    def eval_callback(exe, program, feed_names, fetch_list) -> float:
        def predictor(feed):
            return exe.run(program, feed={feed_names[0]: feed[data.input_name]}, fetch_list=fetch_list)

        return evaluate(predictor, data.metric, items)[0]

    configs = {"quant_post": {"QuantPost": {"batch_nums": len(feeds), "onnx_format": True}}, "auto": None}
    if mode not in configs:
        raise SystemExit(f"unknown mode {mode!r}")
    save_dir = out_dir / "act"
    with Stopwatch() as watch:
        compressor = AutoCompression(
            model_dir=str(data.paddle_model_dir),
            model_filename=MODEL_FILE,
            params_filename=PARAMS_FILE,
            save_dir=str(save_dir),
            config=configs[mode],
            train_dataloader=loader,
            eval_callback=eval_callback,
            deploy_hardware=None,
        )
        compressor.compress()
    notes = f"{act_choice(compressor)}; ACT's own eval of its model {compressor.final_metric:.4f}"
    versions = package_versions("paddleslim", "paddlepaddle", "paddle2onnx")
    # paddle2onnx aborts the process on models it rejects: what ACT did is on record before the export.
    write_result(out_dir, None, watch.seconds, versions, notes)
    out = out_dir / "model.onnx"
    paddle2onnx.export(
        str(save_dir / MODEL_FILE),
        str(save_dir / PARAMS_FILE),
        str(out),
        opset_version=13,
        enable_onnx_checker=True,
        deploy_backend="onnxruntime",
    )
    write_result(out_dir, out, watch.seconds, versions, f"{notes}; paddle2onnx {paddle2onnx.__version__} to ONNX")


if __name__ == "__main__":
    main(sys.argv[1:])
