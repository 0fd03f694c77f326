"""The `Global` section: what a YAML needs besides strategies to drive the CLI alone."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from autocompress.config.base import Section
from autocompress.runtime.latency import resolve_threads, thread_setting

#: Batches read ahead of the one being used, in a background thread (0: read in the calling thread).
DEFAULT_PREFETCH_BATCHES = 2


class DataSection(Section):
    """A dataset on disk for the CLI: a folder of images or of .npy arrays (one sample per file).

    Images are resized to `size` (H, W), scaled to [0, 1], normalised with mean/std per channel and laid out as
    NCHW float32. `.npy` files hold one sample each (without batch dimension) and are used as they are.
    """

    path: str
    format: Literal["images", "npy"] = "images"
    input_name: str | None = None
    batch_size: int = Field(1, ge=1)
    size: list[int] | None = None
    mean: list[float] = Field(default_factory=lambda: [0.0, 0.0, 0.0])
    std: list[float] = Field(default_factory=lambda: [1.0, 1.0, 1.0])
    bgr: bool = False
    limit: int | None = Field(None, ge=1)


#: Where training can run: torch on the CPU, or on CUDA ('gpu' is PaddleSlim's name for it).
TRAINING_DEVICES = ("cpu", "gpu", "cuda")


class GlobalConfig(Section):
    model_dir: str | None = None
    model_filename: str | None = None
    params_filename: str | None = None
    input_shapes: dict[str, list[int]] | list[int] | None = None
    deploy_hardware: str = "cpu"
    devices: str = "cpu"
    save_dir: str | None = None
    #: True if a larger eval_callback metric is better (accuracy, IoU); False for losses/errors.
    higher_is_better: bool = True
    train_data: DataSection | None = None
    eval_data: DataSection | None = None
    #: Wanted speedup for the automatic strategy choice: ACT's fraction 1 - latency/fp32_latency (0.5), or a
    #: ratio written "2x". Only used when no strategy section is given.
    target_speedup: float | str | None = None
    #: Largest relative metric drop the automatic choice accepts (0.01 = 1%; for EMD, 1% of the outputs' spread).
    auto_max_relative_drop: float = Field(0.01, ge=0.0)
    #: Seconds the automatic choice may take in all (no strategy section), or, with explicit strategies, the whole
    #: compress() run: searches, training, calibration and per-op sensitivity stop at its end with what they have.
    #: Unset: no bound for explicit strategies; for the automatic choice 600 s for a model of at most 1 GMAC on 2 or
    #: more cores, proportional to the MACs above 1 GMAC, doubled on 1 core (strategy/targets.py).
    time_budget: float | None = Field(None, gt=0)
    #: Threads ORT uses when measuring latency (the seed's tables report 1 thread): a positive int, or "all" for
    #: every core this process may run on (resolved_latency_threads()).
    latency_threads: int | Literal["all"] = 1
    #: Where calibration statistics are cached across runs (default: $AUTOCOMPRESS_CACHE_DIR or
    #: ~/.cache/autocompress); a rerun with other PTQ settings on the same model and data reuses them.
    cache_dir: str | None = None
    #: Batches of train_dataloader / eval_dataloader read ahead in a background thread while ONNX Runtime or torch
    #: compute (PaddleSlim's num_workers, as threads); 0 reads them in the calling thread. Memory: prefetch + 2 batches.
    prefetch_batches: int = Field(DEFAULT_PREFETCH_BATCHES, ge=0)
    #: Progress bars on stderr: true shows them, false hides them, auto shows them when stderr is a terminal.
    progress: bool | Literal["auto"] = "auto"

    @field_validator("devices")
    @classmethod
    def _known_device(cls, value: str) -> str:
        name = value.strip().lower()
        if name not in TRAINING_DEVICES:
            raise ValueError(
                f"unknown training device; allowed values are {list(TRAINING_DEVICES)} (pick a GPU with "
                "CUDA_VISIBLE_DEVICES)"
            )
        return name

    @field_validator("latency_threads", mode="before")
    @classmethod
    def _thread_setting(cls, value: object) -> int | str:
        return thread_setting(value)

    def resolved_latency_threads(self) -> int:
        """latency_threads as a count: "all" stays in the config as written, and is this machine's core count."""
        return resolve_threads(self.latency_threads)

    def resolved_cache_dir(self) -> str:
        import os  # noqa: PLC0415

        return self.cache_dir or os.environ.get("AUTOCOMPRESS_CACHE_DIR") or os.path.expanduser("~/.cache/autocompress")
