"""Run one fuzz case under a time limit and sort its outcome: success, a documented error, or a crash.

A crash is any exception that is not an AutoCompressError with a message, or a case that runs past its time
limit. The limit is raised as a BaseException so that code catching Exception (the simplifier guard) cannot
swallow it.
"""

from __future__ import annotations

import contextlib
import signal
from collections import Counter
from collections.abc import Callable, Iterator

from autocompress.errors import AutoCompressError

OK = "ok"
DOCUMENTED_ERROR = "documented_error"


class CaseTimeout(BaseException):
    """A fuzz case ran past its time limit (a hang)."""


class FuzzCrash(AssertionError):
    """A fuzz case ended with an undocumented exception, an empty message or a hang."""


@contextlib.contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    def expire(signum, frame):
        raise CaseTimeout(f"case ran longer than {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def run_case(case: Callable[[], object], timeout_s: float = 20.0) -> str:
    """OK or DOCUMENTED_ERROR; raises FuzzCrash (chained to the cause) for anything else."""
    try:
        with time_limit(timeout_s):
            case()
    except AutoCompressError as exc:
        if not str(exc).strip():
            raise FuzzCrash(f"{type(exc).__name__} without a message") from exc
        return DOCUMENTED_ERROR
    except (Exception, CaseTimeout) as exc:
        raise FuzzCrash(f"{type(exc).__name__}: {str(exc)[:500]}") from exc
    return OK


class Tally:
    """Outcome counts of a long fuzz run; crashes are kept (with their case) instead of stopping the run."""

    def __init__(self, keep: int = 10):
        self.counts: Counter[str] = Counter()
        self.crashes: list[tuple[str, str]] = []
        self.keep = keep

    def record(self, case: Callable[[], object], description: Callable[[], str], timeout_s: float = 20.0) -> None:
        try:
            self.counts[run_case(case, timeout_s)] += 1
        except FuzzCrash as exc:
            self.counts["crash"] += 1
            if len(self.crashes) < self.keep:
                self.crashes.append((str(exc)[:300], description()[:300]))

    def summary(self, name: str) -> str:
        total = sum(self.counts.values())
        lines = [
            f"{name}: cases run {total}, successes {self.counts[OK]}, "
            f"documented errors {self.counts[DOCUMENTED_ERROR]}, crashes {self.counts['crash']}"
        ]
        for error, case in self.crashes:
            lines.append(f"  crash: {error}\n    case: {case}")
        return "\n".join(lines)
