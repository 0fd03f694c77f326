import json

import numpy as np
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
    cfg.write_text(yaml.safe_dump({"Global": {"model_dir": str(tiny_cnn), "save_dir": str(tmp_path / "out"),
                                              "train_data": {"path": str(data), "format": "npy", "batch_size": 2}}}))
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
