"""ONNX Runtime's symbolic shape inference behind one adapter, checked against the installed onnxruntime.

ORT's inference follows the Shape -> Gather -> Concat -> Reshape chains of dynamic-batch exports, which onnx's own
inference leaves rank-less. Its public `SymbolicShapeInference.infer_shapes` saves `sym_shape_infer_temp.onnx`
into the working directory when a shape stays unknown (and changing the directory around it would be process-wide,
unsafe with threads), so its steps are run here; they are private members of the class, checked before use. When
the installed onnxruntime lacks one, onnx's shape inference is used and one log line says why.
"""

from __future__ import annotations

import functools
import logging

import onnx
import onnxruntime

try:
    from onnxruntime.tools.symbolic_shape_infer import SymbolicShapeInference, get_opset
except ImportError:  # the tool moved or was removed: onnx's inference does the work
    SymbolicShapeInference = get_opset = None

log = logging.getLogger(__name__)

#: The private methods of SymbolicShapeInference run here, in this order.
REQUIRED_METHODS = ("_preprocess", "_infer_impl", "_update_output_from_vi")
#: The instance attributes read between the steps: whether to run again, and the inferred model.
REQUIRED_STATE = ("run_", "out_mp_")
#: ORT's symbolic inference refuses older opsets.
_MIN_OPSET = 7


@functools.lru_cache(maxsize=1)
def unsupported_reason() -> str | None:
    """Why ORT's symbolic inference cannot be used with the installed onnxruntime, or None; logged once."""
    if SymbolicShapeInference is None:
        reason = "onnxruntime.tools.symbolic_shape_infer cannot be imported"
    else:
        missing = [name for name in REQUIRED_METHODS if not callable(getattr(SymbolicShapeInference, name, None))]
        reason = f"SymbolicShapeInference lacks {missing}" if missing else None
    if reason:
        log.warning(
            "onnxruntime %s: %s; onnx's shape inference is used instead (dynamic reshapes may stay rank-less)",
            onnxruntime.__version__,
            reason,
        )
    return reason


def symbolic_inferred(model: onnx.ModelProto) -> onnx.ModelProto | None:
    """ORT's symbolic shape inference of `model`, run step by step so that nothing is written to disk; None when
    it is unavailable, refuses the opset, or leaves some shape unknown."""
    if unsupported_reason() is not None or (get_opset(model) or 0) < _MIN_OPSET:
        return None
    inference = SymbolicShapeInference(2**31 - 1, auto_merge=True, guess_output_rank=False, verbose=0)
    inference._preprocess(model)
    missing = [name for name in REQUIRED_STATE if not hasattr(inference, name)]
    if missing:
        log.warning(
            "onnxruntime %s: SymbolicShapeInference sets no %s; onnx's shape inference is used",
            onnxruntime.__version__,
            missing,
        )
        return None
    complete = False
    while inference.run_:
        complete = inference._infer_impl()
    inference._update_output_from_vi()
    return inference.out_mp_ if complete else None


def inferred_shapes(model: onnx.ModelProto) -> onnx.ModelProto:
    """`model` with shapes inferred: by ORT's symbolic inference where it completes, else by onnx's (with data
    propagation), else `model` itself; both are best effort and callers handle unknown shapes."""
    try:
        inferred = symbolic_inferred(model)
        if inferred is not None:
            return inferred
    except Exception as exc:  # noqa: BLE001 - an ORT internal failing on an unusual graph
        log.debug("symbolic shape inference failed (%s); using onnx shape inference", exc)
    try:
        return onnx.shape_inference.infer_shapes(model, data_prop=True)
    except Exception as exc:  # noqa: BLE001 - shape inference is a best effort
        log.warning("shape inference failed (%s); the analysis continues without shapes", exc)
        return model
