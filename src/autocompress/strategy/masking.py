"""Holding weight masks during fine-tuning: every node input that reads a masked weight gets a MaskModule."""

from __future__ import annotations

import zlib

import numpy as np
import onnx
import torch

from autocompress.graph.index import GraphIndex
from autocompress.graph.large import serialized_parts
from autocompress.prune.masks import MaskModule, apply_masks
from autocompress.runtime.torch_graph import TorchGraph


class MaskedWeights:
    """The masks of one stage, applied to the TorchGraph while it trains and to the ONNX model at export."""

    def __init__(self, model: onnx.ModelProto, masks: dict[str, np.ndarray]):
        self.model = model
        self.masks = dict(masks)
        index = GraphIndex(model)
        self.readers = {
            name: [
                (node.name, i)
                for node in index.consumers.get(name, [])
                for i, inp in enumerate(node.input)
                if inp == name
            ]
            for name in masks
        }
        self.modules: dict[tuple[str, int], MaskModule] = {}

    def attach(self, graph: TorchGraph) -> None:
        for name, mask in self.masks.items():
            for node_name, i in self.readers[name]:
                module = MaskModule(mask)
                self.modules[(node_name, i)] = module
                graph.set_input_transform(node_name, i, module)

    def update(self, masks: dict[str, np.ndarray]) -> None:
        """New masks (GMP raises the ratio during training); the modules are updated in place."""
        self.masks.update(masks)
        for name, mask in masks.items():
            for key in self.readers[name]:
                self.modules[key].mask.copy_(torch.as_tensor(mask, dtype=torch.float32))

    def export(self, graph: TorchGraph) -> onnx.ModelProto:
        """The trained weights with the masks multiplied in: a dense ONNX model whose pruned entries are zeros."""
        return apply_masks(graph.write_back(self.model), self.masks)


def compressed_size_mb(model: onnx.ModelProto) -> float:
    """Size after zlib compression: what sparse (zero-heavy) weights cost on disk or over the wire.

    Compressed one part at a time, so a model over 2 GB is measured too and no serialized copy of it is held.
    """
    compressor = zlib.compressobj(6)
    size = sum(len(compressor.compress(part.SerializeToString())) for part in serialized_parts(model))
    return (size + len(compressor.flush())) / 1e6
