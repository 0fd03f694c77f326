"""EMD (1-D Wasserstein) distance between the outputs of the original and a compressed model.

Used as the metric when the user gives no eval_callback (ACT does the same): 0 means the compressed model's
output distribution matches the original's; lower is better.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from scipy.stats import wasserstein_distance

#: Outputs are subsampled to this many values per batch so the metric stays cheap on dense maps.
MAX_VALUES = 200_000


def _flat(values: np.ndarray) -> np.ndarray:
    flat = np.asarray(values, dtype=np.float64).ravel()
    if flat.size > MAX_VALUES:
        flat = flat[:: int(np.ceil(flat.size / MAX_VALUES))]
    return flat


def emd_distance(reference: Sequence[Sequence[np.ndarray]], candidate: Sequence[Sequence[np.ndarray]]) -> float:
    """Mean over batches and outputs of the Wasserstein distance of value distributions.

    `reference[b][o]` is output o of batch b of the original model; `candidate` has the same structure.
    """
    if len(reference) != len(candidate):
        raise ValueError(f"{len(reference)} reference batches but {len(candidate)} candidate batches")
    distances = []
    for ref_batch, cand_batch in zip(reference, candidate):
        for ref, cand in zip(ref_batch, cand_batch):
            if not np.issubdtype(np.asarray(ref).dtype, np.floating):
                continue
            distances.append(wasserstein_distance(_flat(ref), _flat(cand)))
    return float(np.mean(distances)) if distances else 0.0
