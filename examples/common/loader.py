"""A re-iterable batch loader in the ``reader_wrapper`` style the compression API consumes."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from autocompress.errors import DataError


class BatchLoader:
    """Yields ``{input_name: batch}`` dicts over an array, again on every ``iter()``.

    A generator would be exhausted after one epoch; training and calibration iterate several times.
    """

    def __init__(self, inputs: np.ndarray, batch_size: int, input_name: str = "x", drop_last: bool = False):
        if batch_size < 1:
            raise DataError(f"batch_size must be a positive integer, got {batch_size}")
        if len(inputs) == 0:
            raise DataError("BatchLoader needs at least one sample, got an empty array")
        self.inputs = inputs
        self.batch_size = batch_size
        self.input_name = input_name
        self.drop_last = drop_last

    def __len__(self) -> int:
        full, rest = divmod(len(self.inputs), self.batch_size)
        return full if self.drop_last or rest == 0 else full + 1

    def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
        for batch_index in range(len(self)):
            start = batch_index * self.batch_size
            yield {self.input_name: self.inputs[start : start + self.batch_size]}
