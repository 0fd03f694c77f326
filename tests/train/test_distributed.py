"""Data-parallel training: N ranks on CPU (gloo) match one process on the same global batch; failures end the job.

Ranks are forked processes given torchrun's environment (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_*), so they take
the same path as workers started by torchrun without paying the interpreter start-up for each.
"""

import json
import multiprocessing
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from autocompress.cli import build_parser, launch_command
from autocompress.errors import AutoCompressError, ConfigError, DataError
from autocompress.train import distributed
from autocompress.train.distributed import shard_batch

from ..conftest import export_tiny_cnn
from . import distributed_worker as worker

#: Relative tolerance between the final weights of 1 and 2 ranks: gradients are averaged in a different float order.
RTOL = 1e-5
TIMEOUT_S = 15


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rank_main(rank: int, world: int, port: int, out: Path, env: dict) -> None:
    os.environ.update(
        {
            "RANK": str(rank),
            "LOCAL_RANK": str(rank),
            "WORLD_SIZE": str(world),
            "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": str(port),
            distributed.TIMEOUT_ENV: str(TIMEOUT_S),
            **env,
        }
    )
    worker.main(out)


def _launch(out: Path, world: int = 2, **env) -> list[int]:
    """Run `world` ranks to completion; their exit codes."""
    out.mkdir(parents=True, exist_ok=True)
    ctx = multiprocessing.get_context("fork")
    port = _free_port()
    procs = [ctx.Process(target=_rank_main, args=(r, world, port, out, env)) for r in range(world)]
    for p in procs:
        p.start()
    deadline = time.monotonic() + 3 * TIMEOUT_S
    for p in procs:
        p.join(max(deadline - time.monotonic(), 0.1))
    alive = [p for p in procs if p.is_alive()]
    for p in alive:
        p.kill()
        p.join()
    assert not alive, "a rank hung past the collective timeout"
    return [p.exitcode for p in procs]


@pytest.fixture(scope="module")
def single(tmp_path_factory):
    out = tmp_path_factory.mktemp("single")
    return worker.train(out / "work")


def _assert_close(a: dict, b: dict) -> None:
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=RTOL, atol=1e-7, msg=f"{name} differs")


def test_two_ranks_match_one_process_and_only_rank0_evaluates(tmp_path, single):
    assert _launch(tmp_path) == [0, 0]
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(2)]
    for outcome in ranks:
        assert outcome["world_size"] == 2 and outcome["steps"] == single["steps"] == 6
        assert outcome["best_step"] == single["best_step"] == 4  # rank 1 follows rank 0's broadcast metric
        _assert_close(outcome["state"], single["state"])
    assert [o["evaluations"] for o in ranks] == [3, 0]
    # Each rank trained on its half of the global batch, not on the whole of it.
    halves = [o["first_input"] for o in ranks]
    assert [h.shape[0] for h in halves] == [worker.GLOBAL_BATCH // 2] * 2
    torch.testing.assert_close(torch.cat(halves), single["first_input"], rtol=0, atol=0)
    assert (tmp_path / "work" / "train_checkpoint.pt").exists()


def test_crashed_rank_fails_the_job_and_the_rerun_resumes_from_rank0_checkpoint(tmp_path, single):
    start = time.monotonic()
    codes = _launch(tmp_path, KILL_RANK="1", KILL_AT_STEP="5")
    assert codes[1] == 3 and codes[0] != 0  # the survivor raised instead of waiting forever
    assert time.monotonic() - start < 2 * TIMEOUT_S
    assert not (tmp_path / "rank0.pt").exists()
    assert torch.load(tmp_path / "work" / "train_checkpoint.pt")["progress"]["step"] == 4

    assert _launch(tmp_path) == [0, 0]
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(2)]
    for outcome in ranks:
        assert outcome["first_step"] == 5  # both ranks continued from the step-4 checkpoint
        _assert_close(outcome["state"], single["state"])


def test_global_batch_is_split_along_dim0_and_must_divide():
    feeds = {"x": torch.arange(12.0).reshape(6, 2)}
    label = torch.arange(6)
    shard, shard_label = shard_batch(feeds, label, 1, 3)
    assert shard["x"].tolist() == [[4.0, 5.0], [6.0, 7.0]] and shard_label.tolist() == [2, 3]
    with pytest.raises(DataError, match="not divisible by the number of training processes 4"):
        shard_batch(feeds, label, 0, 4)
    with pytest.raises(DataError, match="same batch size"):
        shard_batch(feeds, torch.arange(5), 0, 2)


def test_missing_rendezvous_is_a_clear_error_within_the_timeout(monkeypatch):
    env = {
        "RANK": "1",
        "LOCAL_RANK": "1",
        "WORLD_SIZE": "2",
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": str(_free_port()),
        distributed.TIMEOUT_ENV: "2",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    start = time.monotonic()
    with pytest.raises(AutoCompressError, match="rendezvous at 127.0.0.1:.* failed within 2 s"):
        distributed.setup(False, None, torch.device("cpu"))
    assert time.monotonic() - start < 20


def test_settings_without_a_launcher(monkeypatch, caplog):
    for key in distributed.LAUNCHER_ENV:
        monkeypatch.delenv(key, raising=False)
    assert distributed.setup(True, None, torch.device("cpu")) is None
    assert "no launcher started this process" in caplog.text
    assert distributed.is_primary() and distributed.world_size() == 1
    with pytest.raises(ConfigError, match="sharding_config"):
        distributed.setup(False, {"sharding_degree": 2}, torch.device("cpu"))
    monkeypatch.setenv(distributed.TIMEOUT_ENV, "soon")
    with pytest.raises(ConfigError, match="positive number of seconds"):
        distributed.timeout()


def test_nproc_relaunches_compress_under_torchrun():
    args = build_parser().parse_args(
        ["--log-level", "WARNING", "compress", "--config", "c.yaml", "--save-dir", "out", "--nproc", "2"]
    )
    cmd = launch_command(args)
    assert cmd[1:6] == ["-m", "torch.distributed.run", "--nproc_per_node", "2", "--standalone"]
    assert cmd[6:] == [
        "-m",
        "autocompress.cli",
        "--log-level",
        "WARNING",
        "compress",
        "--config",
        "c.yaml",
        "--save-dir",
        "out",
    ]
    multi = build_parser().parse_args(
        [
            "compress",
            "--config",
            "c.yaml",
            "--nproc",
            "4",
            "--nnodes",
            "2",
            "--node-rank",
            "1",
            "--master-addr",
            "10.0.0.1",
        ]
    )
    assert launch_command(multi)[5:13] == [
        "--nnodes",
        "2",
        "--node_rank",
        "1",
        "--master_addr",
        "10.0.0.1",
        "--master_port",
        "29500",
    ]
    with pytest.raises(AutoCompressError, match="--master-addr"):
        launch_command(build_parser().parse_args(["compress", "--config", "c.yaml", "--nnodes", "2"]))


@pytest.mark.slow
def test_cli_compress_with_two_processes_writes_save_dir_once(tmp_path):
    model_dir, data = tmp_path / "model", tmp_path / "data"
    model_dir.mkdir()
    data.mkdir()
    export_tiny_cnn(model_dir / "tiny.onnx")
    rng = np.random.default_rng(0)
    for i in range(8):
        np.save(data / f"{i:03d}.npy", rng.standard_normal((3, 16, 16)).astype(np.float32))
    config = tmp_path / "cfg.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "Distillation": {},
                "TrainConfig": {"train_iter": 4, "eval_iter": 2, "use_fleet": True},
                "Global": {
                    "model_dir": str(model_dir),
                    "save_dir": str(tmp_path / "out"),
                    "train_data": {"path": str(data), "format": "npy", "batch_size": 4},
                },
            }
        )
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2] / "src"), distributed.TIMEOUT_ENV: "60"}
    done = subprocess.run(
        [sys.executable, "-m", "autocompress.cli", "compress", "--config", str(config), "--nproc", "2"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("saved to") == 1
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["timeline"][0]["info"]["world_size"] == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cfg.yaml", "data", "model", "out"]
