"""Atomic writing of save_dir: everything goes to a temp folder beside it, then one rename.

An exception or a kill mid-write leaves no half-written save_dir; an existing save_dir is replaced only once the
new one is complete (the old one is kept as `<save_dir>.previous` until the swap has succeeded). What a kill leaves
behind (a temp folder, or the previous result under `.previous` when the kill fell between the two renames) is
cleaned up or put back by the next run. Disk-full and permission errors become a `SaveDirError` naming the path.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

from autocompress.errors import ConfigError, SaveDirError


def check_save_dir(save_dir: str | os.PathLike, model_dir: Path) -> Path:
    """save_dir may not be the model's folder, inside it (we never write into the user's model folder), or
    above it: save_dir is replaced as a whole, which would delete the model with it."""
    target = Path(save_dir).resolve()
    model_root = model_dir.resolve()
    if target == model_root or model_root in target.parents:
        raise ConfigError(
            f"save_dir {str(save_dir)!r} is the model's folder or inside it ({str(model_dir)!r}); "
            "choose a folder outside the model's folder"
        )
    if target in model_root.parents:
        raise ConfigError(
            f"save_dir {str(save_dir)!r} contains the model's folder ({str(model_dir)!r}) and is replaced as a whole "
            "when the result is saved; choose a folder that does not contain the model"
        )
    return target


def work_dir_for(save_dir: Path, suffix: str = "") -> Path:
    """Create `<save_dir>.work<suffix>` (checkpoints, search journals), after repairing what a killed run left.

    Runs before any long work, so a save_dir that cannot be written fails in seconds, not at the end. Only the
    primary process (no suffix) repairs; other ranks must not race it."""
    work_dir = save_dir.with_name(save_dir.name + ".work" + suffix)
    try:
        if not suffix:
            recover(save_dir)
        work_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SaveDirError(f"cannot create the work folder {str(work_dir)!r} beside save_dir: {exc}") from None
    return work_dir


def recover(save_dir: Path) -> None:
    """Undo what a kill during `atomic_dir` left: put back a previous result that was moved aside but not replaced,
    and remove temp folders whose writing process is gone."""
    previous = _previous(save_dir)
    if previous.is_dir():
        if save_dir.exists():  # the swap finished; only the clean-up was missed
            shutil.rmtree(previous)
        else:
            os.replace(previous, save_dir)
    for tmp in save_dir.parent.glob(f".{save_dir.name}.tmp-*"):
        pid = tmp.name[len(f".{save_dir.name}.tmp-"):].split("-")[0]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def atomic_dir(save_dir: Path) -> Iterator[Path]:
    """Yield a temp folder to fill; on success it becomes save_dir, on error it is removed and save_dir is as it
    was before."""
    parent = save_dir.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        recover(save_dir)
        tmp = Path(tempfile.mkdtemp(prefix=f".{save_dir.name}.tmp-{os.getpid()}-", dir=parent))
    except OSError as exc:
        raise SaveDirError(f"cannot create a folder next to save_dir {str(save_dir)!r}: {exc}") from None
    previous, moved = _previous(save_dir), False
    try:
        yield tmp
        if save_dir.exists():
            os.replace(save_dir, previous)
            moved = True
        os.replace(tmp, save_dir)
        moved = False
        shutil.rmtree(previous, ignore_errors=True)
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if moved:  # if this fails too, the next run's `recover` puts it back
            with contextlib.suppress(OSError):
                os.replace(previous, save_dir)
        if isinstance(exc, OSError):
            raise SaveDirError(f"cannot write save_dir {str(save_dir)!r}: {exc}; the previous content is kept") from None
        raise


def _previous(save_dir: Path) -> Path:
    return save_dir.with_name(save_dir.name + ".previous")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True
