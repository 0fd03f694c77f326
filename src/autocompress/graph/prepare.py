"""Preparation passes run on every loaded model before any strategy: graph in, graph out.

upgrade an old opset and IR version -> name nodes -> fix input shapes -> lift Constant weights to initializers -> simplify
-> infer shapes. Lifting and simplifying are checked (graph/equivalence.py): one that changes the model's outputs is
dropped.
"""

from __future__ import annotations

import copy
import logging
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence

import numpy as np
import onnx
import onnxslim
from onnx.external_data_helper import uses_external_data

from autocompress.errors import ConfigError, ModelLoadError
from autocompress.graph.equivalence import difference, random_feed, run_model
from autocompress.graph.external import is_on_disk, mapped
from autocompress.graph.fold_constants import fold_constants
from autocompress.graph.large import WeightsLayout, saved_with_external_data, weightless, weights_layout
from autocompress.graph.load import model_tensors
from autocompress.graph.naming import carry_names, name_nodes

log = logging.getLogger(__name__)

#: Kept out of simplification: BatchNormalization stays a separate node so training updates its statistics
#: and ChannelPrune's bn_scale criterion can read it; ONNX Runtime fuses it at inference anyway.
_SKIPPED_FUSIONS = ["FusionConvBN", "FusionConvTransposeBN"]


def graph_inputs(model: onnx.ModelProto) -> list[onnx.ValueInfoProto]:
    inits = {t.name for t in model.graph.initializer}
    return [i for i in model.graph.input if i.name not in inits]


def fix_input_shapes(
    model: onnx.ModelProto, input_shapes: Mapping[str, Sequence[int]] | Sequence[int] | None
) -> onnx.ModelProto:
    """Fix dynamic input dims; -1 (or None) keeps a dim dynamic (usually the batch)."""
    if input_shapes is None:
        return model
    inputs = graph_inputs(model)
    names = [i.name for i in inputs]
    if not isinstance(input_shapes, Mapping):
        if len(inputs) != 1:
            raise ConfigError(f"input_shapes as a list needs a single-input model; this one has inputs {names}")
        input_shapes = {names[0]: list(input_shapes)}
    for name, shape in input_shapes.items():
        if name not in names:
            raise ConfigError(f"input_shapes names input {name!r}, but the model's inputs are {names}")
        value = next(i for i in inputs if i.name == name)
        dims = value.type.tensor_type.shape.dim
        if len(dims) != len(shape):
            raise ConfigError(
                f"input_shapes[{name!r}] = {list(shape)} has rank {len(shape)}; the model's input has rank {len(dims)}"
            )
        for dim, size in zip(dims, shape):
            if size is None or int(size) < 0:
                if not dim.HasField("dim_param") and dim.dim_value <= 0:
                    dim.dim_param = "batch" if dim is dims[0] else f"{name}_dyn"
                continue
            if dim.HasField("dim_value") and dim.dim_value > 0 and dim.dim_value != int(size):
                raise ConfigError(
                    f"input_shapes[{name!r}] sets a dim to {size}, but the model fixes it to {dim.dim_value}"
                )
            dim.ClearField("dim_param")
            dim.dim_value = int(size)
    return model


def lift_constants(model: onnx.ModelProto) -> onnx.ModelProto:
    """Turn tensor-valued Constant nodes into initializers (paddle2onnx keeps every weight in Constants).

    Trainable weights must be initializers so the torch executor makes them parameters and the QDQ writer and
    pruner can rewrite them. Outputs keep their names.
    """
    graph = model.graph
    keep = []
    lifted = 0
    for node in graph.node:
        if node.op_type == "Constant" and len(node.attribute) == 1 and node.attribute[0].name == "value":
            tensor = copy.deepcopy(node.attribute[0].t)
            tensor.name = node.output[0]
            graph.initializer.append(tensor)
            lifted += 1
        else:
            keep.append(node)
    if lifted:
        del graph.node[:]
        graph.node.extend(keep)
        log.debug("lifted %d Constant nodes to initializers", lifted)
    return model


def simplify(
    model: onnx.ModelProto, fold_batch_norm: bool = False, layout: WeightsLayout | None = None
) -> onnx.ModelProto:
    """Constant folding and redundant-op elimination with onnxslim; if it fails, a copy with only its constants
    folded (graph/fold_constants.py).

    fold_batch_norm=True also folds BatchNormalization into the preceding Conv, which quantization needs (a
    QuantizeLinear between Conv and BN would stop ORT from fusing the int8 kernel); the output keeps the BN's name,
    the folded Conv and its weight the Conv's (see _restore_weight_names), and the BN's node name stays an alias of
    the Conv (graph/naming.py). EXTERNAL models (`layout`, decided here if not given) are left as they are: onnxslim
    serializes the model and would hold several copies of it.
    """
    if (layout or weights_layout(model)) is WeightsLayout.EXTERNAL:
        log.warning("the model is over protobuf's 2 GB limit; onnxslim simplification (and BN folding) is skipped")
        return model
    try:
        skip = [] if fold_batch_norm else _SKIPPED_FUSIONS
        slim = onnxslim.slim(copy.deepcopy(model), skip_fusion_patterns=skip or None)
    except Exception as exc:  # noqa: BLE001 - a simplifier bug must not stop compression
        log.warning("onnxslim could not simplify the model (%s); continuing with its constants folded only", exc)
        return fold_constants(copy.deepcopy(model))
    if slim is None:
        return model
    slim = carry_names(model, slim)  # onnxslim renames the nodes it fuses and drops node metadata
    return _restore_weight_names(model, slim) if fold_batch_norm else slim


def _restore_weight_names(before: onnx.ModelProto, after: onnx.ModelProto) -> onnx.ModelProto:
    """onnxslim names a BN-folded Conv's weight and bias after the BN's output; give them the Conv's own names
    back, the ones a user reads in the original model and writes in skip_tensor_list or prune_params_name."""
    producer = {out: node for node in before.graph.node for out in node.output}
    old_names = {t.name for t in after.graph.initializer}
    uses = Counter(name for node in after.graph.node for name in node.input)
    renames: dict[str, str] = {}
    for node in after.graph.node:
        bn = producer.get(node.output[0]) if node.op_type in ("Conv", "ConvTranspose") else None
        conv = producer.get(bn.input[0]) if bn is not None and bn.op_type == "BatchNormalization" else None
        if conv is None or conv.op_type != node.op_type:
            continue
        for i in range(1, min(len(conv.input), len(node.input))):
            new, old = node.input[i], conv.input[i]
            if old and new in old_names and old not in old_names and uses[new] == 1 and old not in renames.values():
                renames[new] = old
    for tensor in after.graph.initializer:
        tensor.name = renames.get(tensor.name, tensor.name)
    for node in after.graph.node:
        node.input[:] = [renames.get(name, name) for name in node.input]
    return after


def _infer_large(model: onnx.ModelProto) -> onnx.ModelProto:
    """Shape inference on the weightless stub copy, its results written into `model` (no copy of the weights)."""
    inferred = onnx.shape_inference.infer_shapes(weightless(model), data_prop=True)
    for name in ("node", "value_info", "output"):  # node carries what was inferred inside If/Loop bodies
        field = getattr(model.graph, name)
        del field[:]
        field.extend(getattr(inferred.graph, name))
    return model


def infer_shapes(model: onnx.ModelProto, layout: WeightsLayout | None = None) -> onnx.ModelProto:
    try:
        if (layout or weights_layout(model)) is WeightsLayout.EXTERNAL:
            return _infer_large(model)
        return onnx.shape_inference.infer_shapes(model, data_prop=True)
    except Exception as exc:  # noqa: BLE001 - shape inference is a best effort: a failure keeps the exported shapes
        log.warning("shape inference failed (%s); shapes stay as exported", exc)
        return model


def check_tensor_data(model: onnx.ModelProto) -> None:
    """Every tensor's data must match its dtype and shape.

    onnx.checker does not verify this, and onnx's C++ shape inference (run by the simplifier) can crash the
    process on a tensor whose dims are negative or disagree with its data.
    """
    for tensor in model_tensors(model):
        if is_on_disk(tensor):
            mapped(tensor)  # checks its type, length and file bounds without reading it
            continue
        if uses_external_data(tensor):
            # numpy_helper would read it relative to the working directory.
            raise ModelLoadError(
                f"tensor {tensor.name!r} still points to external data; load the model with load_model"
            )
        if any(d < 0 for d in tensor.dims):
            raise ModelLoadError(f"tensor {tensor.name!r} has negative dims {list(tensor.dims)}")
        try:
            onnx.numpy_helper.to_array(tensor)
        except Exception as exc:  # noqa: BLE001 - onnx raises several types for data that disagrees with its dims
            raise ModelLoadError(
                f"tensor {tensor.name!r} (dtype {tensor.data_type}, dims {list(tensor.dims)}): its data does not match "
                f"its dtype and shape: {exc}"
            ) from None


#: Window geometry that ONNX requires to be >= 1; onnx.checker lets 0 through, and a zero stride makes onnx's C++
#: shape inference divide by zero and kill the process (SIGFPE).
_POSITIVE_ATTRIBUTES = ("strides", "dilations", "kernel_shape")


def _graph_nodes(graph: onnx.GraphProto | onnx.FunctionProto) -> Iterator[onnx.NodeProto]:
    for node in graph.node:
        yield node
        for attr in node.attribute:
            for subgraph in [*([attr.g] if attr.HasField("g") else []), *attr.graphs]:
                yield from _graph_nodes(subgraph)


def check_window_attributes(model: onnx.ModelProto) -> None:
    graphs = [model.graph, *model.functions]
    for node in (n for g in graphs for n in _graph_nodes(g)):
        for attr in node.attribute:
            if attr.name not in _POSITIVE_ATTRIBUTES:
                continue
            values = list(attr.ints) if attr.type == onnx.AttributeProto.INTS else [attr.i]
            if any(v < 1 for v in values):
                raise ModelLoadError(
                    f"node {node.name or node.op_type!r}: {attr.name} = {values}; every value must be >= 1"
                )


def check_structure(model: onnx.ModelProto, layout: WeightsLayout | None = None) -> None:
    """onnx.checker on the graph, for a model of any size (`layout`: its weights_layout, decided here if not given)."""
    if (layout or weights_layout(model)) is WeightsLayout.INLINE:
        onnx.checker.check_model(model, full_check=False)
        return
    with saved_with_external_data(model, with_weights=False) as path:  # the checker reads a large model by path
        onnx.checker.check_model(str(path), full_check=False)


def check_model(model: onnx.ModelProto, layout: WeightsLayout | None = None) -> None:
    try:
        check_structure(model, layout)
    except Exception as exc:  # noqa: BLE001 - onnx.checker raises ValidationError and C++ errors of several types
        raise ModelLoadError(f"the model fails onnx.checker: {exc}") from None
    check_tensor_data(model)
    check_window_attributes(model)


#: The oldest opset the passes take: the QDQ writer's per-channel DequantizeLinear needs 13, and every pass then sees
#: one form of the ops whose attributes became inputs (Squeeze, Unsqueeze, Split, ReduceSum).
MIN_OPSET = 13
#: From IR version 4 on, initializers need not be graph inputs; the passes add and remove initializers freely.
_INITIALIZERS_APART_IR = 4


def default_opset(model: onnx.ModelProto) -> int | None:
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)


def _ops_without_schema(model: onnx.ModelProto, opset: int) -> list[str]:
    """Default-domain op types of the model that `opset` does not define (experimental ops such as ImageScaler)."""
    missing = set()
    for node in model.graph.node:
        if node.domain in ("", "ai.onnx") and not onnx.defs.has(node.op_type, opset):
            missing.add(node.op_type)
    return sorted(missing)


def upgrade_opset(model: onnx.ModelProto, layout: WeightsLayout | None = None) -> onnx.ModelProto:
    """The model converted to MIN_OPSET by onnx's version converter when it is older; a model the converter cannot
    upgrade is refused here, before any pass has changed it. EXTERNAL models are left as they are (the converter
    takes a serialized model)."""
    version = default_opset(model)
    if version is None or version >= MIN_OPSET:
        return model
    if (layout or weights_layout(model)) is WeightsLayout.EXTERNAL:
        log.warning("the model uses opset %d and is over 2 GB; it is not converted to opset %d", version, MIN_OPSET)
        return model
    try:
        upgraded = onnx.version_converter.convert_version(model, MIN_OPSET)
    except Exception as exc:  # noqa: BLE001 - the converter raises bare RuntimeErrors for ops it cannot adapt
        removed = _ops_without_schema(model, MIN_OPSET)
        reason = f"ops {removed} no longer exist in opset {MIN_OPSET}" if removed else str(exc)
        raise ModelLoadError(
            f"the model uses opset {version}; autocompress needs opset >= {MIN_OPSET} and onnx's version converter "
            f"cannot upgrade it ({reason}). Export the model with opset {MIN_OPSET} or newer"
        ) from None
    log.info("converted the model from opset %d to opset %d", version, MIN_OPSET)
    return upgraded


def upgrade_ir(model: onnx.ModelProto) -> onnx.ModelProto:
    """Raise the IR version to one that allows initializers apart from the graph inputs and fits the opsets.

    Before IR 4 every initializer had to be listed as a graph input, and ONNX Runtime still treats those inputs as
    constants; they are dropped from the inputs, so the model computes the same and later passes may add or remove
    initializers without breaking the rule.
    """
    if model.ir_version >= _INITIALIZERS_APART_IR:
        return model
    initializers = {t.name for t in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in initializers]
    del model.graph.input[:]
    model.graph.input.extend(inputs)
    needed = onnx.helper.find_min_ir_version_for(list(model.opset_import), ignore_unknown=True)
    model.ir_version = max(_INITIALIZERS_APART_IR, needed)
    return model


def input_signature(
    model: onnx.ModelProto, input_shapes: Mapping[str, Sequence[int]] | Sequence[int] | None = None
) -> onnx.ModelProto:
    """A model holding only `model`'s graph inputs, `input_shapes` applied: what data for the prepared model looks
    like, known before preparation and without copying a weight."""
    shell = onnx.ModelProto()
    shell.graph.input.extend(graph_inputs(model))
    return fix_input_shapes(shell, input_shapes)


#: A preparation pass that may be dropped for a model: its name in the log, and the pass.
_Pass = tuple[str, Callable[[onnx.ModelProto], onnx.ModelProto]]


def _required(
    model: onnx.ModelProto, input_shapes: Mapping[str, Sequence[int]] | Sequence[int] | None, layout: WeightsLayout
) -> onnx.ModelProto:
    """The passes every later step relies on (opset >= MIN_OPSET, unique node names, fixed input shapes)."""
    return fix_input_shapes(name_nodes(upgrade_ir(upgrade_opset(model, layout))), input_shapes)


def _optional(layout: WeightsLayout) -> list[_Pass]:
    """The passes that only tidy the graph, in order; one that changes the model's outputs is left out. (Shape
    inference, run after them, only annotates.)"""
    return [
        ("constants to initializers", lift_constants),
        ("onnxslim simplification", lambda model: simplify(model, layout=layout)),
    ]


def _apply(model: onnx.ModelProto, passes: Sequence[_Pass]) -> onnx.ModelProto:
    for _, run in passes:
        model = run(model)
    return model


def _replay(
    base: onnx.ModelProto, passes: Sequence[_Pass], reference: Mapping[str, np.ndarray], feed: Mapping[str, np.ndarray]
) -> onnx.ModelProto:
    """The passes again, each checked on its own: one whose result computes other outputs is dropped."""
    model = base
    for name, run in passes:
        candidate = run(copy.deepcopy(model))
        changed = difference(candidate, reference, feed)
        if changed is None:
            model = candidate
        else:
            log.warning(
                "preparation pass %r would change what the model computes (%s); it is skipped for this model",
                name,
                changed,
            )
    return model


def simplify_for_quantization(model: onnx.ModelProto, feed: Mapping[str, np.ndarray]) -> onnx.ModelProto:
    """simplify(fold_batch_norm=True), kept only when the result computes what `model` does on `feed`: onnxslim
    trusts declared output shapes and rewrites a Reshape to a wrong one (a recognizer declaring [1, seqlen] for
    its [T, 1, C] output); the model is then quantized as it is, with its BatchNormalization unfolded."""
    if weights_layout(model) is WeightsLayout.EXTERNAL:
        return simplify(model, fold_batch_norm=True)  # left as it is; see simplify
    try:
        reference = run_model(model, feed)
    except Exception as exc:  # noqa: BLE001 - a model ONNX Runtime cannot run on the sample is simplified unchecked
        log.info("simplification is not checked: the model does not run on the sample (%s)", exc)
        return simplify(model, fold_batch_norm=True)
    simplified = simplify(model, fold_batch_norm=True)
    changed = difference(simplified, reference, feed)
    if changed is None:
        return simplified
    log.warning(
        "simplification before quantization would change what the model computes (%s); the model is quantized "
        "without it",
        changed,
    )
    return model


def _checked(
    original: onnx.ModelProto,
    input_shapes: Mapping[str, Sequence[int]] | Sequence[int] | None,
    sample_feed: Mapping[str, np.ndarray] | None,
) -> onnx.ModelProto:
    """The prepared copy of `original`, whose outputs on `sample_feed` (else random data matching the inputs) are
    those of the model before the optional passes. Costs one run of each; a pass is looked for only on a mismatch.
    A pass that grows the model past protobuf's 2 GB limit cannot be run from bytes and so is dropped as well."""
    layout, passes = WeightsLayout.INLINE, _optional(WeightsLayout.INLINE)
    base = _required(copy.deepcopy(original), input_shapes, layout)
    try:
        feed = dict(sample_feed) if sample_feed is not None else random_feed(graph_inputs(base))
        reference = run_model(base, feed)
    except Exception as exc:  # noqa: BLE001 - a model ONNX Runtime cannot run on such a sample is prepared unchecked
        log.info("preparation is not checked: the model does not run on a sample feed (%s)", exc)
        return _apply(base, passes)
    prepared = _apply(base, passes)  # `base` is consumed: passes rewrite in place
    if difference(prepared, reference, feed) is None:
        return prepared
    del prepared
    return _replay(_required(copy.deepcopy(original), input_shapes, layout), passes, reference, feed)


def prepare_model(
    model: onnx.ModelProto,
    input_shapes: Mapping[str, Sequence[int]] | Sequence[int] | None = None,
    sample_feed: Mapping[str, np.ndarray] | None = None,
) -> onnx.ModelProto:
    """All preparation passes on a copy of `model`. Preparation never changes what the model computes: a pass
    whose result gives other outputs on `sample_feed` (default: random data matching the inputs) is dropped, with a
    warning naming it and the difference. The weights_layout is decided once, and again after the passes, which
    may make a model of another size (folded constants)."""
    layout = weights_layout(model)
    check_model(model, layout)
    if layout is WeightsLayout.EXTERNAL:
        # Weights on disk or over 2 GB: onnxslim and the opset converter leave such a model as it is, and running it
        # twice would need its weights written out to files twice, so its preparation is not checked.
        prepared = _apply(_required(copy.deepcopy(model), input_shapes, layout), _optional(layout))
    else:
        prepared = _checked(model, input_shapes, sample_feed)
    layout = weights_layout(prepared)
    prepared = infer_shapes(prepared, layout)
    check_model(prepared, layout)
    return prepared
