"""EMD (1-D Wasserstein) distance between the outputs of the original and a compressed model.

Used as the metric when the user gives no eval_callback (ACT does the same): 0 means the compressed model's
output distribution matches the original's; lower is better. The metric is the mean, over batches and float
outputs, of the distance of one batch's output values; it is computed batch by batch (output_distances), so the
outputs of an eval set never have to be held at once.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.stats import wasserstein_distance

#: Outputs are subsampled to this many values per batch so the metric stays cheap on dense maps.
MAX_VALUES = 200_000


def subsample(values: np.ndarray) -> np.ndarray | None:
    """The float64 values EMD compares for one output of one batch; None for a non-float output (not compared)."""
    values = np.asarray(values)
    if not np.issubdtype(values.dtype, np.floating):
        return None
    flat = values.ravel()
    if flat.size > MAX_VALUES:
        flat = flat[:: int(np.ceil(flat.size / MAX_VALUES))]
    return flat.astype(np.float64)


def output_distances(reference: Sequence[np.ndarray | None], candidate: Sequence[np.ndarray]) -> list[float]:
    """Distance of each float output of one batch; `reference` holds subsample() of the original's outputs."""
    return [
        float(wasserstein_distance(ref, subsample(cand))) for ref, cand in zip(reference, candidate) if ref is not None
    ]


def emd_distance(reference: Sequence[Sequence[np.ndarray]], candidate: Sequence[Sequence[np.ndarray]]) -> float:
    """Mean over batches and outputs of the Wasserstein distance of value distributions.

    `reference[b][o]` is output o of batch b of the original model; `candidate` has the same structure.
    """
    if len(reference) != len(candidate):
        raise ValueError(f"{len(reference)} reference batches but {len(candidate)} candidate batches")
    distances = []
    for ref_batch, cand_batch in zip(reference, candidate):
        distances.extend(output_distances([subsample(r) for r in ref_batch], cand_batch))
    return float(np.mean(distances)) if distances else 0.0
