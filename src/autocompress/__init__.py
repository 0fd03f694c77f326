"""autocompress: automatic compression of exported inference models (ONNX, Paddle)."""

import logging

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

# Nothing is printed through logging unless the application configures it.
logging.getLogger(__name__).addHandler(logging.NullHandler())

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
