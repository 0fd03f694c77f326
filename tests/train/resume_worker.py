"""Trains the tiny pair; exits abruptly after step KILL_AT_STEP when that variable is set (a crash)."""

import os
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from tiny import LabelledBatches, make_pair

from autocompress.config.train import TrainConfig
from autocompress.train.loop import train_loop


def train_tiny(work_dir: Path, kill_at: int = 0, pair=make_pair) -> dict:
    """The final student state, step count and history of a fixed small run (single-threaded for bitwise results)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    student, distiller = pair(dropout=0.2)
    config = TrainConfig(
        epochs=3,
        eval_iter=4,
        logging_iter=2,
        seed=7,
        learning_rate={"type": "StepDecay", "learning_rate": 0.05, "step_size": 5, "gamma": 0.5},
        optimizer_builder={"optimizer": {"type": "Momentum"}, "weight_decay": 1e-3},
    )

    def on_step(step: int) -> None:
        if step == kill_at:
            os._exit(3)

    try:
        result = train_loop(
            student,
            distiller,
            LabelledBatches(),
            config,
            lambda: float(student.fc2.weight.detach().sum()),
            True,
            work_dir,
            on_step=on_step,
        )
    finally:
        torch.set_num_threads(threads)
    return {"state": student.state_dict(), "steps": result.steps, "history": result.history}


if __name__ == "__main__":
    torch.save(train_tiny(Path(sys.argv[1]), int(os.environ.get("KILL_AT_STEP", "0"))), sys.argv[2])
