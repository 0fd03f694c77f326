"""The zoo's text helpers: CTC decoding, exact-match scoring, constants read from package files, rendered text."""

import numpy as np
import pytest

from autocompress.errors import DataError
from benchmarks.zoo.text import (
    ctc_greedy,
    dictionary_lines,
    exact_match_score,
    module_constant,
    render_word_line,
    rotated_glyph,
)
from examples.common.text_render import VOCABULARY

CHARSET = ["<blank>", "a", "b", "c"]


def test_ctc_greedy_collapses_repeats_and_drops_blanks():
    assert ctc_greedy(np.array([0, 1, 1, 0, 1, 2, 2, 0, 0, 3]), CHARSET) == "aabc"
    assert ctc_greedy(np.array([[3, 3, 0]]), CHARSET) == "c"
    assert ctc_greedy(np.array([], dtype=np.int64), CHARSET) == ""


def test_exact_match_score_compares_decoded_text_with_labels():
    def decode(outputs):
        return ctc_greedy(outputs[0].argmax(axis=-1), CHARSET)

    one_hot = np.eye(4, dtype=np.float32)
    outputs = [[one_hot[[1, 0, 2]]], [one_hot[[3, 3]]]]
    score = exact_match_score(decode)
    assert score(outputs, outputs, ["ab", "c"]) == 1.0
    assert score(outputs, outputs, ["ab", "cc"]) == 0.5
    with pytest.raises(DataError, match="one output per rendered text"):
        score(outputs, outputs, ["ab"])


def test_module_constant_reads_literals_without_running_the_file(tmp_path):
    source = tmp_path / "charsets.py"
    source.write_text("import a_module_that_is_not_installed\nCHARS = ['', 'x', 'y']\nTYPES = {'ab': 'c'}\n")
    assert module_constant(source, "CHARS") == ["", "x", "y"]
    assert module_constant(source, "TYPES") == {"ab": "c"}
    with pytest.raises(DataError, match="assigns no literal 'MISSING'"):
        module_constant(source, "MISSING")


def test_dictionary_lines_keep_a_space_entry(tmp_path):
    path = tmp_path / "dict.txt"
    path.write_text("a\n \nb\r\n", encoding="utf-8")
    assert dictionary_lines(path) == ["a", " ", "b"]


def test_rotated_glyph_has_ink_and_grows_when_rotated():
    upright = rotated_glyph(np.random.default_rng(0), "H", 30, max_degrees=0.0)
    assert upright.max() > 0.9 and upright.min() == 0.0
    tilted = rotated_glyph(np.random.default_rng(1), "H", 30, max_degrees=40.0)
    assert tilted.shape[0] * tilted.shape[1] >= upright.size


def test_render_word_line_fits_the_aspect_and_uses_vocabulary_words():
    rng = np.random.default_rng(3)
    for _ in range(10):
        line, text = render_word_line(rng, max_aspect=320 / 48, font_sizes=(20, 40))
        assert line.dtype == np.uint8 and line.shape[2] == 3
        assert line.shape[1] <= 320 / 48 * line.shape[0] or len(text.split()) == 1
        assert all(word in VOCABULARY for word in text.split(" "))
