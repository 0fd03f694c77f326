"""The user's data is read lazily: emptiness by one batch, no counting pass, endless loaders with train_iter."""

import itertools
import math

import numpy as np
import onnx
import pytest

from autocompress import AutoCompression
from autocompress.config import TrainConfig
from autocompress.data.batches import BatchAdapter, input_specs
from autocompress.errors import ConfigError, DataError
from autocompress.train import loop

#: Reads after which the endless loaders below fail: a caller reading this far would read forever.
GUARD = 2000


def _metric(predictor) -> float:
    return 1.0


class Endless:
    """itertools.cycle over a few batches, new on every iteration; counts what was read and fails past GUARD."""

    def __init__(self, batches):
        self.batches, self.read = batches, 0

    def __call__(self):
        for batch in itertools.cycle(self.batches):
            self.read += 1
            if self.read > GUARD:
                raise RuntimeError(f"read past {GUARD} batches of an endless loader")
            yield batch


class Passes:
    """A finite re-iterable without len(); counts the passes that reached its end and the batches read."""

    def __init__(self, batches, repeat: int):
        self.batches, self.repeat = batches, repeat
        self.finished = self.read = 0

    def __iter__(self):
        for batch in itertools.islice(itertools.cycle(self.batches), len(self.batches) * self.repeat):
            self.read += 1
            yield batch
        self.finished += 1


QUANT_AWARE = {"QuantAware": {"float_stem": False}, "Distillation": {}}


@pytest.mark.parametrize("strategies", [{"Distillation": {}}, QUANT_AWARE])
def test_an_endless_loader_trains_when_train_iter_bounds_it(tiny_cnn, tiny_batches, tmp_path, strategies):
    loader = Endless(tiny_batches)
    config = {**strategies, "TrainConfig": {"train_iter": 3, "eval_iter": 3}}
    result = AutoCompression(tiny_cnn, loader, save_dir=tmp_path / "out", config=config, eval_callback=_metric)
    report = result.compress().report
    assert report["timeline"][-1]["info"]["steps"] == 3
    assert loader.read < 100  # calibration, the first batch and 3 steps, with the batches read ahead


def test_compress_reads_no_extra_pass_over_the_training_data(tiny_cnn, tiny_batches, tmp_path):
    loader = Passes(tiny_batches, repeat=20)
    config = {"Distillation": {}, "TrainConfig": {"train_iter": 2, "eval_iter": 2}}
    AutoCompression(tiny_cnn, loader, save_dir=tmp_path / "out", config=config, eval_callback=_metric).compress()
    assert loader.finished == 0 and loader.read < len(tiny_batches) * 20


@pytest.mark.parametrize("which", ["train_dataloader", "eval_dataloader"])
def test_an_empty_loader_is_named(tiny_cnn, tiny_batches, tmp_path, which):
    data = {"train_dataloader": tiny_batches, "eval_dataloader": tiny_batches, which: []}
    compression = AutoCompression(
        tiny_cnn, data["train_dataloader"], save_dir=tmp_path / "out", eval_dataloader=data["eval_dataloader"]
    )
    with pytest.raises(DataError, match=f"^{which} yielded no batches; it must yield at least one$"):
        compression.compress()
    assert not (tmp_path / "out").exists()


def test_epochs_with_an_endless_loader_asks_for_train_iter(tiny_cnn, tiny_batches, tmp_path, monkeypatch):
    monkeypatch.setattr(loop, "MAX_COUNTED_BATCHES", 50)
    config = {"Distillation": {}, "TrainConfig": {"epochs": 1}}
    loader = Endless(tiny_batches)
    compression = AutoCompression(tiny_cnn, loader, save_dir=tmp_path / "out", config=config, eval_callback=_metric)
    with pytest.raises(ConfigError, match="epochs = 1 .* more than 50 batches .*set TrainConfig.train_iter"):
        compression.compress()
    assert loader.read < 100


def test_training_length_reads_only_what_it_depends_on(tiny_cnn, tiny_batches):
    specs = input_specs(onnx.load(str(tiny_cnn)))
    endless = Endless(tiny_batches)
    adapter = BatchAdapter(endless, specs, prefetch=0)
    assert loop.training_steps(TrainConfig(train_iter=7), adapter) == 7 and endless.read == 0
    assert loop.training_steps(TrainConfig(), adapter) == loop.DEFAULT_MAX_STEPS
    assert endless.read == math.ceil(loop.DEFAULT_MAX_STEPS / loop.DEFAULT_EPOCHS)
    finite = Passes(tiny_batches, repeat=2)
    assert loop.training_steps(TrainConfig(epochs=2), BatchAdapter(finite, specs)) == 12 and finite.finished == 1


def test_len_is_the_loaders_own_and_never_a_read(tiny_cnn, tiny_batches):
    specs = input_specs(onnx.load(str(tiny_cnn)))
    assert len(BatchAdapter(tiny_batches, specs)) == 3 and len(BatchAdapter(tiny_batches, specs, limit=2)) == 2
    endless = Endless(tiny_batches)
    adapter = BatchAdapter(endless, specs)
    with pytest.raises(TypeError, match="has no len"):
        len(adapter)
    assert adapter and endless.read == 0
    empty = BatchAdapter([], specs)
    assert empty  # whether a loader yields anything is learnt by reading it, never from its truth value
    with pytest.raises(DataError, match="yielded no batches"):
        empty.first()
    assert np.array_equal(adapter.first()[0]["x"], tiny_batches[0]["x"])
