"""Data faults met in the middle of a whole run: a loader that raises, a shape that changes. Each is a DataError
naming the batch, and save_dir keeps the previous result; dims the model declares dynamic may vary."""

from __future__ import annotations

import numpy as np
import pytest

from autocompress import AutoCompression
from autocompress.errors import DataError

PTQ = {"QuantPost": {"batch_nums": 4}}


class _Loader:
    """A re-iterable loader whose batch `fail_at` raises OSError or has another shape."""

    def __init__(self, fail_at: int, fault: str):
        rng = np.random.default_rng(0)
        self.batches = [{"x": rng.standard_normal((2, 3, 16, 16)).astype(np.float32)} for _ in range(4)]
        self.fail_at, self.fault = fail_at, fault

    def __iter__(self):
        for index, batch in enumerate(self.batches):
            if index == self.fail_at and self.fault == "raises":
                raise OSError("network share went away")
            if index == self.fail_at and self.fault == "reshapes":
                batch = {"x": batch["x"][:, :, :8, :8]}
            yield batch


@pytest.mark.parametrize(
    "fault, words",
    [
        ("raises", "raised OSError at batch 2: network share went away"),
        ("reshapes", "batch 2, input 'x' has shape [2, 3, 8, 8]; dim 2 must be 16"),
    ],
)
@pytest.mark.parametrize("loader", ["train_dataloader", "eval_dataloader"])
def test_a_fault_mid_stream_names_the_batch_and_keeps_the_previous_result(
    tiny_cnn, tiny_batches, previous, fault, words, loader
):
    save_dir, before = previous
    bad = _Loader(fail_at=2, fault=fault)
    train, evaluation = (bad, tiny_batches) if loader == "train_dataloader" else (tiny_batches, bad)
    with pytest.raises(DataError) as info:
        AutoCompression(tiny_cnn, train, save_dir=save_dir, config=PTQ, eval_dataloader=evaluation).compress()
    assert f"{loader} {words}" in str(info.value)
    assert {p.name: p.read_bytes() for p in save_dir.iterdir()} == before


def test_a_batch_size_that_changes_mid_stream_is_accepted_where_the_model_allows_it(tiny_cnn, tmp_path):
    """tiny_cnn declares its batch dim dynamic: batches of 4, 1 and 3 calibrate and evaluate like any others."""
    rng = np.random.default_rng(0)
    batches = [{"x": rng.standard_normal((n, 3, 16, 16)).astype(np.float32)} for n in (4, 1, 3)]
    result = AutoCompression(
        tiny_cnn, batches, save_dir=tmp_path / "out", config=PTQ, eval_dataloader=batches
    ).compress()
    assert result.report["data"] == {"train_batches_skipped_nonfinite": [], "eval_batches_skipped_nonfinite": []}
    assert result.model_path.is_file()
