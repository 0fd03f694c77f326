import numpy as np
import pytest

from autocompress.errors import ConfigError
from autocompress.graph.index import GraphIndex
from autocompress.prune.masks import apply_masks
from autocompress.prune.stats import count_params_and_macs
from autocompress.prune.transformer import (
    find_attention_blocks, ffn_weights, head_importance, prune_heads, prune_transformer,
)
from tests.prune.prune_models import export_encoder, run

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
        mask[h * block.head_dim:(h + 1) * block.head_dim] = 0
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
