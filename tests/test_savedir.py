"""autocompress replaces or removes only what it wrote: save_dir checks, the marker, the `.previous` / `.work`
siblings, save_dir beside the model (API and CLI), and resuming only the run a checkpoint belongs to."""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
import yaml
from onnx import numpy_helper

from autocompress import AutoCompression
from autocompress.cli import main
from autocompress.errors import ConfigError, SaveDirError
from autocompress.savedir import MARKER, atomic_dir, check_save_dir, is_marked, work_dir_for, write_marker
from autocompress.train.checkpoint import CHECKPOINT_NAME
from tests.conftest import TinyCNN

QUICK = {"QuantPost": {"batch_nums": 1, "algo": "abs_max"}}
TRAIN = {"Distillation": {}, "TrainConfig": {"train_iter": 6, "eval_iter": 2, "learning_rate": 0.01}}


def _compress(model: Path, batches, save_dir, config=None, **kwargs):
    return AutoCompression(
        model, batches, save_dir=save_dir, config=config or QUICK, eval_dataloader=batches, **kwargs
    ).compress()


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _untouchable(monkeypatch) -> None:
    """Any rename or removal fails the test: a refusal must come before anything is touched."""
    for module, name in ((os, "replace"), (os, "rename"), (shutil, "rmtree"), (os, "rmdir")):
        monkeypatch.setattr(module, name, lambda *a, _n=name, **k: pytest.fail(f"{_n} called with {a}"))


def test_a_foreign_folder_is_refused_and_left_as_it_was(tiny_cnn, tiny_batches, tmp_path):
    mine = tmp_path / "mywork"
    mine.mkdir()
    (mine / "thesis.tex").write_text("years of work")
    (mine / "data").mkdir()
    (mine / "data" / "x.npy").write_bytes(b"\x93NUMPY")
    before = _tree(tmp_path)
    with pytest.raises(
        ConfigError, match=r"save_dir '.*mywork' is a folder holding data, thesis.tex \(no .autocompress"
    ):
        _compress(tiny_cnn, tiny_batches, mine)
    assert _tree(tmp_path) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model", "mywork"]


def test_a_file_as_save_dir_is_refused_with_its_bytes_unchanged(tiny_cnn, tiny_batches, tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_bytes(b"keep me\n")
    with pytest.raises(ConfigError, match=r"save_dir '.*notes.txt' is a file of 8 bytes"):
        _compress(tiny_cnn, tiny_batches, notes)
    assert notes.read_bytes() == b"keep me\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model", "notes.txt"]


def test_the_null_device_is_refused_before_anything_is_touched(tiny_cnn, tiny_batches, monkeypatch):
    _untouchable(monkeypatch)
    with pytest.raises(ConfigError, match="'/dev/null' is a character device"):
        AutoCompression(tiny_cnn, tiny_batches, save_dir="/dev/null", eval_dataloader=tiny_batches)


@pytest.mark.parametrize(
    "where, words",
    [
        ("empty string", "is empty"),
        ("cwd", "is the current directory"),
        ("above cwd", "contains the current directory"),
        ("home", "is the home folder"),
        ("root", "is the filesystem root"),
    ],
)
def test_places_that_are_never_save_dir(tiny_cnn, tiny_batches, tmp_path, monkeypatch, where, words):
    """Each of these would be replaced as a whole; even when empty (as here) they are refused."""
    (tmp_path / "work" / "here").mkdir(parents=True)
    (tmp_path / "home").mkdir()
    monkeypatch.chdir(tmp_path / "work" / "here")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    _untouchable(monkeypatch)
    save_dir = {"empty string": "", "cwd": ".", "above cwd": "..", "home": str(tmp_path / "home"), "root": "/"}[where]
    with pytest.raises(ConfigError, match=words):
        AutoCompression(tiny_cnn, tiny_batches, save_dir=save_dir, eval_dataloader=tiny_batches)


def test_an_empty_save_dir_from_the_config_is_refused(tiny_cnn, tiny_batches):
    with pytest.raises(ConfigError, match="save_dir '' is empty"):
        AutoCompression(tiny_cnn, tiny_batches, config={"Global": {"save_dir": ""}}, eval_dataloader=tiny_batches)


def test_the_save_dir_argument_wins_over_the_config_even_when_it_is_the_default(
    tiny_cnn, tiny_batches, tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    config = {"Global": {"save_dir": str(tmp_path / "from_yaml")}}
    given = AutoCompression(tiny_cnn, tiny_batches, save_dir="./output", config=config, eval_dataloader=tiny_batches)
    assert given.save_dir == tmp_path / "output"
    assert (
        AutoCompression(tiny_cnn, tiny_batches, config=config, eval_dataloader=tiny_batches).save_dir
        == tmp_path / "from_yaml"
    )


def test_a_symlink_is_refused_even_to_an_empty_folder(tiny_cnn, tiny_batches, tmp_path, monkeypatch):
    (tmp_path / "empty").mkdir()
    os.symlink(tmp_path / "empty", tmp_path / "link")
    os.symlink(tmp_path / "nowhere", tmp_path / "dangling")
    _untouchable(monkeypatch)
    for link in ("link", "dangling"):
        with pytest.raises(ConfigError, match=f"'.*{link}' is a symbolic link to"):
            AutoCompression(tiny_cnn, tiny_batches, save_dir=tmp_path / link, eval_dataloader=tiny_batches)


def test_an_empty_folder_is_used(tiny_cnn, tiny_batches, tmp_path):
    (tmp_path / "out").mkdir()
    result = _compress(tiny_cnn, tiny_batches, tmp_path / "out")
    assert result.model_path.is_file() and is_marked(tmp_path / "out")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model", "out"]


def test_a_previous_result_is_replaced_in_one_swap(tiny_cnn, tiny_batches, tmp_path, monkeypatch):
    """The old result is moved aside whole, the new one moved in, then the old one removed: never a mix."""
    save_dir = tmp_path / "out"
    _compress(tiny_cnn, tiny_batches, save_dir)
    first_run = json.loads((save_dir / MARKER).read_text())["run"]
    renames, replace = [], os.replace

    def recording(src, dst):
        content = sorted(p.name for p in Path(src).iterdir()) if Path(src).is_dir() else []
        renames.append((Path(src).name, Path(dst).name, content))
        replace(src, dst)

    monkeypatch.setattr(os, "replace", recording)
    _compress(tiny_cnn, tiny_batches, save_dir)
    swaps = [(src, dst) for src, dst, _ in renames if "out" in (src, dst) or dst == "out.previous"]
    assert [s[0] for s in swaps] == ["out", swaps[1][0]] and swaps[0][1] == "out.previous" and swaps[1][1] == "out"
    assert swaps[1][0].startswith(".out.tmp-")
    moved_aside = next(content for src, dst, content in renames if dst == "out.previous")
    assert {MARKER, "model.onnx", "report.json", "config.yaml"} <= set(moved_aside)
    assert json.loads((save_dir / MARKER).read_text())["run"] != first_run
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model", "out"]


def test_a_foreign_previous_is_neither_restored_nor_deleted(tiny_cnn, tmp_path):
    save_dir, previous = tmp_path / "out", tmp_path / "out.previous"
    previous.mkdir()
    (previous / "mine.txt").write_text("not autocompress's")
    work_dir_for(save_dir)  # repairs what a kill left: nothing here is autocompress's
    assert not save_dir.exists() and (previous / "mine.txt").read_text() == "not autocompress's"
    save_dir.mkdir()
    write_marker(save_dir)
    with pytest.raises(ConfigError, match="out.previous' is a folder holding mine.txt"):
        check_save_dir(save_dir, [tiny_cnn])
    with pytest.raises(SaveDirError, match="out.previous"), atomic_dir(save_dir) as tmp:
        (tmp / "report.json").write_text("new")
    assert (previous / "mine.txt").read_text() == "not autocompress's" and not (save_dir / "report.json").exists()


def test_a_foreign_work_folder_is_refused(tiny_cnn, tmp_path):
    (tmp_path / "out.work").mkdir()
    (tmp_path / "out.work" / "notes").write_text("mine")
    with pytest.raises(ConfigError, match="out.work' is a folder holding notes"):
        check_save_dir(tmp_path / "out", [tiny_cnn])
    with pytest.raises(SaveDirError, match="out.work"):
        work_dir_for(tmp_path / "out")
    assert (tmp_path / "out.work" / "notes").read_text() == "mine"


def test_files_put_into_save_dir_during_a_run_are_not_replaced(tmp_path):
    """save_dir is checked again at the swap: what is there may have changed since the run started."""
    save_dir = tmp_path / "out"
    save_dir.mkdir()
    with pytest.raises(SaveDirError, match="is now a folder holding late.txt"), atomic_dir(save_dir) as tmp:
        (tmp / "report.json").write_text("new")
        (save_dir / "late.txt").write_text("written meanwhile")
    assert _tree(tmp_path) == {"out/late.txt": b"written meanwhile"}


def test_model_and_output_in_one_folder_through_the_api(tiny_cnn, tiny_batches, monkeypatch):
    monkeypatch.chdir(tiny_cnn.parent)
    before = tiny_cnn.read_bytes()
    result = _compress(Path(tiny_cnn.name), tiny_batches, "./output")
    assert result.save_dir == tiny_cnn.parent / "output" and result.model_path.is_file()
    assert tiny_cnn.read_bytes() == before
    assert sorted(p.name for p in tiny_cnn.parent.iterdir()) == ["output", tiny_cnn.name]


def test_model_and_output_in_one_folder_through_the_cli(tiny_cnn, monkeypatch, capsys):
    folder = tiny_cnn.parent
    (folder / "data").mkdir()
    rng = np.random.default_rng(0)
    for i in range(4):
        np.save(folder / "data" / f"{i}.npy", rng.standard_normal((3, 16, 16)).astype(np.float32))
    (folder / "cfg.yaml").write_text(
        yaml.safe_dump(
            {
                **QUICK,
                "Global": {
                    "model_dir": tiny_cnn.name,
                    "save_dir": "./output",
                    "train_data": {"path": "data", "format": "npy", "batch_size": 2},
                },
            }
        )
    )
    monkeypatch.chdir(folder)
    before = tiny_cnn.read_bytes()
    assert main(["compress", "--config", "cfg.yaml"]) == 0, capsys.readouterr().err
    assert (folder / "output" / "model.onnx").is_file() and tiny_cnn.read_bytes() == before
    assert sorted(p.name for p in folder.iterdir()) == ["cfg.yaml", "data", "output", tiny_cnn.name]


def test_external_data_inside_save_dir_is_refused_before_loading(tmp_path, tiny_batches):
    """save_dir may sit inside the model's folder, but not hold the model's external data."""
    model = onnx.load(str(_export(tmp_path / "src" / "src.onnx", seed=0)))
    (tmp_path / "m" / "weights").mkdir(parents=True)
    write_marker(tmp_path / "m" / "weights")
    onnx.save_model(
        model,
        str(tmp_path / "m" / "model.onnx"),
        save_as_external_data=True,
        location="weights/w.bin",
        size_threshold=0,
    )
    compression = AutoCompression(
        tmp_path / "m" / "model.onnx",
        tiny_batches,
        save_dir=tmp_path / "m" / "weights",
        config=QUICK,
        eval_dataloader=tiny_batches,
    )
    with pytest.raises(ConfigError, match="is the folder holding the model's file '.*w.bin'"):
        compression.compress()
    assert (tmp_path / "m" / "weights" / "w.bin").is_file()


# ------------------------------------------------------------------------------ resume only the run it belongs to


class _Interrupted(Exception):
    """Stands for a crash mid-training."""


def _export(path: Path, seed: int, classes: int = 10) -> Path:
    path.parent.mkdir(exist_ok=True)
    torch.manual_seed(seed)
    torch.onnx.export(
        TinyCNN(classes).eval(),
        torch.randn(1, 3, 16, 16),
        str(path),
        input_names=["x"],
        output_names=["logits"],
        dynamic_axes={"x": {0: "batch"}, "logits": {0: "batch"}},
        opset_version=13,
        dynamo=False,
    )
    return path


def _interrupt_after_a_checkpoint(model: Path, batches, save_dir: Path) -> None:
    """Train, and crash at the first evaluation that finds a checkpoint in the work folder."""
    work_dir = save_dir.with_name(save_dir.name + ".work")

    def crash_once_checkpointed(predictor) -> float:
        if list(work_dir.rglob(CHECKPOINT_NAME)):
            raise _Interrupted
        return 0.5

    with pytest.raises(_Interrupted):
        AutoCompression(
            model,
            batches,
            save_dir=save_dir,
            config=TRAIN,
            eval_callback=crash_once_checkpointed,
            higher_is_better=True,
        ).compress()
    assert list(work_dir.rglob(CHECKPOINT_NAME)), "the interrupted run kept its checkpoint"


def _weights(path: Path) -> dict[str, np.ndarray]:
    return {t.name: numpy_helper.to_array(t) for t in onnx.load(str(path)).graph.initializer}


def _train(model: Path, batches, save_dir: Path):
    return AutoCompression(
        model, batches, save_dir=save_dir, config=TRAIN, eval_callback=lambda predictor: 0.5, higher_is_better=True
    ).compress()


def test_a_checkpoint_of_model_a_is_not_resumed_by_model_b(tmp_path, tiny_batches, caplog):
    model_a, model_b = _export(tmp_path / "a" / "a.onnx", seed=0), _export(tmp_path / "b" / "b.onnx", seed=1)
    _interrupt_after_a_checkpoint(model_a, tiny_batches, tmp_path / "out")
    with caplog.at_level(logging.INFO):
        result = _train(model_b, tiny_batches, tmp_path / "out")
    assert "not resuming from" in caplog.text and "model_sha256" in caplog.text
    assert "resumed training" not in caplog.text
    expected = _weights(_train(model_b, tiny_batches, tmp_path / "straight").model_path)
    weights = _weights(result.model_path)
    assert weights.keys() == expected.keys()
    for name in weights:
        np.testing.assert_allclose(weights[name], expected[name], rtol=1e-6, atol=1e-7)
    assert result.report["model"]["source"] == str(model_b)


def test_a_checkpoint_of_a_model_with_other_shapes_does_not_crash_the_rerun(tmp_path, tiny_batches, caplog):
    _interrupt_after_a_checkpoint(_export(tmp_path / "a" / "a.onnx", seed=0), tiny_batches, tmp_path / "out")
    with caplog.at_level(logging.WARNING):
        result = _train(_export(tmp_path / "c" / "c.onnx", seed=0, classes=4), tiny_batches, tmp_path / "out")
    assert "not resuming from" in caplog.text
    assert result.report["timeline"][0]["info"]["steps"] == 6
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "c", "out"]


def test_the_same_run_still_resumes(tmp_path, tiny_batches, caplog):
    model = _export(tmp_path / "a" / "a.onnx", seed=0)
    _interrupt_after_a_checkpoint(model, tiny_batches, tmp_path / "out")
    with caplog.at_level(logging.INFO):
        _train(model, tiny_batches, tmp_path / "out")
    assert "resumed training" in caplog.text and "not resuming" not in caplog.text


def test_no_work_folder_is_left_by_an_error_before_anything_was_checkpointed(tiny_cnn, tiny_batches, tmp_path):
    calls = []

    def failing_after_the_baseline(predictor) -> float:
        calls.append(1)
        if len(calls) > 1:
            raise _Interrupted
        return 0.5

    with pytest.raises(_Interrupted):
        AutoCompression(
            tiny_cnn, tiny_batches, save_dir=tmp_path / "out", config=QUICK, eval_callback=failing_after_the_baseline
        ).compress()
    assert len(calls) == 2 and sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_an_empty_save_dir_in_the_cli_config_exits_2(tiny_cnn, tmp_path, capsys):
    (tmp_path / "data").mkdir()
    np.save(tmp_path / "data" / "0.npy", np.zeros((3, 16, 16), np.float32))
    (tmp_path / "cfg.yaml").write_text(
        yaml.safe_dump(
            {
                "Global": {
                    "model_dir": str(tiny_cnn),
                    "save_dir": "",
                    "train_data": {"path": str(tmp_path / "data"), "format": "npy"},
                }
            }
        )
    )
    assert main(["compress", "--config", str(tmp_path / "cfg.yaml")]) == 2
    assert "save_dir '' is empty" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cfg.yaml", "data", "model"]


def test_an_empty_save_dir_on_the_cli_exits_2(tiny_cnn, tmp_path, capsys):
    (tmp_path / "data").mkdir()
    np.save(tmp_path / "data" / "0.npy", np.zeros((3, 16, 16), np.float32))
    (tmp_path / "cfg.yaml").write_text(
        yaml.safe_dump(
            {
                "Global": {
                    "model_dir": str(tiny_cnn),
                    "save_dir": str(tmp_path / "out"),
                    "train_data": {"path": str(tmp_path / "data"), "format": "npy"},
                }
            }
        )
    )
    assert main(["compress", "--config", str(tmp_path / "cfg.yaml"), "--save-dir", ""]) == 2
    assert "save_dir '' is empty" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
