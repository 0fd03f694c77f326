"""A full disk or a missing permission on save_dir is a SaveDirError naming the path, and the previous result
(save_dir, or the last training checkpoint) is left as it was; what a killed write leaves is repaired."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from pathlib import Path

import onnx
import pytest
import torch

import autocompress.api as api
import autocompress.train.checkpoint as checkpoint
from autocompress import AutoCompression
from autocompress.errors import SaveDirError
from autocompress.savedir import atomic_dir, work_dir_for, write_marker


class _FillingFile:
    """A file on a disk with `room` bytes left: like the kernel, it takes what fits (a short write), then raises
    ENOSPC."""

    def __init__(self, file, room: int):
        self.file, self.room = file, room

    def write(self, data) -> int:
        data = memoryview(data).cast("B")
        if self.room == 0:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        taken = data[: self.room]
        self.room -= len(taken)
        return self.file.write(taken)

    def __getattr__(self, name):
        return getattr(self.file, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.file.close()


def _disk_full(path) -> OSError:
    return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in folder.iterdir()}


def _compress(model: Path, batches, save_dir: Path):
    return AutoCompression(model, batches, save_dir=save_dir, eval_dataloader=batches).compress()


def test_a_disk_that_fills_up_while_a_checkpoint_is_written_keeps_the_previous_one(tmp_path, monkeypatch):
    path = tmp_path / "work" / checkpoint.CHECKPOINT_NAME
    checkpoint.save_checkpoint(path, {"weights": torch.ones(4)})
    fdopen = os.fdopen
    monkeypatch.setattr(os, "fdopen", lambda fd, mode: _FillingFile(fdopen(fd, mode), room=300))
    with pytest.raises(SaveDirError) as info:
        checkpoint.save_checkpoint(path, {"weights": torch.zeros(100_000)})
    assert str(path) in str(info.value) and "No space left on device" in str(info.value)
    monkeypatch.undo()
    assert torch.equal(checkpoint.load_checkpoint(path)["weights"], torch.ones(4))
    assert [p.name for p in path.parent.iterdir()] == [checkpoint.CHECKPOINT_NAME]


@pytest.mark.parametrize("failing", ["model.onnx", "report.json"])
def test_a_full_disk_while_save_dir_is_written_keeps_the_previous_result(
    tiny_cnn, tiny_batches, previous, monkeypatch, failing
):
    save_dir, before = previous
    if failing == "model.onnx":
        monkeypatch.setattr(onnx, "save_model", lambda model, path, **kwargs: (_ for _ in ()).throw(_disk_full(path)))
    else:
        write_text = Path.write_text

        def full_disk_write_text(self, *args, **kwargs):
            if self.name == failing:
                raise _disk_full(self)
            return write_text(self, *args, **kwargs)

        monkeypatch.setattr(Path, "write_text", full_disk_write_text)
    with pytest.raises(SaveDirError) as info:
        _compress(tiny_cnn, tiny_batches, save_dir)
    assert str(save_dir) in str(info.value) and "No space left on device" in str(info.value)
    assert _snapshot(save_dir) == before
    assert sorted(p.name for p in save_dir.parent.iterdir()) == ["model", "out", "out.work"]  # the search journal


def test_a_save_dir_that_cannot_be_replaced_is_restored(tiny_cnn, tiny_batches, previous, monkeypatch):
    """The old result is moved aside before the new one moves in; if the second rename fails, it moves back."""
    save_dir, before = previous
    replace = os.replace

    def no_permission_for_the_new_result(src, dst):
        if Path(dst) == save_dir and ".tmp-" in Path(src).name:
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(dst))
        replace(src, dst)

    monkeypatch.setattr(os, "replace", no_permission_for_the_new_result)
    with pytest.raises(SaveDirError, match="Permission denied") as info:
        _compress(tiny_cnn, tiny_batches, save_dir)
    assert str(save_dir) in str(info.value)
    assert _snapshot(save_dir) == before
    assert not save_dir.with_name("out.previous").exists()


def test_a_save_dir_parent_without_write_permission_fails_before_compressing(
    tiny_cnn, tiny_batches, previous, monkeypatch
):
    """Creating the work folder is the first write beside save_dir: it fails there, not after the stages ran."""
    save_dir, before = previous
    mkdir = os.mkdir

    def read_only_parent(path, *args, **kwargs):
        if Path(path).parent == save_dir.parent:
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))
        mkdir(path, *args, **kwargs)

    monkeypatch.setattr(os, "mkdir", read_only_parent)
    monkeypatch.setattr(api, "plan_stages", lambda config: pytest.fail("the stages ran"))
    with pytest.raises(SaveDirError, match="Permission denied") as info:
        _compress(tiny_cnn, tiny_batches, save_dir)
    assert str(save_dir) in str(info.value)
    assert _snapshot(save_dir) == before


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="needs file permissions that apply (not root)")
def test_a_read_only_parent_folder_is_a_save_dir_error(tiny_cnn, tiny_batches, tmp_path):
    parent = tmp_path / "locked"
    parent.mkdir(mode=0o555)
    try:
        with pytest.raises(SaveDirError, match="Permission denied"):
            _compress(tiny_cnn, tiny_batches, parent / "out")
    finally:
        parent.chmod(0o755)


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_what_a_kill_during_the_final_write_left_is_repaired(tmp_path):
    save_dir = tmp_path / "out"
    previous = tmp_path / "out.previous"  # killed between moving the old result aside and moving the new one in
    previous.mkdir()
    write_marker(previous)
    (previous / "report.json").write_text("old")
    stale = tmp_path / f".out.tmp-{_dead_pid()}-abc"  # killed while the new result was written
    stale.mkdir()
    running = tmp_path / f".out.tmp-{os.getpid()}-xyz"  # a live process is still writing it
    running.mkdir()
    work_dir_for(save_dir)
    assert (save_dir / "report.json").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == [running.name, "out", "out.work"]
    previous.mkdir()  # killed after the swap, before the clean-up
    write_marker(previous)
    with atomic_dir(save_dir) as tmp:
        (tmp / "report.json").write_text("new")
    assert (save_dir / "report.json").read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == [running.name, "out", "out.work"]
