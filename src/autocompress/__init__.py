"""autocompress: automatic compression of exported inference models (ONNX, Paddle)."""

from autocompress.api import AutoCompression, CompressResult
from autocompress.config import (
    ASPPrune,
    ChannelPrune,
    Distillation,
    HyperParameterOptimization,
    MultiTeacherDistillation,
    QuantAware,
    QuantPost,
    TrainConfig,
    TransformerPrune,
    UnstructurePrune,
    load_config,
)
from autocompress.errors import AutoCompressError, ConfigError, DataError, ModelLoadError

__version__ = "0.1.0"

__all__ = [
    "ASPPrune",
    "AutoCompression",
    "AutoCompressError",
    "ChannelPrune",
    "CompressResult",
    "ConfigError",
    "DataError",
    "Distillation",
    "HyperParameterOptimization",
    "ModelLoadError",
    "MultiTeacherDistillation",
    "QuantAware",
    "QuantPost",
    "TrainConfig",
    "TransformerPrune",
    "UnstructurePrune",
    "load_config",
]
