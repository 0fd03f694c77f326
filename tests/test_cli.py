import json
import re

import numpy as np
import onnx
import pytest
import yaml

from autocompress.cli import main


def _npy_folder(path, n=4):
    path.mkdir()
    rng = np.random.default_rng(0)
    for i in range(n):
        np.save(path / f"{i:03d}.npy", rng.standard_normal((3, 16, 16)).astype(np.float32))
    return path


def test_compress_end_to_end_from_yaml(tiny_cnn, tmp_path, capsys):
    data = _npy_folder(tmp_path / "data")
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(
        yaml.safe_dump(
            {
                "Global": {
                    "model_dir": str(tiny_cnn),
                    "save_dir": str(tmp_path / "out"),
                    "train_data": {"path": str(data), "format": "npy", "batch_size": 2},
                }
            }
        )
    )
    assert main(["compress", "--config", str(cfg)]) == 0
    assert (tmp_path / "out" / "model.onnx").is_file()
    assert main(["report", str(tmp_path / "out")]) == 0
    assert "baseline" in capsys.readouterr().out


def test_bad_config_exits_2_with_message(tmp_path, capsys):
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("QuantPost:\n  algoo: KL\n")
    assert main(["compress", "--config", str(cfg)]) == 2
    assert "QuantPost.algoo" in capsys.readouterr().err


def test_bench_prints_latency(tiny_cnn, capsys):
    assert main(["bench", "--model", str(tiny_cnn), "--runs", "5"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["median_ms"] > 0 and out["threads"] == 1


def test_eval_emd_of_a_model_to_itself_is_zero(tiny_cnn, tmp_path, capsys):
    data = _npy_folder(tmp_path / "data")
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump({"Global": {"eval_data": {"path": str(data), "format": "npy"}}}))
    assert main(["eval", "--model", str(tiny_cnn), "--reference", str(tiny_cnn), "--config", str(cfg)]) == 0
    assert json.loads(capsys.readouterr().out)["metric"] == 0.0


def test_missing_model_exits_2(tmp_path, capsys):
    assert main(["bench", "--model", str(tmp_path / "none.onnx")]) == 2
    assert "does not exist" in capsys.readouterr().err


def _exit_code(argv: list[str]) -> int:
    """main's status, including argparse's exit on a bad argument."""
    try:
        return main(argv)
    except SystemExit as exc:
        return exc.code


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    return err


@pytest.mark.parametrize(
    "args, message",
    [
        (["--runs", "0"], r"--runs: expected a positive integer \(1, 2, ...\), got '0'"),
        (["--threads", "-2"], r"--threads: expected a positive integer \(1, 2, ...\), got '-2'"),
        (["--shape", "x=1,3"], r"--shape x=1,3 does not fit input 'x' of shape \['\?', 3, 16, 16\]: give 4 dims"),
        (["--shape", "x=1,4,16,16"], r"does not fit input 'x' .*equal to the fixed ones"),
        (["--shape", "image=1,3,16,16"], r"--shape names \['image'\], which the model lacks; its inputs are \['x'\]"),
        (["--shape", "x=1,0,16,16"], r"expected NAME=D1,D2,... with positive integer dims"),
    ],
)
def test_bench_argument_errors_exit_2_with_one_line(tiny_cnn, capsys, args, message):
    assert _exit_code(["bench", "--model", str(tiny_cnn), *args]) == 2
    assert re.search(message, _one_line_error(capsys))


def test_bench_of_a_model_with_a_custom_op_exits_2_naming_the_op(tmp_path, capsys):
    h = onnx.helper
    graph = h.make_graph(
        [h.make_node("Foo", ["x"], ["y"], name="foo", domain="my.ops")],
        "g",
        [h.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 3])],
        [h.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 3])],
    )
    model = h.make_model(graph, opset_imports=[h.make_opsetid("", 13), h.make_opsetid("my.ops", 1)], ir_version=8)
    onnx.save(model, str(tmp_path / "custom.onnx"))
    assert main(["bench", "--model", str(tmp_path / "custom.onnx"), "--runs", "1"]) == 2
    assert "node 'foo' (op Foo, domain my.ops, input type tensor(float))" in _one_line_error(capsys)


def test_eval_of_models_with_different_inputs_exits_2(tiny_cnn, tmp_path, capsys):
    data = _npy_folder(tmp_path / "data")
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump({"Global": {"eval_data": {"path": str(data), "format": "npy"}}}))
    other = onnx.load(str(tiny_cnn))
    renamed = onnx.compose.add_prefix(
        other,
        "b_",
        rename_inputs=True,
        rename_outputs=False,
        rename_nodes=False,
        rename_edges=False,
        rename_initializers=False,
        rename_value_infos=False,
    )
    onnx.save(renamed, str(tmp_path / "renamed.onnx"))
    assert (
        main(["eval", "--model", str(tmp_path / "renamed.onnx"), "--reference", str(tiny_cnn), "--config", str(cfg)])
        == 2
    )
    err = _one_line_error(capsys)
    assert (
        "--model has inputs ['b_x: float32, rank 4']" in err and "--reference has inputs ['x: float32, rank 4']" in err
    )


@pytest.mark.parametrize(
    "text, message",
    [
        ('{"baseline": {"metric": 1.0, "metric_na', r"cannot be read as JSON \(Unterminated string"),
        ("[1, 2]", r"is a JSON array; expected an object with keys 'baseline' \(object\)"),
        ('{"baseline": {}, "compressed": {}, "speedup": 1.0}', r"lacks key 'strategy'"),
        (
            '{"baseline": {"metric": 1}, "compressed": {}, "speedup": 1.0, "strategy": []}',
            r"baseline lacks key 'metric_name'",
        ),
        ('{"baseline": [], "compressed": {}, "speedup": 1.0, "strategy": []}', r"has a JSON array for key 'baseline'"),
    ],
)
def test_report_of_a_damaged_report_json_exits_2(tmp_path, capsys, text, message):
    (tmp_path / "report.json").write_text(text)
    assert main(["report", str(tmp_path)]) == 2
    assert re.search(message, _one_line_error(capsys))
    assert not (tmp_path / "report.html").exists()
