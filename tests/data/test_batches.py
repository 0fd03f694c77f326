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
    with pytest.raises(DataError, match="yielded no usable batch"):
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
