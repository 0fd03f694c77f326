"""The documented public names of autocompress.runtime import."""

from __future__ import annotations

import pytest


def test_torch_graph_is_importable_from_the_runtime_package():
    from autocompress.runtime import TorchGraph
    from autocompress.runtime.torch_graph import TorchGraph as Direct

    assert TorchGraph is Direct


def test_unknown_runtime_name_is_an_attribute_error():
    import autocompress.runtime as runtime

    with pytest.raises(AttributeError, match="NoSuchThing"):
        runtime.NoSuchThing  # noqa: B018
