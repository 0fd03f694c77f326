"""A compression run that the fault-injection test kills with SIGKILL at random moments and restarts.

Prints `ready` once its imports are done, so the test can time its kills from the start of the real work.
"""

from __future__ import annotations

import json
import logging
import os
import sys

import numpy as np

from autocompress import AutoCompression

SCENARIOS = {
    "train": {"Distillation": {}, "TrainConfig": {"train_iter": 60, "eval_iter": 3, "learning_rate": 0.01}},
    "hpo": {"QuantPost": {}, "HyperParameterOptimization": {"max_quant_count": 12, "batch_num": [1, 3]}},
}


def main(scenario: str, model: str, save_dir: str, cache_dir: str) -> None:
    rng = np.random.default_rng(0)
    data = [{"x": rng.standard_normal((4, 3, 16, 16)).astype(np.float32)} for _ in range(3)]
    config = json.loads(json.dumps(SCENARIOS[scenario]))
    config["Global"] = {"cache_dir": cache_dir}
    print("ready", flush=True)
    AutoCompression(model, data, save_dir=save_dir, config=config, eval_dataloader=data).compress()


if __name__ == "__main__":
    main(*sys.argv[1:5])
    # skip the interpreter's teardown (seconds with torch and ONNX Runtime loaded): kills should land in the work
    logging.shutdown()
    os._exit(0)
