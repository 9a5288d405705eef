"""How many leaves a tree makes, counted on its YAML node graph before anything is built.

Aliases are not copies: ten levels of ten aliases are 10^10 leaves in about a kilobyte, and a walk
that counts as it goes spends seconds per million leaves before it can refuse such a file. This
count visits every mapping once (memoised by node identity: a mapping reached through a thousand
aliases is counted once and its count multiplied), so its cost is the size of the file, whatever
the tree expands to; Python's integers let it say 10^30 exactly.

It counts what the walk in ``reader`` would: a leaf makes one leaf, or one per combination of its
``_sweep``/``_zip`` (the product of the list lengths); an entry that cannot be walked (reported by
the walk) counts as one, so a bomb of broken leaves is refused as early. For a broken sweep it may
count more than the walk builds, never less, so a tree it lets through cannot make the walk run
past the limit.

A mapping that contains itself (``a: &a {b: *a}``) would make the tree endless. The count is a
depth-first search, and each entry that points back at a branch still being counted closes such a
cycle; those entries are recorded in ``recursive`` for the walk to report and not follow. Without
them the rest of the graph has no cycle, so the walk ends and meets the same entries as the count.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import yaml

from .shape import Shapes
from .sweeps import SWEEP_KEY, ZIP_KEY
from .yaml_nodes import YamlNodes

Edge = tuple[int, str]  # (id of a branch's mapping node, the key of one of its entries)


@dataclass(frozen=True)
class Crossing:
    """The entry at which the leaves counted in document order first pass a limit."""

    path: tuple[str, ...]
    node: yaml.Node
    leaves: int  # how many leaves the entry itself makes (a sweep's combinations)


class LeafCount:
    """Counts one document's leaves; ``recursive`` holds the entries the walk must not follow."""

    def __init__(self, nodes: YamlNodes, shapes: Shapes) -> None:
        self._nodes = nodes
        self._shapes = shapes
        self._branches: dict[int, int] = {}  # id of a branch mapping -> its leaves
        self._leaves: dict[int, int] = {}  # id of a leaf mapping -> its leaves (a sweep's combinations)
        self._open: set[int] = set()  # branches whose count is under way (on the search's path)
        self._entries: dict[Edge, tuple[int, bool]] = {}  # entry -> (its leaves, whether it is a branch)
        self.recursive: set[Edge] = set()

    def branch(self, node: yaml.MappingNode, path: tuple[str, ...]) -> int:
        """The leaves below a branch (the root included), counting each mapping once."""
        if id(node) in self._branches:
            return self._branches[id(node)]
        self._open.add(id(node))
        total = 0
        for key, key_node, value_node in self._shapes.children(node, path):
            edge = (id(node), key)
            if id(value_node) in self._open:
                self.recursive.add(edge)
            shape = self._shapes.entry(path + (key,), key_node, value_node, edge in self.recursive)
            if shape.kind == "branch":
                leaves = self.branch(value_node, path + (key,))
            elif shape.kind == "leaf":
                leaves = self._leaf(value_node, path + (key,))
            else:
                leaves = 1
            self._entries[edge] = (leaves, shape.kind == "branch")
            total += leaves
        self._open.discard(id(node))
        self._branches[id(node)] = total
        return total

    def _leaf(self, node: yaml.MappingNode, path: tuple[str, ...]) -> int:
        """One, or a sweep's combinations: the product of ``_sweep``'s list lengths times ``_zip``'s longest."""
        if id(node) not in self._leaves:
            self._leaves[id(node)] = self._combinations(node, path)
        return self._leaves[id(node)]

    def _combinations(self, node: yaml.MappingNode, path: tuple[str, ...]) -> int:
        entries = {key: value_node for key, _, value_node in self._nodes.entries(node, path)}
        leaves = 1
        for key in (SWEEP_KEY, ZIP_KEY):
            grid = entries.get(key)
            if not isinstance(grid, yaml.MappingNode):
                continue
            lengths = [len(values.value) for _, _, values in self._nodes.entries(grid, path + (key,))
                       if isinstance(values, yaml.SequenceNode)]  # fmt: skip
            leaves *= math.prod(lengths) if key == SWEEP_KEY else max(lengths, default=1)
        return max(leaves, 1)  # an empty list is a problem, and a problem counts as one

    def crossing(self, root: yaml.MappingNode, limit: int) -> Crossing:
        """Where the count passes ``limit`` (which ``branch(root, ())`` must exceed): the leaf-th entry.

        Follows the memoised counts down from the root, skipping whole branches that fit, so it
        names the same entry a walk counting one leaf at a time would have stopped at.
        """
        node, path, left = root, (), limit
        while True:
            for key, _, value_node in self._shapes.children(node, path):
                leaves, is_branch = self._entries[(id(node), key)]
                if leaves <= left:
                    left -= leaves
                    continue
                if not is_branch:
                    return Crossing(path + (key,), value_node, leaves)
                node, path = value_node, path + (key,)
                break
