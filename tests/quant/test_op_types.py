import pytest

from autocompress.errors import ConfigError
from autocompress.quant.op_types import DEFAULT_QUANTIZE_OP_TYPES, QUANTIZABLE_OP_TYPES, normalize_op_types


def test_paddle_names_map_to_onnx_types():
    assert normalize_op_types(["conv2d", "depthwise_conv2d", "mul"]) == ("Conv", "MatMul", "Gemm")
    assert normalize_op_types(["conv2d_transpose", "elementwise_add", "pool2d"]) == (
        "ConvTranspose",
        "Add",
        "MaxPool",
        "AveragePool",
        "GlobalAveragePool",
    )


def test_onnx_names_and_defaults():
    assert normalize_op_types(None) == DEFAULT_QUANTIZE_OP_TYPES
    assert normalize_op_types(["Conv", "conv2d"]) == ("Conv",)
    assert normalize_op_types("Gemm") == ("Gemm",)
    assert set(normalize_op_types(["conv2d"], is_full_quantize=True)) == set(QUANTIZABLE_OP_TYPES)


def test_unknown_name_lists_known_names():
    with pytest.raises(ConfigError) as info:
        normalize_op_types(["conv2d", "softmax_with_cross_entropy"])
    message = str(info.value)
    assert "softmax_with_cross_entropy" in message and "depthwise_conv2d" in message and "Conv" in message
