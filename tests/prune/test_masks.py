import numpy as np
import torch
from torch.nn.utils import parametrize

from autocompress.prune.masks import MaskModule


def test_mask_module_keeps_masked_weights_zero_through_training():
    layer = torch.nn.Linear(4, 2)
    mask = np.array([[1, 0, 1, 0], [0, 1, 0, 1]], dtype=np.float32)
    parametrize.register_parametrization(layer, "weight", MaskModule(mask))
    opt = torch.optim.SGD(layer.parameters(), lr=0.5)
    for _ in range(3):
        opt.zero_grad()
        layer(torch.randn(8, 4)).pow(2).sum().backward()
        opt.step()
    assert (layer.weight.detach().numpy()[mask == 0] == 0).all()
    assert (layer.weight.detach().numpy()[mask == 1] != 0).all()
    assert any(name.endswith("mask") for name in layer.state_dict())  # saved with checkpoints
