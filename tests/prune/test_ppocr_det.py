"""Channel pruning on a real detector: PP-OCRv4 det (DBNet; weights stored in Constant nodes)."""

from pathlib import Path

import numpy as np
import onnx
import pytest

from autocompress.prune.channel import prune_channels
from tests.prune.prune_models import run

rapidocr = pytest.importorskip("rapidocr_onnxruntime")
DET = Path(rapidocr.__file__).parent / "models" / "ch_PP-OCRv4_det_infer.onnx"
SHAPES = {"x": [1, 3, 640, 640]}


def test_pruning_30_percent_shrinks_ppocr_det_and_keeps_its_interface():
    model = onnx.load(str(DET))
    pruned, report = prune_channels(model, 0.3, input_shapes=SHAPES)
    onnx.checker.check_model(pruned)
    assert report.prunable_groups > 30 and len(report.pruned) > 20
    assert [u.weights for u in report.unprunable] == [["conv2d_transpose_1.w_0"]]  # feeds the output map
    assert report.params_after < 0.6 * report.params_before
    assert report.macs_after < 0.6 * report.macs_before
    assert [i.name for i in pruned.graph.input] == ["x"]
    dims = pruned.graph.input[0].type.tensor_type.shape.dim
    assert dims[2].dim_param  # dynamic height is preserved
    x = np.random.default_rng(0).uniform(0, 1, (1, 3, 640, 640)).astype(np.float32)
    assert run(pruned, x).shape == run(model, x).shape == (1, 1, 640, 640)
    # a smaller input still runs: no spatial size was baked into the graph
    assert run(pruned, x[:, :, :320, :480]).shape == (1, 1, 320, 480)
