"""Atomic writing of save_dir: everything goes to a temp folder beside it, then one rename.

An exception or a kill mid-write leaves no half-written save_dir; an existing save_dir is replaced only once the
new one is complete (the old one is kept as `<save_dir>.previous` until the swap has succeeded).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

from autocompress.errors import AutoCompressError, ConfigError


def check_save_dir(save_dir: str | os.PathLike, model_dir: Path) -> Path:
    """save_dir may not be the model's folder or inside it (we never write into the user's model folder)."""
    target = Path(save_dir).resolve()
    model_root = model_dir.resolve()
    if target == model_root or model_root in target.parents:
        raise ConfigError(
            f"save_dir {str(save_dir)!r} is the model's folder or inside it ({str(model_dir)!r}); "
            "choose a folder outside the model's folder"
        )
    return target


@contextlib.contextmanager
def atomic_dir(save_dir: Path) -> Iterator[Path]:
    """Yield a temp folder to fill; on success it becomes save_dir, on error it is removed."""
    parent = save_dir.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{save_dir.name}.tmp-", dir=parent))
    except OSError as exc:
        raise AutoCompressError(f"cannot create a folder next to save_dir {str(save_dir)!r}: {exc}") from None
    try:
        yield tmp
        previous = save_dir.with_name(save_dir.name + ".previous")
        if save_dir.exists():
            if previous.exists():
                shutil.rmtree(previous)
            os.replace(save_dir, previous)
        os.replace(tmp, save_dir)
        if previous.exists():
            shutil.rmtree(previous, ignore_errors=True)
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(exc, OSError):
            raise AutoCompressError(f"cannot write save_dir {str(save_dir)!r}: {exc}") from None
        raise
