import numpy as np
import pytest

from autocompress.errors import DataError
from examples.common.loader import BatchLoader


def test_loader_is_reiterable_and_covers_every_sample_once():
    data = np.arange(10, dtype=np.float32).reshape(10, 1)
    loader = BatchLoader(data, batch_size=4, input_name="image")
    first = [b["image"] for b in loader]
    second = [b["image"] for b in loader]
    assert len(loader) == 3 and [len(b) for b in first] == [4, 4, 2]
    assert np.array_equal(np.concatenate(first), data)
    assert all(np.array_equal(a, b) for a, b in zip(first, second))


def test_drop_last_and_invalid_arguments():
    assert [len(b["x"]) for b in BatchLoader(np.zeros((10, 1)), 4, drop_last=True)] == [4, 4]
    with pytest.raises(DataError):
        BatchLoader(np.zeros((3, 1)), 0)
    with pytest.raises(DataError):
        BatchLoader(np.zeros((0, 1)), 2)
