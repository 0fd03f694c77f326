"""The identity of a compression run: what a work folder's checkpoints must match to be resumed.

An interrupted run leaves checkpoints in `<save_dir>.work`; a rerun resumes them only when it compresses the same
model (the bytes of its files: the .onnx file and its external data, or the Paddle model and params), with the
same effective config (strategies, TrainConfig and the Global keys that change the result) and the same input
signature. Any other run starts over, so it never trains on top of another model's weights.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx.external_data_helper import uses_external_data

from autocompress.config.loader import CompressConfig
from autocompress.data.batches import InputSpec
from autocompress.graph.load import model_tensors

#: Global keys that change what a run computes (paths, data sources and thread counts do not).
RESULT_GLOBAL_KEYS = ("deploy_hardware", "higher_is_better", "target_speedup", "auto_max_relative_drop")


def input_files(model_path: Path, params_path: Path | None, external: bool) -> list[Path]:
    """The files holding the model: the model file, Paddle params, and external data when `external`."""
    files = [model_path] + ([params_path] if params_path is not None else [])
    return files + (external_data_files(model_path) if external else [])


def external_data_files(model_path: Path) -> list[Path]:
    """The external data files an ONNX file refers to (read without loading the data)."""
    header = onnx.load(str(model_path), load_external_data=False)
    locations = set()
    for tensor in model_tensors(header):
        if uses_external_data(tensor):
            locations.add({entry.key: entry.value for entry in tensor.external_data}.get("location", ""))
    return [model_path.parent / location for location in sorted(locations) if location]


def content_hash(files: Sequence[Path]) -> str:
    """SHA-256 over the files' bytes, each streamed from disk (a model over 2 GB is never held in memory)."""
    combined = hashlib.sha256()
    for path in files:
        with open(path, "rb") as f:
            combined.update(hashlib.file_digest(f, "sha256").digest())
    return combined.hexdigest()


def run_identity(files: Sequence[Path], config: CompressConfig, specs: Sequence[InputSpec]) -> dict[str, Any]:
    """Plain data naming the run: model content hash, effective config, input names, dtypes and shapes."""
    sections = {key: value for key, value in config.to_dict().items() if key != "Global"}
    sections["Global"] = {key: getattr(config.global_, key) for key in RESULT_GLOBAL_KEYS}
    return {
        "model_sha256": content_hash(files),
        "config": json.loads(json.dumps(sections, sort_keys=True, default=str)),
        "inputs": [{"name": s.name, "dtype": str(np.dtype(s.dtype)), "shape": list(s.shape)} for s in specs],
    }
