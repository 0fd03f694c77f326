"""Typed configuration: one class per strategy key of the PaddleSlim schema, plus TrainConfig and Global."""

from autocompress.config.global_section import DataSection, GlobalConfig
from autocompress.config.loader import CompressConfig, load_config, save_config
from autocompress.config.strategies import (
    ASPPrune,
    ChannelPrune,
    Distillation,
    GmpConfig,
    HyperParameterOptimization,
    MultiTeacherDistillation,
    QuantAware,
    QuantPost,
    TransformerPrune,
    UnstructurePrune,
)
from autocompress.config.train import TrainConfig

__all__ = [
    "ASPPrune",
    "ChannelPrune",
    "CompressConfig",
    "DataSection",
    "Distillation",
    "GlobalConfig",
    "GmpConfig",
    "HyperParameterOptimization",
    "MultiTeacherDistillation",
    "QuantAware",
    "QuantPost",
    "TrainConfig",
    "TransformerPrune",
    "UnstructurePrune",
    "load_config",
    "save_config",
]
