"""Fine-tuning of compressed models: the loop (train_loop), optimizer/LR builders, AMP, checkpoints and resume."""

from autocompress.train.loop import TrainResult, check_origin_metric, train_loop

__all__ = ["TrainResult", "check_origin_metric", "train_loop"]
