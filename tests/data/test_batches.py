import threading
import time

import numpy as np
import onnx
import pytest
import torch

from autocompress.data.batches import BatchAdapter, input_specs
from autocompress.errors import DataError


@pytest.fixture
def specs(tiny_cnn):
    return input_specs(onnx.load(str(tiny_cnn)))


def test_dicts_tuples_tensors_and_callables(specs):
    x = np.zeros((2, 3, 16, 16), np.float32)
    label = np.array([1, 2])
    for loader in ([{"x": x}], [(x,)], [{"x": torch.from_numpy(x), "label": label}], lambda: iter([(x, label)])):
        feeds, lab = next(iter(BatchAdapter(loader, specs)))
        assert feeds["x"].shape == (2, 3, 16, 16)
    assert next(iter(BatchAdapter([(x, label)], specs)))[1].tolist() == [1, 2]


@pytest.mark.parametrize(
    "batch, words",
    [
        ({"image": np.zeros((1, 3, 16, 16), np.float32)}, ["'image'", "model's inputs are ['x']"]),
        ({"x": np.zeros((3, 16, 16), np.float32)}, ["rank 3", "batch dimension"]),
        ({"x": np.zeros((1, 1, 16, 16), np.float32)}, ["dim 1 must be 3"]),
        ({"x": np.zeros((1, 3, 16, 16), np.int32)}, ["dtype int32", "float32"]),
        ({"x": np.full((1, 3, 16, 16), np.nan, np.float32)}, ["NaN/Inf"]),
        ("text", ["yield dicts"]),
    ],
)
def test_bad_batches_are_named(specs, batch, words):
    with pytest.raises(DataError) as info:
        list(BatchAdapter([batch], specs))
    for word in words:
        assert word in str(info.value)


def test_empty_and_one_shot_loaders(specs):
    with pytest.raises(DataError, match="train_dataloader yielded no batches"):
        list(BatchAdapter([], specs))
    with pytest.raises(DataError, match="one-shot iterator"):
        BatchAdapter((b for b in [{"x": np.zeros((1, 3, 16, 16), np.float32)}]), specs)


def test_float64_is_cast(specs):
    feeds, _ = next(iter(BatchAdapter([{"x": np.zeros((1, 3, 16, 16))}], specs)))
    assert feeds["x"].dtype == np.float32


def test_a_few_nonfinite_batches_are_skipped_and_counted(specs):
    good = {"x": np.zeros((1, 3, 16, 16), np.float32)}
    bad = {"x": np.full((1, 3, 16, 16), np.inf, np.float32)}
    adapter = BatchAdapter([good] * 19 + [bad], specs, max_nonfinite_fraction=0.05)
    assert len(list(adapter)) == 19 and adapter.skipped == {19}
    with pytest.raises(DataError, match="more than the allowed"):
        list(BatchAdapter([good] * 9 + [bad], specs, max_nonfinite_fraction=0.05))


def test_a_loader_that_raises_mid_epoch_is_named(specs):
    def loader():
        yield {"x": np.zeros((1, 3, 16, 16), np.float32)}
        raise OSError("disk went away")

    with pytest.raises(DataError, match="raised OSError at batch 1: disk went away"):
        list(BatchAdapter(loader, specs))


def test_shapes_that_change_mid_stream_are_an_error(specs):
    batches = [{"x": np.zeros((1, 3, 16, 16), np.float32)}, {"x": np.zeros((1, 3, 8, 8), np.float32)}]
    with pytest.raises(DataError, match="batch 1.*dim 2 must be 16"):
        list(BatchAdapter(batches, specs))


class CountingLoader:
    """A re-iterable whose generators record how many batches were read and whether they were closed."""

    def __init__(self, count: int, fail_at: int | None = None):
        self.count, self.fail_at = count, fail_at
        self.read: list[int] = []
        self.closed = 0

    def __iter__(self):
        try:
            for i in range(self.count):
                if i == self.fail_at:
                    raise KeyError(f"sample {i} is corrupt")
                self.read.append(i)
                yield {"x": np.full((1, 3, 16, 16), i, np.float32)}
        finally:
            self.closed += 1


@pytest.mark.parametrize("prefetch", [0, 1, 3])
def test_read_ahead_keeps_the_order_and_closes_the_loader(specs, prefetch):
    loader = CountingLoader(20)
    adapter = BatchAdapter(loader, specs, prefetch=prefetch)
    assert [int(feeds["x"][0, 0, 0, 0]) for feeds, _ in adapter] == list(range(20))
    assert [int(f["x"].flat[0]) for f in adapter.feeds()] == list(range(20))  # re-iterable
    assert adapter.first()[0]["x"].flat[0] == 0
    assert loader.closed == 3  # the early stop of first() closed the generator too, before first() returned
    assert not [t for t in threading.enumerate() if t.name == "autocompress-read-ahead"]  # none left behind


@pytest.mark.parametrize("prefetch", [0, 2])
def test_a_failing_loader_is_named_with_its_batch_index_when_read_ahead(specs, prefetch):
    loader = CountingLoader(10, fail_at=4)
    with pytest.raises(DataError, match="raised KeyError at batch 4: 'sample 4 is corrupt'") as caught:
        list(BatchAdapter(loader, specs, prefetch=prefetch))
    assert isinstance(caught.value.__cause__, KeyError)
    assert loader.read == [0, 1, 2, 3] and loader.closed == 1


def test_read_ahead_holds_a_bounded_number_of_batches(specs):
    loader = CountingLoader(1000)
    batches = iter(BatchAdapter(loader, specs, prefetch=3))
    next(batches)
    deadline = time.monotonic() + 10
    while len(loader.read) < 5 and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.2)  # room to run further ahead if the queue were unbounded
    # the one held here, 3 queued, 1 in the reader's hand waiting for a free slot
    assert len(loader.read) == 5
    batches.close()
    assert loader.closed == 1 and len(loader.read) == 5


def test_a_negative_prefetch_is_refused(specs):
    with pytest.raises(DataError, match="prefetch must be >= 0"):
        BatchAdapter([], specs, prefetch=-1)
