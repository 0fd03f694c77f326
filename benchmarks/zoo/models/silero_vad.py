"""Silero VAD 6.2.3: a streaming voice-activity model (STFT conv, CNN, LSTM inside `If` branches per sample rate).

Inputs: `input` [B, 64 + 512] (the package's 64-sample context before each 512-sample chunk at 16 kHz),
`state` [2, B, 128] (batch on axis 1) and the scalar int64 `sr`. Feeding follows
`silero_vad.utils_vad.OnnxWrapper.__call__`: each chunk is prefixed with the last 64 samples of the previous one
and the state returned by the previous call is passed on.

Audio is synthesised with numpy: B independent streams alternating speech-like segments (voiced sounds: a
harmonic series on a gliding pitch of 90-260 Hz, shaped by two or three formant-like resonances and a syllable-rate
envelope), silence with faint noise, and broadband noise bursts. The state is carried along each stream as the fp32
model computes it, so every feed (one chunk of every stream plus fp32's state before it) can be scored on its own.
Metric: 1 - mean |p - p_fp32| over the speech probabilities of every chunk.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

import numpy as np
import onnxruntime as ort

from benchmarks.zoo.spec import EvalSet, Feed, Outputs, ZooModel, package_file

SAMPLE_RATE = 16000
CHUNK = 512
CONTEXT = 64
STREAMS = 8  # batch of every feed: independent audio streams
STATE_SIZE = 128


def model_file(_work: Path) -> Path:
    return package_file("silero_vad", "data", "silero_vad.onnx")


def _voiced(rng: np.random.Generator, n: int) -> np.ndarray:
    """A vowel-like sound: harmonics of a gliding pitch, weighted by formant-like resonances, syllable envelope."""
    t = np.arange(n) / SAMPLE_RATE
    f0 = rng.uniform(90, 260) * (1 + 0.15 * np.sin(2 * np.pi * rng.uniform(0.5, 3) * t))
    phase = 2 * np.pi * np.cumsum(f0) / SAMPLE_RATE
    formants = rng.uniform([300, 900, 2200], [900, 2200, 3200])
    signal = np.zeros(n)
    for k in range(1, int(4000 / f0.max())):
        weight = sum(np.exp(-((((k * f0.mean()) - f) / 120.0) ** 2)) for f in formants) + 0.02
        signal += weight * np.sin(k * phase) / k
    envelope = 0.55 + 0.45 * np.sin(2 * np.pi * rng.uniform(3, 6) * t + rng.uniform(0, 2 * np.pi))
    return signal * envelope / max(np.abs(signal).max(), 1e-6)


def _segment(rng: np.random.Generator) -> np.ndarray:
    """One segment of a stream: speech-like (half of them), silence with faint noise, or a noise burst."""
    n = int(rng.uniform(0.25, 0.9) * SAMPLE_RATE)
    kind = rng.choice(["speech", "silence", "noise"], p=[0.5, 0.3, 0.2])
    if kind == "speech":
        return rng.uniform(0.2, 0.6) * _voiced(rng, n)
    scale = 0.003 if kind == "silence" else rng.uniform(0.05, 0.3)
    return scale * rng.standard_normal(n)


@lru_cache(maxsize=4)
def _streams(chunks: int, seed: int) -> np.ndarray:
    """[STREAMS, chunks * CHUNK] float32 audio, the same for the same arguments."""
    rng = np.random.default_rng(seed)
    length = chunks * CHUNK
    audio = np.zeros((STREAMS, length), np.float32)
    for s in range(STREAMS):
        pieces, total = [], 0
        while total < length:
            pieces.append(_segment(rng))
            total += len(pieces[-1])
        audio[s] = np.concatenate(pieces)[:length]
    return audio


def _feeds(chunks: int, seed: int) -> list[Feed]:
    """One feed per chunk index, with the context and the state the fp32 model carries (OnnxWrapper.__call__)."""
    audio = _streams(chunks, seed)
    session = ort.InferenceSession(str(model_file(Path())), providers=["CPUExecutionProvider"])
    state = np.zeros((2, STREAMS, STATE_SIZE), np.float32)
    context = np.zeros((STREAMS, CONTEXT), np.float32)
    sr = np.array(SAMPLE_RATE, np.int64)
    feeds = []
    for i in range(chunks):
        x = np.concatenate([context, audio[:, i * CHUNK : (i + 1) * CHUNK]], axis=1)
        feeds.append({"input": x, "state": state, "sr": sr})
        state = session.run(None, feeds[-1])[1]
        context = x[:, -CONTEXT:]
    return feeds


def calibration(n: int) -> list[Feed]:
    return _feeds(n, seed=0)


def evaluation(n: int) -> EvalSet:
    """n chunk indices of the STREAMS streams (n * STREAMS chunks of 32 ms)."""
    return EvalSet(_feeds(n, seed=1))


def score(outputs: Sequence[Outputs], reference: Sequence[Outputs], _labels: object) -> float:
    got = np.concatenate([o[0].ravel() for o in outputs])
    want = np.concatenate([o[0].ravel() for o in reference])
    return float(1.0 - np.abs(got - want).mean())


MODEL = ZooModel(
    name="silero_vad",
    family="audio/sequence",
    requirement="silero-vad==6.2.3",
    metric="1 - mean |p - p_fp32| of speech probability",
    onnx_file=model_file,
    calibration=calibration,
    evaluation=evaluation,
    score=score,
    features="opset 16, If x25 + LSTM, state batch on axis 1, scalar int64 input, weights as Constant nodes",
)
