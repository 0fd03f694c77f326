import numpy as np
import pytest

from autocompress.errors import ConfigError
from autocompress.graph.index import GraphIndex
from autocompress.prune.masks import apply_masks
from autocompress.prune.stats import count_params_and_macs
from autocompress.prune.transformer import (
    ffn_weights,
    find_attention_blocks,
    head_importance,
    prune_heads,
    prune_transformer,
)
from tests.prune.prune_models import embedded_encoder, export_encoder, run, torch_encoder

CONFIGS = [(32, 4, 64), (48, 6, 96)]


@pytest.mark.parametrize("hidden, heads, inner", CONFIGS)
def test_attention_blocks_and_ffn_are_found_without_assumed_sizes(hidden, heads, inner):
    model = export_encoder(hidden, heads, inner)
    blocks = find_attention_blocks(model)
    assert len(blocks) == 2
    assert {(b.num_heads, b.head_dim) for b in blocks} == {(heads, hidden // heads)}
    index = GraphIndex(model)
    assert [index.constant_value(w).shape for w in ffn_weights(model)] == [(hidden, inner)] * 2


def zero_heads_in_output_projection(model, block, dropped):
    w = GraphIndex(model).constant_value(block.out_weight).copy()
    mask = np.ones_like(w)
    for h in dropped:
        mask[h * block.head_dim : (h + 1) * block.head_dim] = 0
    return apply_masks(model, {block.out_weight: mask})


@pytest.mark.parametrize("hidden, heads, inner", CONFIGS)
def test_removing_heads_equals_silencing_them(hidden, heads, inner):
    model = export_encoder(hidden, heads, inner)
    block = find_attention_blocks(model)[0]
    keep = [0, heads - 1]
    pruned = prune_heads(model, {block.name: keep})
    silenced = zero_heads_in_output_projection(model, block, [h for h in range(heads) if h not in keep])
    x = np.random.default_rng(0).standard_normal((3, 5, hidden)).astype(np.float32)  # other batch/seq than export
    np.testing.assert_allclose(run(pruned, x), run(silenced, x), rtol=1e-4, atol=1e-5)
    pruned_block = next(b for b in find_attention_blocks(pruned) if b.name == block.name)
    assert (pruned_block.num_heads, pruned_block.head_dim) == (2, hidden // heads)


def test_prune_transformer_halves_heads_and_ffn():
    model = export_encoder(32, 4, 64)
    pruned, report = prune_transformer(model, 0.5)
    assert set(report.heads.values()) == {(4, 2)}
    assert sorted((p.original, p.kept) for p in report.ffn.pruned) == [(64, 32), (64, 32)]
    x = np.random.default_rng(1).standard_normal((2, 9, 32)).astype(np.float32)
    assert run(pruned, x).shape == run(model, x).shape
    assert count_params_and_macs(pruned).params < 0.6 * count_params_and_macs(model).params


def test_given_head_scores_choose_the_heads():
    model = export_encoder(32, 4, 64, layers=1)
    (block,) = find_attention_blocks(model)
    pruned, report = prune_transformer(model, 0.5, head_scores={block.name: np.array([0.0, 5.0, 1.0, 3.0])})
    expected = prune_heads(model, {block.name: [1, 3]})
    for weight in (block.q.weight, block.k.weight, block.v.weight, block.out_weight):
        got, want = GraphIndex(pruned).constant_value(weight), GraphIndex(expected).constant_value(weight)
        np.testing.assert_array_equal(got, want)
    assert report.heads == {block.name: (4, 2)}


def test_default_head_importance_drops_the_weakest_head():
    model = export_encoder(32, 4, 64, layers=1)
    (block,) = find_attention_blocks(model)
    weakened = apply_masks(model, {block.v.weight: np.where(np.arange(32) // 8 == 2, 0.0, 1.0)[None, :].repeat(32, 0)})
    assert np.argmin(head_importance(weakened, block)) == 2
    pruned, report = prune_transformer(weakened, 0.25)
    assert report.heads == {block.name: (4, 3)}
    v_before = GraphIndex(weakened).constant_value(block.v.weight)
    v_after = GraphIndex(pruned).constant_value(block.v.weight)
    np.testing.assert_array_equal(v_after, np.delete(v_before, np.arange(16, 24), axis=1))


def test_errors():
    model = export_encoder(32, 4, 64, layers=1)
    (block,) = find_attention_blocks(model)
    with pytest.raises(ConfigError, match="pruned_ratio"):
        prune_transformer(model, 1.0)
    with pytest.raises(ConfigError, match="subset"):
        prune_heads(model, {block.name: [4]})
    with pytest.raises(ConfigError, match="unknown attention blocks"):
        prune_heads(model, {"nope": [0]})
    with pytest.raises(ConfigError, match="needs 4 values"):
        prune_transformer(model, 0.5, head_scores={block.name: np.ones(3)})


def _ort_outputs_equal(pruned, model, shape):
    x = np.random.default_rng(4).standard_normal(shape).astype(np.float32)
    got, want = run(pruned, x), run(model, x)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_packed_qkv_heads_of_torch_encoder_layers_are_found():
    model = torch_encoder()
    blocks = find_attention_blocks(model)
    assert [(b.num_heads, b.head_dim) for b in blocks] == [(4, 4), (4, 4)]
    for block in blocks:  # Q, K and V are the thirds of one in_proj weight
        assert block.q.weight == block.k.weight == block.v.weight
        assert [p.offset for p in (block.q, block.k, block.v)] == [0, 16, 32]


def test_torch_encoder_pruned_to_the_ratio_equals_it_when_removed_heads_were_zero():
    model = torch_encoder(zeroed_heads=[0, 2], zeroed_units=16)
    pruned, report = prune_transformer(model, 0.5)
    assert set(report.heads.values()) == {(4, 2)}
    assert sorted((p.original, p.kept) for p in report.ffn.pruned) == [(32, 16), (32, 16)]
    assert {b.num_heads for b in find_attention_blocks(pruned)} == {2}
    in_proj = [GraphIndex(pruned).constant_value(b.q.weight).shape for b in find_attention_blocks(pruned)]
    assert in_proj == [(16, 24), (16, 24)]
    _ort_outputs_equal(pruned, model, (2, 5, 16))


def test_torch_encoder_heads_kept_by_index():
    model = torch_encoder(zeroed_heads=[1, 3])
    keep = {b.name: [0, 2] for b in find_attention_blocks(model)}
    assert len(keep) == 2
    _ort_outputs_equal(prune_heads(model, keep), model, (2, 5, 16))


@pytest.mark.parametrize("opset", [14, 17], ids=["reduce_mean_ops", "LayerNormalization"])
def test_hidden_width_is_never_pruned(opset):
    """Only heads and FFN units go: the embedding, the LayerNorm parameters and the residual stream keep 16."""
    model = embedded_encoder(opset, zeroed_heads=[1, 2], zeroed_units=16)
    pruned, report = prune_transformer(model, 0.5)
    assert set(report.heads.values()) == {(4, 2)}
    assert [(p.original, p.kept) for p in report.ffn.pruned] == [(32, 16), (32, 16)]
    index = GraphIndex(pruned)
    embedding = next(n for n in pruned.graph.node if n.op_type == "MatMul").input[1]
    assert index.constant_value(embedding).shape == (8, 16)
    norms = [n for n in pruned.graph.node if n.op_type == "LayerNormalization"] or [
        n for n in pruned.graph.node if n.op_type == "Mul" and "norm" in n.input[1]
    ]
    assert len(norms) == 4 and {index.constant_value(n.input[1]).shape for n in norms} == {(16,)}
    _ort_outputs_equal(pruned, model, (2, 5, 8))
