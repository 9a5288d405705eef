"""What an entry of the tree is - a leaf, a branch, or something that cannot be walked (and why).

Both the leaf count (``leaf_count``, which runs first, on the node graph) and the walk (``reader``)
must see the same tree: the count decides whether the walk may run at all, so a mapping it took for
a leaf must not be walked as a branch. Hence one classification (``Shapes``) that both use; it
reports nothing itself, and the walk reports the ``Shape.problem`` it returns.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

import yaml

from .conditions import DEFAULTS_KEY, EXTENSION_PREFIX, segment_problem
from .fields import LIST_FIELDS
from .reserved import reserved_branch_problem
from .sweeps import SWEEP_KEYS
from .yaml_nodes import YamlNodes, is_safe, kind_of

MappingKind = Literal["leaf", "branch", "invalid"]


@dataclass(frozen=True)
class Shape:
    """A mapping's kind; for 'invalid', what is wrong, the entry it is about and the node to report at."""

    kind: MappingKind
    problem: str | None = None
    key: str | None = None  # the entry of the mapping the problem is about; None: the mapping itself
    at: yaml.Node | None = None


class Shapes:
    """Classifies the mappings of one document, each once, however many aliases name it.

    Without the memo a mapping of 5,000 fields named by 5,000 aliases would be scanned 5,000 times
    (26 s for a 100 KB file). A mapping's shape does not depend on where it is used - except the
    root's, whose ``x-`` blocks are skipped, and the root is only ever classified as the root (an
    alias to it is a recursive one, reported before any classification).
    """

    def __init__(self, nodes: YamlNodes) -> None:
        self._nodes = nodes
        self._mappings: dict[int, Shape] = {}

    def children(self, node: yaml.MappingNode, path: tuple[str, ...]) -> Iterator[tuple[str, yaml.Node, yaml.Node]]:
        """A branch's named entries (key, key node, value node): not ``_defaults``, nor top-level ``x-`` blocks."""
        for key, key_node, value_node in self._nodes.entries(node, path):
            if key != DEFAULTS_KEY and not (not path and key.startswith(EXTENSION_PREFIX)):
                yield key, key_node, value_node

    def mapping(self, node: yaml.MappingNode, path: tuple[str, ...]) -> Shape:
        """'leaf' (all values scalar), 'branch' (all mappings), or 'invalid' with the reason."""
        if id(node) not in self._mappings:
            self._mappings[id(node)] = _mapping_shape(self._nodes, node, path)
        return self._mappings[id(node)]

    def entry(self, path: tuple[str, ...], key_node: yaml.Node, node: yaml.Node, recursive: bool) -> Shape:
        """What the branch entry at ``path`` is; ``recursive``: the entry names a mapping that contains it."""
        bad_name = segment_problem(path[-1])
        if bad_name is not None:
            return Shape("invalid", bad_name, None, key_node)
        if not isinstance(node, yaml.MappingNode):
            return Shape("invalid", f"expected a leaf (a mapping with prompt: ...) or sub-branches, got {kind_of(node)}",
                         None, node)  # fmt: skip
        if recursive:
            return Shape("invalid", "recursive alias: this mapping contains itself, so the tree never ends", None, node)
        shape = self.mapping(node, path)
        reserved = reserved_branch_problem(path[-1], top_level=len(path) == 1) if shape.kind == "branch" else None
        if reserved is not None:
            return Shape("invalid", reserved, None, key_node)
        return shape


def _mapping_shape(nodes: YamlNodes, node: yaml.MappingNode, path: tuple[str, ...]) -> Shape:
    nodes.prepare(node, path)
    kinds: dict[str, list[str]] = {"scalar": [], "mapping": [], "list": [], "sweep": []}
    for key_node, value_node in node.value:
        name = str(getattr(key_node, "value", "?"))
        if name == DEFAULTS_KEY or (not path and name.startswith(EXTENSION_PREFIX)):
            continue
        if not is_safe(value_node):
            problem = f"YAML tag {value_node.tag!r} is not allowed (trees are read with the safe loader)"
            return Shape("invalid", problem, name, value_node)
        if name in SWEEP_KEYS:
            kinds["sweep"].append(name)
        elif isinstance(value_node, yaml.MappingNode):
            kinds["mapping"].append(name)
        elif isinstance(value_node, yaml.SequenceNode) and name not in LIST_FIELDS:
            kinds["list"].append(name)
        else:
            kinds["scalar"].append(name)
    if kinds["list"]:
        problem = (f"lists are not supported ({', '.join(kinds['list'])}): "
                   "expected a leaf (fields like prompt: ...) or named sub-branches")  # fmt: skip
        return Shape("invalid", problem, None, node)
    leaf_keys = kinds["scalar"] + kinds["sweep"]
    if leaf_keys and kinds["mapping"]:
        problem = (f"mixes leaf fields ({', '.join(leaf_keys)}) with sub-branches ({', '.join(kinds['mapping'])}); "
                   f"a mapping is either a leaf or a branch (shared fields go under '{DEFAULTS_KEY}:')")  # fmt: skip
        return Shape("invalid", problem, None, node)
    if leaf_keys:
        return Shape("leaf")
    if kinds["mapping"]:
        return Shape("branch")
    return Shape("invalid", "empty mapping: expected a leaf with a prompt, or sub-branches", None, node)
