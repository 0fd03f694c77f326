"""Progress bars on stderr for long work: calibration, search trials, training steps, evaluations, latency probes.

Bars nest under one bar for the whole run that names the current stage. Whether they show is decided per run by
`Global.progress` (`true`, `false` or `auto`: only when stderr is a terminal) and per command line by `--quiet`,
which wins. Bars redraw at most every MIN_INTERVAL seconds, so their cost stays negligible next to the work they
follow. Only the primary process of a distributed run draws them. Each stage also ends with one INFO line on the
`autocompress` logger.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

log = logging.getLogger(__name__)

#: Global.progress: True shows bars, False hides them, "auto" shows them when stderr is a terminal.
ProgressSetting = bool | Literal["auto"]

#: A progress bar (a disabled one costs next to nothing to update).
Bar = tqdm

#: Seconds between two redraws of a bar.
MIN_INTERVAL = 0.1

_setting: ContextVar[ProgressSetting] = ContextVar("autocompress_progress", default="auto")
_quiet: ContextVar[bool] = ContextVar("autocompress_quiet", default=False)

F = TypeVar("F", bound=Callable[..., Any])
T = TypeVar("T")


def _primary_process() -> bool:
    """False in the workers of torchrun but the first: one bar per run, not one per process."""
    if "RANK" not in os.environ:
        return True
    from autocompress.train import distributed  # noqa: PLC0415  (torch is imported only under a launcher)

    return distributed.is_primary()


def _disable() -> bool | None:
    """tqdm's `disable`: None lets tqdm hide the bar when stderr is not a terminal."""
    if _quiet.get() or not _primary_process():
        return True
    setting = _setting.get()
    return None if setting == "auto" else not setting


@contextlib.contextmanager
def _holding(variable: ContextVar[T], value: T) -> Iterator[None]:
    """`variable` is `value` inside the block and what it was outside it."""
    token = variable.set(value)
    try:
        yield
    finally:
        variable.reset(token)


def quiet(enabled: bool) -> AbstractContextManager[None]:
    """No bars inside the block whatever the config says (the command line's --quiet)."""
    return _holding(_quiet, enabled)


def using(setting: ProgressSetting) -> AbstractContextManager[None]:
    """Bars inside the block follow `setting` (Global.progress); the setting outside is restored after."""
    return _holding(_setting, setting)


def scoped(setting_of: Callable[..., ProgressSetting]) -> Callable[[F], F]:
    """Decorate a method so that its whole call follows the setting `setting_of(*args)` reads from its object."""

    def decorate(function: F) -> F:
        @functools.wraps(function)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with using(setting_of(*args)):
                return function(*args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return decorate


def known_length(iterable: Iterable) -> int | None:
    """len(iterable) when it has one (a bar's total), None when only reading it would tell."""
    try:
        return len(iterable)  # type: ignore[arg-type]
    except TypeError:
        return None


def bar(
    iterable: Iterable | None = None, desc: str = "", total: float | None = None, unit: str = "it", initial: int = 0
) -> Bar:
    """A bar for one piece of work (use it as a context manager); it disappears when done if another bar holds it."""
    return tqdm(
        iterable,
        desc=desc,
        total=total,
        unit=unit,
        initial=initial,
        file=sys.stderr,
        mininterval=MIN_INTERVAL,
        leave=_run is None,
        disable=_disable(),
        dynamic_ncols=True,
    )


@dataclass
class _Run:
    """The bar of the whole run: one step per stage, the stage name as its description, results as postfix."""

    stages: int
    bar: tqdm
    logs: contextlib.ExitStack
    done: int = 0


@dataclass
class _StageMetrics:
    """The evaluations made during one stage: how many, and the best value by the metric's direction."""

    name: str = ""
    count: int = 0
    best: float | None = None

    def add(self, name: str, value: float, higher_is_better: bool) -> None:
        self.name, self.count = name, self.count + 1
        if self.best is None or (value > self.best if higher_is_better else value < self.best):
            self.best = value

    def describe(self) -> str:
        if self.best is None:
            return "no evaluation"
        plural = "s" if self.count > 1 else ""
        return f"best {self.name} {self.best:.6g} over {self.count} evaluation{plural}"


_run: _Run | None = None
_metrics: _StageMetrics | None = None


def _logs_to_console() -> bool:
    """Whether the application's root logger writes to stdout or stderr, where log lines would tear the bars."""
    return any(
        isinstance(h, logging.StreamHandler) and getattr(h, "stream", None) in (sys.stdout, sys.stderr)
        for h in logging.root.handlers
    )


def _open_run(first_stage: str, stages: int) -> _Run:
    """The run bar; while it shows, console log lines are written above the bars instead of through them."""
    logs = contextlib.ExitStack()
    run_bar = tqdm(
        total=stages,
        desc=first_stage,
        unit="stage",
        file=sys.stderr,
        mininterval=MIN_INTERVAL,
        disable=_disable(),
        dynamic_ncols=True,
    )
    if not run_bar.disable and _logs_to_console():
        logs.enter_context(logging_redirect_tqdm())
    return _Run(stages, run_bar, logs)


def _close_run() -> None:
    global _run
    run, _run = _run, None
    if run is not None:
        run.bar.close()
        run.logs.close()


@contextlib.contextmanager
def stage(name: str, stages: int) -> Iterator[None]:
    """One stage of `stages`: the run bar opens with the first and closes after the last (or on an error)."""
    global _run, _metrics
    if _run is None:
        _run = _open_run(name, stages)
    else:
        _run.bar.set_description(name)
    _metrics, started = _StageMetrics(), time.perf_counter()
    try:
        yield
    except BaseException:
        _close_run()
        raise
    finally:
        metrics, _metrics = _metrics, None
    log.info("stage %s done in %.2f s: %s", name, time.perf_counter() - started, metrics.describe())
    _run.done += 1
    _run.bar.update()
    if _run.done >= _run.stages:
        _close_run()


def note_metric(name: str, value: float, higher_is_better: bool) -> None:
    """Record one evaluation for the current stage's log line and show the stage's best on the run bar."""
    if _metrics is None or _run is None:
        return
    _metrics.add(name, value, higher_is_better)
    _run.bar.set_postfix({f"best {name}": f"{_metrics.best:.4g}"}, refresh=False)
