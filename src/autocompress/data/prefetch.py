"""Numbered reading of a user's batch iterator, in the calling thread or a bounded number of batches ahead.

Reading ahead in a background thread lets a slow loader (image decoding, disk) work while ONNX Runtime or torch
compute on the previous batch; both release the GIL. The queue bounds how many batches are alive at once, a
failure keeps the index of the batch that raised it, and the user's iterator is closed when reading stops early.
"""

from __future__ import annotations

import itertools
import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

#: How often a reader blocked on a full queue checks whether the consumer has gone away (seconds).
_POLL_S = 0.05


class LoaderError(Exception):
    """The user's iterator raised `error` while producing batch `index`."""

    def __init__(self, index: int, error: Exception):
        super().__init__(f"batch {index}: {error}")
        self.index = index
        self.error = error


@dataclass(frozen=True)
class _End:
    error: BaseException | None = None


def _close(iterator: Iterator[Any]) -> None:
    close = getattr(iterator, "close", None)
    if callable(close):
        close()


def _raise(index: int, error: BaseException) -> None:
    if isinstance(error, Exception):
        raise LoaderError(index, error) from error
    raise error


def numbered(iterator: Iterator[Any]) -> Iterator[tuple[int, Any]]:
    """(index, batch) pairs read in the calling thread."""
    try:
        for index in itertools.count():
            try:
                batch = next(iterator)
            except StopIteration:
                return
            except Exception as exc:  # noqa: BLE001 - any error of the user's loader is reported with its batch index
                _raise(index, exc)
            yield index, batch
    finally:
        _close(iterator)


def read_ahead(iterator: Iterator[Any], depth: int) -> Iterator[tuple[int, Any]]:
    """(index, batch) pairs read by a background thread; at most depth + 2 batches are alive at any time (the
    queue, the one the reader is handing over, the one the caller holds)."""
    if depth < 1:
        raise ValueError(f"depth must be >= 1, got {depth}")
    slots: queue.Queue[tuple[int, Any]] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def offer(item: tuple[int, Any]) -> bool:
        while not stop.is_set():
            try:
                slots.put(item, timeout=_POLL_S)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for index in itertools.count():
                if stop.is_set():
                    return
                try:
                    batch = next(iterator)
                except StopIteration:
                    offer((index, _End()))
                    return
                except BaseException as exc:  # noqa: BLE001 - handed to the consumer, which raises it
                    offer((index, _End(exc)))
                    return
                if not offer((index, batch)):
                    return
        finally:
            _close(iterator)

    reader = threading.Thread(target=produce, name="autocompress-read-ahead", daemon=True)
    reader.start()
    try:
        while True:
            index, item = slots.get()
            if isinstance(item, _End):
                if item.error is not None:
                    _raise(index, item.error)
                return
            yield index, item
            del item  # the caller's reference is the only one left
    finally:
        stop.set()
        reader.join()
