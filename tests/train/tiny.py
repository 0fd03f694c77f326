"""A tiny student/teacher pair with TorchGraph's forward(feeds, capture) signature, and shuffled data."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from autocompress.distill.distiller import Distiller
from autocompress.distill.nodes import DistillTerm


class FeedsMLP(nn.Module):
    def __init__(self, seed: int, dropout: float = 0.0):
        super().__init__()
        torch.manual_seed(seed)
        self.fc1, self.bn, self.fc2 = nn.Linear(4, 8), nn.BatchNorm1d(8), nn.Linear(8, 3)
        self.drop = nn.Dropout(dropout)

    def forward(self, feeds, capture=()):
        hidden = torch.relu(self.bn(self.fc1(feeds["x"])))
        out = {"logits": self.fc2(self.drop(hidden)), "hidden": hidden}
        return {k: v for k, v in out.items() if k == "logits" or k in capture}


class LabelledBatches:
    """Re-iterable (feeds, label) batches from a shuffling DataLoader (order drawn from the global torch RNG)."""

    def __init__(self, n: int = 24, batch_size: int = 4):
        rng = np.random.default_rng(0)
        x = torch.from_numpy(rng.standard_normal((n, 4)).astype(np.float32))
        y = torch.from_numpy(rng.integers(0, 3, n))
        self.loader = DataLoader(TensorDataset(x, y), batch_size=batch_size, shuffle=True)

    def __len__(self):
        return len(self.loader)

    def __iter__(self):
        for x, y in self.loader:
            yield {"x": x.numpy()}, y


def make_pair(dropout: float = 0.0):
    student, teacher = FeedsMLP(1, dropout), FeedsMLP(2)
    distiller = Distiller(student, [teacher], [DistillTerm("l2", ("logits",), ("logits",), 1.0)])
    return student, distiller
