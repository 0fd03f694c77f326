"""Data-parallel training with torch.distributed, started by torchrun (`autocompress compress --nproc N`).

Every rank runs the same program. The user's batch is the *global* batch: each rank trains on its slice along dim 0,
and DistributedDataParallel averages the gradients, so N ranks follow the same SGD trajectory as one process on the
whole batch (up to float summation order). Layers that use batch statistics in training (BatchNorm of a torch
model, dropout masks) see the rank's slice, as in any data-parallel run. Every rank is seeded alike, so shuffling
loaders draw the same global order everywhere.

Rank 0 evaluates, writes checkpoints and save_dir; its metric is broadcast so best-state tracking and early stopping
stay in lockstep, and a resumed run broadcasts rank 0's checkpoint. Every collective has a timeout
(AUTOCOMPRESS_DIST_TIMEOUT seconds, default 1800; it must exceed the longest evaluation, during which the other
ranks wait), so a missing rendezvous or a dead rank ends the job with an error instead of a hang.

Parameter sharding (TrainConfig.sharding_config, FSDP) is refused: evaluation writes the student's full weights
back into the ONNX graph every `eval_iter` steps, so every rank would gather all parameters anyway, and the graph
executor keeps weights and the ONNX names users reference as one module, which FSDP's flat parameters would split.
"""

from __future__ import annotations

import atexit
import datetime
import logging
import os
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from autocompress.errors import AutoCompressError, ConfigError, DataError

log = logging.getLogger(__name__)

TIMEOUT_ENV = "AUTOCOMPRESS_DIST_TIMEOUT"
DEFAULT_TIMEOUT_S = 1800.0
#: Set by torchrun (torch.distributed.run) for each worker process.
LAUNCHER_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK")

T = TypeVar("T")


def launched() -> bool:
    """True in a worker started by torchrun (or anything that sets the same environment)."""
    return all(key in os.environ for key in LAUNCHER_ENV)


def _active() -> bool:
    return dist.is_available() and dist.is_initialized()


def world_size() -> int:
    if _active():
        return dist.get_world_size()
    return int(os.environ.get("WORLD_SIZE", "1")) if launched() else 1


def rank() -> int:
    if _active():
        return dist.get_rank()
    return int(os.environ.get("RANK", "0")) if launched() else 0


def is_primary() -> bool:
    """Whether this process writes outputs (rank 0, or the only process)."""
    return rank() == 0


def barrier() -> None:
    """Wait for every rank (no-op without an initialized process group)."""
    if _active() and dist.get_world_size() > 1:
        _collective("barrier", dist.barrier)


def timeout() -> datetime.timedelta:
    raw = os.environ.get(TIMEOUT_ENV)
    if raw is None:
        return datetime.timedelta(seconds=DEFAULT_TIMEOUT_S)
    try:
        seconds = float(raw)
    except ValueError:
        seconds = -1.0
    if not seconds > 0:
        raise ConfigError(f"{TIMEOUT_ENV}={raw!r}: expected a positive number of seconds")
    return datetime.timedelta(seconds=seconds)


def _collective(what: str, fn, *args, **kwargs):
    """Run a collective; a dead or stuck peer becomes an AutoCompressError naming the cause."""
    try:
        return fn(*args, **kwargs)
    except (RuntimeError, dist.DistError) as exc:
        raise AutoCompressError(
            f"rank {rank()}: {what} across {world_size()} training processes failed ({exc}); another rank crashed or "
            f"did not answer within {timeout().total_seconds():g} s ({TIMEOUT_ENV})"
        ) from exc


def shard_batch(
    feeds: dict[str, torch.Tensor], label: torch.Tensor | None, index: int, count: int
) -> tuple[dict[str, torch.Tensor], torch.Tensor | None]:
    """Slice `index` of `count` equal slices of a global batch along dim 0 (feeds and label alike)."""
    tensors = {**feeds, **({} if label is None else {"label": label})}
    sizes = {name: (t.shape[0] if t.dim() > 0 else None) for name, t in tensors.items()}
    if any(size is None for size in sizes.values()) or len(set(sizes.values())) != 1:
        raise DataError(
            f"data-parallel training splits every input of a batch along dim 0, so all must have the same batch "
            f"size; got dim-0 sizes {sizes} (None: a scalar)"
        )
    size = next(iter(sizes.values()))
    if size % count:
        raise DataError(
            f"the global batch size {size} is not divisible by the number of training processes {count}; "
            f"use a batch size that is a multiple of {count}"
        )
    step = size // count
    sliced = {name: t[index * step : (index + 1) * step] for name, t in tensors.items()}
    shard_label = sliced.pop("label") if label is not None else None
    return sliced, shard_label


@dataclass(frozen=True)
class DistributedContext:
    """This process's place in the training job and the collectives the loop needs."""

    rank: int
    world_size: int
    device: torch.device

    @property
    def primary(self) -> bool:
        return self.rank == 0

    def shard(self, feeds, label):
        return shard_batch(feeds, label, self.rank, self.world_size)

    def wrap(self, loss_module: nn.Module, frozen: list[nn.Module] = ()) -> nn.Module:
        """DDP over the module that runs the student (the loss), leaving frozen modules (teachers) out of syncing."""
        ignored = [
            f"{prefix}.{name}" if prefix else name
            for prefix, module in loss_module.named_modules()
            if any(module is f for f in frozen)
            for name, _ in [*module.named_parameters(), *module.named_buffers()]
        ]
        if ignored:
            DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(loss_module, ignored)
        device_ids = [self.device.index] if self.device.type == "cuda" else None
        # find_unused_parameters: a student graph may hold trainable constants the distilled outputs do not reach.
        return _collective(
            "wrapping the student in DistributedDataParallel",
            DistributedDataParallel,
            loss_module,
            device_ids=device_ids,
            find_unused_parameters=True,
        )

    def mean(self, value: float) -> float:
        tensor = torch.tensor([value], dtype=torch.float64, device=self._comm_device)
        _collective("averaging the loss", dist.all_reduce, tensor)
        return float(tensor.item()) / self.world_size

    def broadcast(self, value: T) -> T:
        """Rank 0's `value` on every rank (any picklable object; rank 0 is the job's own process)."""
        holder = [value if self.primary else None]
        _collective("receiving rank 0's state", dist.broadcast_object_list, holder, src=0, device=self._comm_device)
        return holder[0]

    @property
    def _comm_device(self) -> torch.device:
        return self.device if self.device.type == "cuda" else torch.device("cpu")


def setup(use_fleet: bool, sharding_config: dict[str, Any] | None, device: torch.device) -> DistributedContext | None:
    """Join (or create) the process group when running under torchrun with more than one process; else None."""
    if sharding_config:
        raise ConfigError(
            "TrainConfig.sharding_config (parameter sharding / FSDP) is not supported: the student's full weights are "
            "written back to ONNX at every evaluation; remove it and train data-parallel (use_fleet, torchrun)"
        )
    if not launched() and not _active():
        if use_fleet:
            log.warning(
                "TrainConfig.use_fleet is set but no launcher started this process; training in one process "
                "(start with `autocompress compress --nproc N` or torchrun)"
            )
        return None
    if world_size() == 1:
        return None
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    if not _active():
        _init_process_group("nccl" if device.type == "cuda" else "gloo")
    return DistributedContext(dist.get_rank(), dist.get_world_size(), device)


def _init_process_group(backend: str) -> None:
    wait = timeout()
    where = f"{os.environ.get('MASTER_ADDR', '?')}:{os.environ.get('MASTER_PORT', '?')}"
    try:
        dist.init_process_group(backend, timeout=wait)
    except (ValueError, RuntimeError, dist.DistError) as exc:
        raise AutoCompressError(
            f"rank {os.environ.get('RANK')} of {os.environ.get('WORLD_SIZE')}: torch.distributed rendezvous at "
            f"{where} failed within {wait.total_seconds():g} s ({exc}); start every rank together with "
            f"`autocompress compress --nproc N` or torchrun, or raise {TIMEOUT_ENV}"
        ) from exc
    atexit.register(_destroy)
    log.info("rank %d of %d joined the %s process group at %s", dist.get_rank(), dist.get_world_size(), backend, where)


def _destroy() -> None:
    if _active():
        dist.destroy_process_group()
