"""Parameter and MAC counts of a model over 2 GB come from its weightless stub: no weight is read or copied."""

import numpy as np
from onnx import TensorProto, helper, numpy_helper

from autocompress.graph import index as index_module
from autocompress.graph import large
from autocompress.prune.stats import count_params_and_macs


def _model():
    rng = np.random.default_rng(0)
    inits = [
        numpy_helper.from_array(rng.standard_normal((16, 3, 3, 3)).astype(np.float32), "conv_w"),
        numpy_helper.from_array(np.array([0, -1], np.int64), "flat"),
        numpy_helper.from_array(rng.standard_normal((16 * 6 * 6, 5)).astype(np.float32), "fc_w"),
    ]
    nodes = [
        helper.make_node("Conv", ["x", "conv_w"], ["c"]),
        helper.make_node("Reshape", ["c", "flat"], ["f"]),
        helper.make_node("MatMul", ["f", "fc_w"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)


def test_counts_of_a_large_model_read_no_weight(monkeypatch):
    model = _model()
    expected = count_params_and_macs(model, {"x": [1, 3, 8, 8]})
    assert expected.params == 16 * 27 + 576 * 5 and expected.macs == 576 * 27 + 576 * 5

    read = []
    real = index_module.numpy_helper.to_array

    def recording(tensor, *args, **kwargs):
        read.append(tensor.name)
        return real(tensor, *args, **kwargs)

    monkeypatch.setattr(index_module.numpy_helper, "to_array", recording)
    monkeypatch.setattr(large, "PROTOBUF_LIMIT", 1000)
    assert count_params_and_macs(model, {"x": [1, 3, 8, 8]}) == expected
    assert "flat" in read and not {"conv_w", "fc_w"} & set(read)  # the small shape constant still folds
