"""save_dir safety and atomic writing: autocompress replaces or removes only what it wrote.

Every folder autocompress writes (the result, its work folder) carries a marker file, `.autocompress`. An existing
save_dir is replaced only when it carries the marker or is an empty folder; anything else there (a user's folder,
a file, a device, a symlink, the filesystem root, the home folder, the current directory) is refused before any
work starts. The only other paths ever renamed or removed are autocompress's own siblings of save_dir:
`.<name>.tmp-<pid>-*` (written by process pid), `<name>.previous` and `<name>.work` (both marked).

The result goes to a temp folder beside save_dir, then one rename. An exception or a kill mid-write leaves no
half-written save_dir; an existing result is replaced only once the new one is complete (the old one is kept as
`<save_dir>.previous` until the swap has succeeded). What a kill leaves behind is cleaned up or put back by the
next run. Disk-full and permission errors become a `SaveDirError` naming the path.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import os
import shutil
import stat
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from autocompress.errors import ConfigError, SaveDirError

log = logging.getLogger(__name__)

MARKER = ".autocompress"
IDENTITY_NAME = "identity.json"
#: What a work folder may hold and still have nothing to resume: its own bookkeeping.
_BOOKKEEPING = {MARKER, IDENTITY_NAME, IDENTITY_NAME + ".tmp"}
_MARKER_MAX_BYTES = 4096


def write_marker(folder: Path) -> None:
    """Mark `folder` as autocompress's: the only kind of non-empty folder it will later replace or remove."""
    from autocompress import __version__  # noqa: PLC0415  (the package imports this module)

    data = {"autocompress": __version__, "run": uuid.uuid4().hex, "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    (folder / MARKER).write_text(json.dumps(data), encoding="utf-8")


def is_marked(folder: Path) -> bool:
    """True for a real folder (not a symlink) holding autocompress's marker file."""
    marker = folder / MARKER
    try:
        if not stat.S_ISDIR(os.lstat(folder).st_mode):
            return False
        st = os.lstat(marker)
        if not stat.S_ISREG(st.st_mode) or st.st_size > _MARKER_MAX_BYTES:
            return False
        data = json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and "autocompress" in data


def describe(path: Path) -> str | None:
    """What is at `path`, in words for an error message; None when nothing is there."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    mode = st.st_mode
    if stat.S_ISLNK(mode):
        return f"a symbolic link to {os.readlink(path)!r}"
    if stat.S_ISDIR(mode):
        with os.scandir(path) as entries:
            names = [e.name for e in itertools.islice(entries, 6)]
        if not names:
            return "an empty folder"
        shown = ", ".join(sorted(names[:5])) + (", ..." if len(names) > 5 else "")
        marked = "autocompress's marker" if is_marked(path) else f"no {MARKER} marker"
        return f"a folder holding {shown} ({marked})"
    if stat.S_ISREG(mode):
        return f"a file of {st.st_size} bytes"
    kinds = [
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISFIFO, "a named pipe"),
        (stat.S_ISSOCK, "a socket"),
    ]
    return next((name for test, name in kinds if test(mode)), "a special file")


def _replaceable(path: Path) -> bool:
    """Nothing there, an empty folder, or a folder autocompress wrote."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return True
    if not stat.S_ISDIR(st.st_mode):
        return False
    with os.scandir(path) as entries:
        return next(entries, None) is None or is_marked(path)


def check_save_dir(save_dir: str | os.PathLike, model_files: Sequence[Path]) -> Path:
    """The resolved save_dir, or a ConfigError naming the path and what is there when a run could destroy something
    autocompress did not write: checked before any work starts."""
    text = os.fspath(save_dir)
    if not text.strip():
        raise ConfigError(f"save_dir {text!r} is empty; name the folder the result goes to, for example './output'")
    path = Path(text).absolute()
    try:
        if path.is_symlink():
            raise ConfigError(f"save_dir {text!r} is {describe(path)}; give the folder itself, not a link to it")
        target = path.resolve()
        _refuse_protected(text, target)
        refuse_model_files(text, target, model_files)
        if not _replaceable(target):
            raise ConfigError(
                f"save_dir {text!r} is {describe(target)}; autocompress replaces only an empty folder or one it wrote "
                f"(marked by a {MARKER} file): choose a new or empty folder"
            )
        _refuse_foreign_sibling(text, _previous(target), "keeps the previous result during the swap", is_marked)
        _refuse_foreign_sibling(text, _work(target), "holds checkpoints", _replaceable)
    except OSError as exc:
        raise SaveDirError(f"cannot inspect save_dir {text!r}: {exc}") from None
    return target


def _refuse_protected(text: str, target: Path) -> None:
    """The root, the home folder and the current directory (or a folder holding them) are never save_dir."""
    if target == Path(target.anchor):
        raise ConfigError(f"save_dir {text!r} is the filesystem root; choose a folder of its own, e.g. './output'")
    places = [(Path.cwd().resolve(), "the current directory")]
    with contextlib.suppress(RuntimeError):  # no home folder can be determined
        places.append((Path.home().resolve(), "the home folder"))
    for place, name in places:
        if target == place or target in place.parents:
            relation = "is" if target == place else "contains"
            raise ConfigError(
                f"save_dir {text!r} {relation} {name} ({str(place)!r}), which would be replaced as a whole; "
                "choose a folder of its own, e.g. './output'"
            )


def refuse_model_files(text: str, target: Path, model_files: Sequence[Path]) -> None:
    """save_dir is replaced as a whole: it may sit beside the model's files, but not be their folder or hold them."""
    for file in model_files:
        resolved = file.resolve()
        if target in resolved.parents:
            relation = "is the folder holding" if target == resolved.parent else "contains"
            raise ConfigError(
                f"save_dir {text!r} {relation} the model's file {str(file)!r} and is replaced as a whole when the "
                "result is saved; choose a folder that does not hold the model, e.g. './output' beside it"
            )


def _refuse_foreign_sibling(text: str, sibling: Path, role: str, usable: Callable[[Path], bool]) -> None:
    """`<save_dir>.previous` / `.work` are autocompress's names; something else by that name is in the way."""
    if not os.path.lexists(sibling) or usable(sibling):
        return
    raise ConfigError(
        f"{str(sibling)!r} is {describe(sibling)}, and autocompress did not write it; that name beside save_dir "
        f"{text!r} {role}: move it away or choose another save_dir"
    )


def work_dir_for(save_dir: Path, suffix: str = "", identity: dict[str, Any] | None = None) -> Path:
    """Create `<save_dir>.work<suffix>` (checkpoints, search journals), after repairing what a killed run left.

    A work folder left by another run (another model, config or inputs, as `identity` says) is replaced, so that a
    checkpoint is resumed only by the run it belongs to. Runs before any long work, so a save_dir that cannot be
    written fails in seconds, not at the end. Only the primary process (no suffix) repairs; other ranks must not
    race it."""
    work_dir = save_dir.with_name(save_dir.name + ".work" + suffix)
    try:
        if not suffix:
            recover(save_dir)
        _claim_work_dir(work_dir, save_dir, identity)
    except OSError as exc:
        raise SaveDirError(f"cannot create the work folder {str(work_dir)!r} beside save_dir: {exc}") from None
    return work_dir


def _claim_work_dir(work_dir: Path, save_dir: Path, identity: dict[str, Any] | None) -> None:
    if not _replaceable(work_dir):
        raise SaveDirError(
            f"{str(work_dir)!r} is {describe(work_dir)}, and autocompress did not write it; move it away"
        )
    reason = _stale(work_dir, identity)
    if reason is not None:
        log.warning("not resuming from %s: %s; it is replaced and this run starts over", work_dir, reason)
        _discard(work_dir, save_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    if not is_marked(work_dir):
        write_marker(work_dir)
    if identity is not None:
        _write_json(work_dir / IDENTITY_NAME, identity)


def _stale(work_dir: Path, identity: dict[str, Any] | None) -> str | None:
    """Why the work folder's content belongs to another run; None when it is this run's or holds nothing."""
    if identity is None or not holds_progress(work_dir):
        return None
    try:
        recorded = json.loads((work_dir / IDENTITY_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return "it does not record which run it belongs to"
    if not isinstance(recorded, dict):
        return "its record of the run it belongs to is unreadable"
    differing = [key for key in identity if recorded.get(key) != identity[key]]
    return f"it belongs to another run ({', '.join(differing)} differ)" if differing else None


def holds_progress(work_dir: Path) -> bool:
    """Whether a work folder holds anything a rerun could resume (a checkpoint, a search journal)."""
    if not work_dir.is_dir():
        return False
    return any(p.is_file() and p.relative_to(work_dir).parts[0] not in _BOOKKEEPING for p in work_dir.rglob("*"))


def discard_work_dir(work_dir: Path, save_dir: Path, keep_progress: bool = False) -> None:
    """Remove this run's work folder; with keep_progress, only when it holds nothing a rerun could resume."""
    if keep_progress and holds_progress(work_dir):
        return
    with contextlib.suppress(OSError):  # what is left is repaired by the next run
        _discard(work_dir, save_dir)


def _write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, sort_keys=True), encoding="utf-8")
    os.replace(tmp, path)


def recover(save_dir: Path) -> None:
    """Undo what a kill during `atomic_dir` left: put back a previous result that was moved aside but not replaced,
    and remove temp folders whose writing process is gone. A `.previous` autocompress did not write is left alone."""
    previous = _previous(save_dir)
    if is_marked(previous):
        if os.path.lexists(save_dir):  # the swap finished; only the clean-up was missed
            _discard(previous, save_dir)
        else:
            os.replace(previous, save_dir)
    for tmp in save_dir.parent.glob(f"{_tmp_prefix(save_dir)}*"):
        pid = tmp.name[len(_tmp_prefix(save_dir)) :].split("-")[0]
        if pid.isdigit() and not _alive(int(pid)) and not tmp.is_symlink() and tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def atomic_dir(save_dir: Path) -> Iterator[Path]:
    """Yield a temp folder to fill; on success it becomes save_dir, on error it is removed and save_dir is as it
    was before."""
    parent = save_dir.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        recover(save_dir)
        tmp = Path(tempfile.mkdtemp(prefix=f"{_tmp_prefix(save_dir)}{os.getpid()}-", dir=parent))
        write_marker(tmp)
    except OSError as exc:
        raise SaveDirError(f"cannot create a folder next to save_dir {str(save_dir)!r}: {exc}") from None
    try:
        yield tmp
        _swap(tmp, save_dir)
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(exc, OSError):
            raise SaveDirError(
                f"cannot write save_dir {str(save_dir)!r}: {exc}; the previous content is kept"
            ) from None
        raise


def _swap(tmp: Path, save_dir: Path) -> None:
    """Put `tmp` in place of save_dir; an earlier result is moved aside first and removed only after the swap.

    save_dir is checked again here: what is there may have changed since the run started."""
    if not _replaceable(save_dir):
        raise SaveDirError(
            f"save_dir {str(save_dir)!r} is now {describe(save_dir)}, which autocompress did not "
            "write; the new result is not saved over it"
        )
    if not is_marked(save_dir):  # absent, or an empty folder, which the rename replaces
        os.replace(tmp, save_dir)
        return
    previous = _previous(save_dir)
    if os.path.lexists(previous):
        raise SaveDirError(
            f"{str(previous)!r} is {describe(previous)}, which autocompress did not write; the new "
            f"result is not saved over {str(save_dir)!r}"
        )
    os.replace(save_dir, previous)
    try:
        os.replace(tmp, save_dir)
    except BaseException:
        with contextlib.suppress(OSError):  # if this fails too, the next run's `recover` puts it back
            os.replace(previous, save_dir)
        raise
    with contextlib.suppress(OSError):  # what is left is repaired by the next run
        _discard(previous, save_dir)


def _discard(folder: Path, save_dir: Path) -> None:
    """Remove a folder of autocompress's own: first renamed to a temp name of this process (one atomic step), so
    a kill during the removal leaves only a temp folder that the next run's `recover` removes."""
    if not os.path.lexists(folder):
        return
    doomed = save_dir.with_name(f"{_tmp_prefix(save_dir)}{os.getpid()}-{uuid.uuid4().hex[:8]}")
    os.replace(folder, doomed)
    shutil.rmtree(doomed, ignore_errors=True)


def _tmp_prefix(save_dir: Path) -> str:
    return f".{save_dir.name}.tmp-"


def _previous(save_dir: Path) -> Path:
    return save_dir.with_name(save_dir.name + ".previous")


def _work(save_dir: Path) -> Path:
    return save_dir.with_name(save_dir.name + ".work")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True
