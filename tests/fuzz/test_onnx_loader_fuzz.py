"""Untrusted ONNX files: corrupt or hostile models load and prepare, or raise a documented error, never hang."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.fuzz.harness import DOCUMENTED_ERROR, OK, run_case
from tests.fuzz.onnx_cases import BASE_BYTES, Sandbox, corrupted_bytes, input_shapes, load_and_prepare, mutated_models

CASE_TIMEOUT_S = 20
CI_SETTINGS = settings(
    derandomize=True,
    max_examples=100,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@pytest.fixture(scope="module")
def box():
    with tempfile.TemporaryDirectory() as tmp:
        yield Sandbox.create(Path(tmp))


def test_the_unmutated_model_loads_and_prepares(box):
    prepared = load_and_prepare(box, BASE_BYTES, None)
    assert [i.name for i in prepared.graph.input] == ["x"]


@CI_SETTINGS
@given(content=corrupted_bytes(), shapes=input_shapes)
def test_corrupted_bytes_load_or_raise_a_documented_error(box, content, shapes):
    assert run_case(lambda: load_and_prepare(box, content, shapes), CASE_TIMEOUT_S) in (OK, DOCUMENTED_ERROR)


@CI_SETTINGS
@given(data=st.data(), shapes=input_shapes)
def test_structurally_mutated_models_load_or_raise_a_documented_error(box, data, shapes):
    content = data.draw(mutated_models(box))
    assert run_case(lambda: load_and_prepare(box, content, shapes), CASE_TIMEOUT_S) in (OK, DOCUMENTED_ERROR)
