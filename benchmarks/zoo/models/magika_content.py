"""Magika's content-type classifier (`magika/models/standard_v3_3/model.onnx`, JAX via jax2tf and tf2onnx, opset 15
+ ai.onnx.ml): one int32 input [N, 2048] of byte values (the first and last 1024 bytes after stripping whitespace,
256 = padding), one-hot (Expand/Equal/Cast) into a Dense layer, tanh-GELU, LayerNorm spelled out in elementwise
ops, a Conv + GlobalMaxPool over the byte sequence and 214 softmax scores.

Data: files made in memory whose type is known exactly: Python source (the standard library's own modules), JSON,
CSV, XML, HTML, Markdown and INI text, images (PNG, JPEG, GIF, BMP,
TIFF of bundled photos via PIL), archives (gzip, bzip2, xz, zip, tar), pickle, npy, WAV, SQLite and Python bytecode.
Features are extracted by the package's own `Magika._extract_features_from_seekable` with its model config. Metric:
top-1 accuracy of the model's label (Magika's `dl` label) against the type each file was written as.
"""

from __future__ import annotations

import bz2
import configparser
import csv
import gzip
import importlib.util
import inspect
import io
import json
import lzma
import marshal
import pickle
import sqlite3
import tarfile
import tempfile
import wave
import xml.etree.ElementTree as ElementTree
import zipfile
from collections.abc import Callable, Sequence
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image

from benchmarks.zoo.feeds import accuracy, labelled_data
from benchmarks.zoo.spec import Outputs, ZooModel, package_file
from examples.common.photos import natural_photos, random_crop_resized

INPUT_NAME = "bytes"
MODEL_DIR = ("models", "standard_v3_3")
EVALUATION_BATCH = 8
STDLIB_MODULES = ("argparse", "csv", "json.decoder", "textwrap", "string", "shlex", "fractions", "heapq", "bisect")
WORDS = ("alpha", "river", "stone", "cloud", "green", "paper", "orbit", "maple", "delta", "quiet", "amber", "north")

Writer = Callable[[np.random.Generator], bytes]


@lru_cache(maxsize=1)
def _config() -> dict:
    return json.loads(package_file("magika", *MODEL_DIR, "config.min.json").read_text(encoding="utf-8"))


def onnx_file(_work: Path) -> Path:
    return package_file("magika", *MODEL_DIR, "model.onnx")


def features(content: bytes) -> np.ndarray:
    """[2048] int32 model input of one file; the package's own feature extraction and concatenation."""
    from magika import Magika
    from magika.types.seekable import Seekable

    config = _config()
    keys = ("beg_size", "mid_size", "end_size", "padding_token", "block_size", "use_inputs_at_offsets")
    found = Magika._extract_features_from_seekable(Seekable(io.BytesIO(content)), **{k: config[k] for k in keys})
    return np.asarray(found.beg + found.end, dtype=np.int32)


def _words(rng: np.random.Generator, n: int) -> list[str]:
    return [str(w) for w in rng.choice(WORDS, size=n)]


def _records(rng: np.random.Generator) -> list[dict]:
    rows = int(rng.integers(20, 60))
    return [{"id": i, "name": " ".join(_words(rng, 2)), "score": round(float(rng.normal()), 3)} for i in range(rows)]


def _python(rng: np.random.Generator) -> bytes:
    return inspect.getsource(importlib.import_module(str(rng.choice(STDLIB_MODULES)))).encode()


def _json(rng: np.random.Generator) -> bytes:
    return json.dumps({"items": _records(rng)}, indent=int(rng.integers(1, 4))).encode()


def _csv(rng: np.random.Generator) -> bytes:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=["id", "name", "score"])
    writer.writeheader()
    writer.writerows(_records(rng))
    return out.getvalue().encode()


def _xml(rng: np.random.Generator) -> bytes:
    root = ElementTree.Element("catalog")
    for record in _records(rng):
        ElementTree.SubElement(root, "item", id=str(record["id"]), score=str(record["score"])).text = record["name"]
    return ElementTree.tostring(root, xml_declaration=True, encoding="utf-8")


def _html(rng: np.random.Generator) -> bytes:
    items = "\n".join(f"    <li><a href='/{r['id']}.html'>{r['name']}</a></li>" for r in _records(rng))
    title = " ".join(_words(rng, 3))
    return f"<!DOCTYPE html>\n<html>\n<head><title>{title}</title></head>\n<body>\n  <ul>\n{items}\n  </ul>\n</body>\n</html>\n".encode()


def _markdown(rng: np.random.Generator) -> bytes:
    sections = [
        f"## {' '.join(_words(rng, 2)).title()}\n\n{' '.join(_words(rng, 40))}.\n\n- {r['name']}\n"
        for r in _records(rng)[:6]
    ]
    return ("# " + " ".join(_words(rng, 3)).title() + "\n\n" + "\n".join(sections)).encode()


def _ini(rng: np.random.Generator) -> bytes:
    parser = configparser.ConfigParser()
    for section in sorted(set(_words(rng, 5))):
        parser[section] = {f"{w}_{i}": str(rng.integers(0, 1000)) for i, w in enumerate(_words(rng, 6))}
    out = io.StringIO()
    parser.write(out)
    return out.getvalue().encode()


def _image(format_name: str) -> Writer:
    def write(rng: np.random.Generator) -> bytes:
        photos = natural_photos()
        photo = photos[sorted(photos)[int(rng.integers(0, len(photos)))]]
        out = io.BytesIO()
        Image.fromarray(random_crop_resized(rng, photo, 96, 128)).save(out, format=format_name)
        return out.getvalue()

    return write


def _compressed(compress: Callable[[bytes], bytes]) -> Writer:
    return lambda rng: compress(_csv(rng))


def _zip(rng: np.random.Generator) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("data.csv", _csv(rng))
        archive.writestr("notes.md", _markdown(rng))
    return out.getvalue()


def _tar(rng: np.random.Generator) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as archive:
        for name, payload in (("data.json", _json(rng)), ("module.py", _python(rng))):
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            archive.addfile(info, io.BytesIO(payload))
    return out.getvalue()


def _npy(rng: np.random.Generator) -> bytes:
    out = io.BytesIO()
    np.save(out, rng.normal(size=(int(rng.integers(8, 64)), 16)).astype(np.float32))
    return out.getvalue()


def _wav(rng: np.random.Generator) -> bytes:
    out = io.BytesIO()
    samples = (np.sin(np.arange(8000) * rng.uniform(0.01, 0.2)) * 12000).astype(np.int16)
    with wave.open(out, "wb") as audio:
        audio.setnchannels(1)
        audio.setsampwidth(2)
        audio.setframerate(8000)
        audio.writeframes(samples.tobytes())
    return out.getvalue()


def _sqlite(rng: np.random.Generator) -> bytes:
    """SQLite writes only to files: a temporary one, read back."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "data.sqlite"
        with sqlite3.connect(path) as connection:
            connection.execute("CREATE TABLE items (id INTEGER, name TEXT, score REAL)")
            connection.executemany("INSERT INTO items VALUES (:id, :name, :score)", _records(rng))
        connection.close()
        return path.read_bytes()


def _bytecode(rng: np.random.Generator) -> bytes:
    """A .pyc as py_compile writes it: magic number, flags, mtime and size, then the marshalled code object."""
    source = _python(rng)
    header = importlib.util.MAGIC_NUMBER + (0).to_bytes(4, "little") * 2 + len(source).to_bytes(4, "little")
    return header + marshal.dumps(compile(source, "module.py", "exec"))


WRITERS: dict[str, Writer] = {
    "python": _python,
    "json": _json,
    "csv": _csv,
    "xml": _xml,
    "html": _html,
    "markdown": _markdown,
    "ini": _ini,
    "png": _image("PNG"),
    "jpeg": _image("JPEG"),
    "gif": _image("GIF"),
    "bmp": _image("BMP"),
    "tiff": _image("TIFF"),
    "gzip": _compressed(gzip.compress),
    "bzip": _compressed(bz2.compress),
    "xz": _compressed(lzma.compress),
    "zip": _zip,
    "tar": _tar,
    "pickle": lambda rng: pickle.dumps(_records(rng)),
    "npy": _npy,
    "wav": _wav,
    "sqlite": _sqlite,
    "pythonbytecode": _bytecode,
}


def make_files(n: int, seed: int) -> tuple[np.ndarray, list[str]]:
    """n model inputs [n, 2048] and the content type each file was written as, types in a seeded round robin."""
    rng = np.random.default_rng(seed)
    kinds = list(WRITERS)
    labels = [kinds[int(i) % len(kinds)] for i in rng.permutation(n)]
    return np.stack([features(WRITERS[label](rng)) for label in labels]), labels


calibration, evaluation = labelled_data(make_files, INPUT_NAME, EVALUATION_BATCH)


def predicted_labels(outputs: Outputs) -> list[str]:
    space = _config()["target_labels_space"]
    return [space[int(i)] for i in outputs[0].argmax(axis=1)]


def score(outputs: Sequence[Outputs], _fp32: Sequence[Outputs], labels: list[str]) -> float:
    return accuracy([label for out in outputs for label in predicted_labels(out)], labels)


MODEL = ZooModel(
    name="magika",
    family="byte-sequence classifier",
    requirement="magika==1.0.3",
    metric="content-type top-1 accuracy (22 types written offline)",
    onnx_file=onnx_file,
    calibration=calibration,
    evaluation=evaluation,
    score=score,
    features="int32 byte input [N, 2048] (no float input), one-hot via Expand/Equal/Cast, MatMul + tanh-GELU, "
    "decomposed LayerNorm, Conv + GlobalMaxPool, jax2tf + tf2onnx opset 15 + ai.onnx.ml, dynamic batch",
    calibration_size=32,
    evaluation_size=88,
)
