"""Whether a rewritten model still computes what the user's model computes: one ONNX Runtime run of each on one
sample feed, their outputs compared by name, shape, dtype and value.

Preparation (graph/prepare.py) checks its passes with it: a simplifier that trusts a wrong declared shape can
rewrite a Reshape so that the model runs but returns another shape, which no structural check notices.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import onnx
import onnxruntime as ort

#: Sizes given to dynamic dims of a random sample: axis 0 (the batch, in most models) gets 1; any other (a sequence
#: length, an image side) gets a size that survives a few stride-2 layers.
_BATCH_SIZE = 1
_OTHER_SIZE = 32
#: Relative tolerance of float outputs (float16 and smaller round more); differences below it times the output's
#: largest magnitude are reordered arithmetic, not a changed model.
_TOLERANCE = 1e-3
_HALF_TOLERANCE = 1e-2


def _dim_size(dim: onnx.TensorShapeProto.Dimension, axis: int, named: dict[str, int]) -> int:
    """A declared dim's size; a dynamic one gets the sample size, the same for every dim of the same name."""
    if dim.HasField("dim_value") and dim.dim_value > 0:
        return dim.dim_value
    size = _BATCH_SIZE if axis == 0 else _OTHER_SIZE
    return named.setdefault(dim.dim_param, size) if dim.dim_param else size


def random_feed(inputs: Sequence[onnx.ValueInfoProto], seed: int = 0) -> dict[str, np.ndarray]:
    """A feed matching the inputs' declared types and shapes, for a model checked without the user's data: floats
    in [0, 1); integers and booleans 1 (a valid token id, an attention mask that attends, a nonzero length)."""
    rng = np.random.default_rng(seed)
    named: dict[str, int] = {}
    feed = {}
    for value in inputs:
        ttype = value.type.tensor_type
        dtype = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(ttype.elem_type))
        shape = [_dim_size(dim, axis, named) for axis, dim in enumerate(ttype.shape.dim)]
        floating = np.issubdtype(dtype, np.floating)
        feed[value.name] = rng.random(shape).astype(dtype) if floating else np.ones(shape, dtype)
    return feed


def run_model(model: onnx.ModelProto, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The model's outputs on `feed`, by name in the graph's order (CPU, the runtime's warnings silenced: a
    declared shape that disagrees with the computed one is what a check looks for, not news)."""
    options = ort.SessionOptions()
    options.log_severity_level = 4
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    names = [output.name for output in session.get_outputs()]
    return {name: np.asarray(value) for name, value in zip(names, session.run(names, dict(feed)))}


def _values_differ(reference: np.ndarray, got: np.ndarray) -> bool:
    """Integers and booleans must be equal; floats within the tolerance of the output's own magnitude."""
    if reference.dtype.kind not in "fc":
        return not np.array_equal(reference, got)
    tolerance = _HALF_TOLERANCE if reference.dtype.itemsize < 4 else _TOLERANCE
    finite = np.abs(reference[np.isfinite(reference)])
    scale = float(finite.max()) if finite.size else 0.0
    return not np.allclose(got, reference, rtol=tolerance, atol=tolerance * max(scale, 1e-6), equal_nan=True)


def output_difference(reference: Mapping[str, np.ndarray], got: Mapping[str, np.ndarray]) -> str | None:
    """None when `got` holds the same outputs as `reference`, else the first difference in words."""
    if list(got) != list(reference):
        return f"its outputs are {list(got)} instead of {list(reference)}"
    for name, expected in reference.items():
        value = got[name]
        if value.shape != expected.shape:
            return f"output {name!r} has shape {list(value.shape)} instead of {list(expected.shape)}"
        if value.dtype != expected.dtype:
            return f"output {name!r} has dtype {value.dtype} instead of {expected.dtype}"
        if _values_differ(expected, value):
            if expected.dtype.kind in "fc":
                gap = float(np.nanmax(np.abs(value.astype(np.float64) - expected.astype(np.float64))))
                return f"output {name!r} differs by up to {gap:.3g}"
            return f"output {name!r} holds other values"
    return None


def difference(
    model: onnx.ModelProto, reference: Mapping[str, np.ndarray], feed: Mapping[str, np.ndarray]
) -> str | None:
    """None when `model` computes `reference` on `feed`, else what differs (a model that no longer runs differs)."""
    try:
        outputs = run_model(model, feed)
    except Exception as exc:  # noqa: BLE001 - the runtime's refusal is the difference
        return f"it no longer runs: {str(exc).strip()}"
    return output_difference(reference, outputs)
