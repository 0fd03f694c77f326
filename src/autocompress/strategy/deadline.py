"""The instant a run must end by, as a `time.perf_counter()` value carried on the CompressionContext.

Global.time_budget is a bound on the work itself, not only on the estimates made before it starts: the loops
where time goes (the PTQ search's trials, training steps, calibration batches, per-op sensitivity) check the
deadline and stop with what they have. Those loops live below `strategy/` and take the deadline as a plain float
(None: no bound); this module turns budgets into deadlines and words how a run was cut short.
"""

from __future__ import annotations

import math
import time


def deadline_after(seconds: float | None, started: float | None = None) -> float | None:
    """The deadline `seconds` after `started` (now when None); None without a budget."""
    if seconds is None:
        return None
    return (time.perf_counter() if started is None else started) + seconds


def earliest(*deadlines: float | None) -> float | None:
    """The earliest of the given deadlines, ignoring None: a sub-stage never outlives the run around it."""
    bounded = [d for d in deadlines if d is not None]
    return min(bounded) if bounded else None


def seconds_left(deadline: float | None) -> float:
    """Seconds until the deadline (0 once past, infinity without one)."""
    if deadline is None:
        return math.inf
    return max(0.0, deadline - time.perf_counter())


def is_past(deadline: float | None) -> bool:
    return deadline is not None and time.perf_counter() >= deadline


def stopped_note(done: int, total: int, unit: str) -> str:
    """How a loop cut short by the deadline reads in a stage record."""
    return f"stopped at the time budget after {done} of {total} {unit}"
