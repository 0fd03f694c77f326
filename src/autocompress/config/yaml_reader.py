"""Config YAML parsing: PyYAML's safe loader, refusing a key given twice in one mapping.

PyYAML keeps the last of two equal keys without a word, so a section written twice (or a key repeated inside a
section) would silently lose the first one; YAML itself requires the keys of a mapping to be unique. The check
runs on the parsed node tree before any value is built, so merge keys (`<<: *base`) may still be overridden.
"""

from __future__ import annotations

from typing import Any

import yaml

_MERGE_TAG = "tag:yaml.org,2002:merge"


class DuplicateKeyError(yaml.YAMLError):
    """A mapping of the file holds the same key twice; the message names the key and both lines."""


def _where(first: int, second: int) -> str:
    return f"twice on line {first}" if first == second else f"twice, on lines {first} and {second}"


def _check_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode, path: str) -> None:
    lines: dict[Any, int] = {}
    for key_node, _ in node.value:
        if key_node.tag == _MERGE_TAG or not isinstance(key_node, yaml.ScalarNode):
            continue
        key = loader.construct_object(key_node)
        line = key_node.start_mark.line + 1
        if key in lines:
            what = f"key '{path}.{key}'" if path else f"section '{key}'"
            raise DuplicateKeyError(f"{what} is given {_where(lines[key], line)}; keep one")
        lines[key] = line


def _child_path(path: str, key_node: yaml.Node) -> str:
    name = key_node.value if isinstance(key_node, yaml.ScalarNode) else "?"
    return f"{path}.{name}" if path else str(name)


def refuse_duplicate_keys(loader: yaml.SafeLoader, root: yaml.Node) -> None:
    """Walk every mapping once (a node reached again through an alias is not walked again, so alias bombs stay
    cheap) and raise DuplicateKeyError on the first key given twice."""
    stack: list[tuple[yaml.Node, str]] = [(root, "")]
    walked: set[int] = set()
    while stack:
        node, path = stack.pop()
        if id(node) in walked:
            continue
        walked.add(id(node))
        if isinstance(node, yaml.MappingNode):
            _check_mapping(loader, node, path)
            stack.extend((value, _child_path(path, key)) for key, value in node.value)
        elif isinstance(node, yaml.SequenceNode):
            stack.extend((value, f"{path}[{index}]") for index, value in enumerate(node.value))


class UniqueKeyLoader(yaml.SafeLoader):
    """yaml.SafeLoader that raises DuplicateKeyError for a mapping key given twice."""

    def construct_document(self, node: yaml.Node) -> Any:
        refuse_duplicate_keys(self, node)
        return super().construct_document(node)


def parse_yaml(data: bytes | str) -> Any:
    """The document in `data`, built with safe types only; YAMLError (DuplicateKeyError included) when invalid."""
    return yaml.load(data, Loader=UniqueKeyLoader)
