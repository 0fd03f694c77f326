"""Trains a tiny student (no batch-statistics layers) with train_loop; run alone or under torchrun.

Each process saves {rank, world_size, state, evaluations, first_step, steps} to OUT_DIR/rank<R>.pt.
KILL_RANK / KILL_AT_STEP make that rank exit abruptly after that step (a crashed worker).
"""

import os
import sys
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).parent))
from tiny import FeedsMLP, LabelledBatches

from autocompress.config.train import TrainConfig
from autocompress.distill.distiller import Distiller
from autocompress.distill.nodes import DistillTerm
from autocompress.train import distributed
from autocompress.train.loop import train_loop

#: Metric by evaluated step: the best state (step 4) is not the last, so every rank must follow rank 0's choice.
METRICS = {2: 1.0, 4: 3.0, 6: 2.0}
GLOBAL_BATCH = 8


class PlainMLP(nn.Module):
    """Records the inputs of its first forward, to check which slice of the global batch a rank trained on."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(1)
        self.fc1, self.fc2 = nn.Linear(4, 16), nn.Linear(16, 3)
        self.first_input = None

    def forward(self, feeds, capture=()):
        if self.first_input is None:
            self.first_input = feeds["x"].detach().clone()
        return {"logits": self.fc2(torch.tanh(self.fc1(feeds["x"])))}


def train(work_dir: Path, batch_size: int = GLOBAL_BATCH) -> dict:
    torch.set_num_threads(1)
    student, teacher = PlainMLP(), FeedsMLP(2)
    distiller = Distiller(student, [teacher], [DistillTerm("l2", ("logits",), ("logits",), 1.0)])
    config = TrainConfig(
        epochs=2,
        eval_iter=2,
        logging_iter=1,
        seed=3,
        learning_rate=0.1,
        optimizer_builder={"optimizer": {"type": "Momentum"}},
    )
    seen = {"evaluations": 0, "step": 0, "first_step": None}
    kill_rank, kill_at = int(os.environ.get("KILL_RANK", "-1")), int(os.environ.get("KILL_AT_STEP", "0"))

    def on_step(step: int) -> None:
        seen["step"] = step
        seen["first_step"] = seen["first_step"] or step
        if step == kill_at and distributed.rank() == kill_rank:
            os._exit(3)

    def evaluate() -> float:
        seen["evaluations"] += 1
        return METRICS[seen["step"]]

    result = train_loop(
        student,
        distiller,
        LabelledBatches(n=24, batch_size=batch_size),
        config,
        evaluate,
        True,
        work_dir,
        on_step=on_step,
    )
    return {
        "rank": distributed.rank(),
        "world_size": result.world_size,
        "state": student.state_dict(),
        "evaluations": seen["evaluations"],
        "first_step": seen["first_step"],
        "steps": result.steps,
        "best_step": result.best_step,
        "first_input": student.first_input,
    }


def main(out: Path, batch_size: int = GLOBAL_BATCH) -> None:
    outcome = train(out / "work", batch_size)
    torch.save(outcome, out / f"rank{outcome['rank']}.pt")


if __name__ == "__main__":
    main(Path(sys.argv[1]), int(sys.argv[2]) if len(sys.argv) > 2 else GLOBAL_BATCH)
