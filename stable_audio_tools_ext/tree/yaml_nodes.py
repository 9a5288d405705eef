"""Read mappings, keys and scalars from PyYAML's node graph, reporting what plain YAML cannot be.

The tree is validated on *nodes* rather than on ``yaml.safe_load``'s Python objects because only
nodes still carry line numbers and show duplicate keys (``safe_load`` silently keeps the last one).
This module owns those node-level details - line numbers, keys as path segments, duplicate keys,
merge keys (``<<: *anchor``), safe construction of scalars - so that ``reader`` can walk the tree in
terms of names and values.

Aliases are not copies: PyYAML hands out the same node object wherever an alias points to it, so a
few hundred bytes can describe a tree of billions of paths. Merges are resolved once per node and
keep one entry per key (PyYAML's own ``flatten_mapping`` appends every merged entry, so ten levels
of ``<<: [*a, *a, ...]`` would build 10^10 entries); the walk in ``reader`` counts the rest.
"""

from __future__ import annotations

from typing import Any

import yaml

from .conditions import Problem

_MERGE_TAG = "tag:yaml.org,2002:merge"
Entry = tuple[yaml.Node, yaml.Node]  # a mapping's (key node, value node)


def line_of(node: yaml.Node) -> int:
    return node.start_mark.line + 1


def join(path: tuple[str, ...], key: str | None = None) -> str:
    """A YAML path as written in messages: ``music/drum/sample-1``."""
    return "/".join(path + ((key,) if key is not None else ()))


def kind_of(node: yaml.Node) -> str:
    """What a node is, in words for messages."""
    if isinstance(node, yaml.SequenceNode):
        return "a list"
    if isinstance(node, yaml.MappingNode):
        return "a mapping"
    return f"the scalar {node.value!r}"


def is_safe(node: yaml.Node) -> bool:
    """Whether the safe loader can construct this node's tag (no ``!!python/...`` objects)."""
    return node.tag in yaml.SafeLoader.yaml_constructors


class YamlNodes:
    """One document's node graph; problems go to ``problems``, each reported once."""

    def __init__(self, text: str, problems: list[Problem]) -> None:
        self._loader = yaml.SafeLoader(text)
        self.problems = problems
        self._prepared: set[int] = set()
        self._merging: set[int] = set()  # mappings whose merge keys are being resolved (to catch cycles)
        self._keys: dict[int, str | None] = {}

    def report(self, path: str, message: str, node: yaml.Node | None = None) -> None:
        self.problems.append(Problem(path, message, line_of(node) if node is not None else None))

    def root(self) -> yaml.Node | None:
        """The document's root node; ``None`` for an empty file or a syntax error (reported)."""
        try:
            return self._loader.get_single_node()
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            line = mark.line + 1 if mark is not None else None
            what = exc.problem or exc.context or "invalid YAML"
            self.problems.append(Problem("", f"YAML syntax error: {what}", line))
        except yaml.YAMLError as exc:
            self.problems.append(Problem("", f"YAML error: {exc}"))
        return None

    def close(self) -> None:
        self._loader.dispose()

    def entries(self, node: yaml.MappingNode, path: tuple[str, ...]) -> list[tuple[str, yaml.Node, yaml.Node]]:
        """Key/value pairs of a mapping, keys as strings; explicit keys override merged ('<<') ones."""
        self.prepare(node, path)
        entries: dict[str, tuple[yaml.Node, yaml.Node]] = {}
        for key_node, value_node in node.value:
            key = self.key(key_node, path)
            if key is not None:
                entries[key] = (key_node, value_node)
        return [(key, key_node, value_node) for key, (key_node, value_node) in entries.items()]

    def key(self, key_node: yaml.Node, path: tuple[str, ...]) -> str | None:
        """A mapping key as a path segment string (reported once and ``None`` if it cannot be one)."""
        if id(key_node) not in self._keys:
            if isinstance(key_node, yaml.ScalarNode):
                value = self.scalar(key_node, join(path))
                self._keys[id(key_node)] = "null" if value is None else str(value)
            else:
                self.report(join(path), "keys must be plain names, not lists or mappings", key_node)
                self._keys[id(key_node)] = None
        return self._keys[id(key_node)]

    def prepare(self, node: yaml.MappingNode, path: tuple[str, ...]) -> None:
        """Once per node: report keys written twice, then resolve merge keys ('<<: *anchor') in place.

        Afterwards the node holds one entry per key, merged ones included, as a YAML loader reads it.
        """
        if id(node) in self._prepared:
            return
        self._prepared.add(id(node))
        own = [(key_node, value_node) for key_node, value_node in node.value if key_node.tag != _MERGE_TAG]
        seen: dict[str, int] = {}
        for key_node, _ in own:
            key = self.key(key_node, path)
            if key is None:
                continue
            if key in seen:
                self.report(join(path, key), f"duplicate key (first defined on line {seen[key]})", key_node)
            else:
                seen[key] = line_of(key_node)
        self._merging.add(id(node))
        merged = self._merged_entries([value for key, value in node.value if key.tag == _MERGE_TAG], path)
        self._merging.discard(id(node))
        node.value = self._last_wins(merged + own, path) if merged else own

    def _merged_entries(self, merge_values: list[yaml.Node], path: tuple[str, ...]) -> list[Entry]:
        """The entries the merge keys bring in, the winning ones last (YAML: earlier sources of a merge
        key win; like PyYAML, a later merge key wins over an earlier one).

        A source named more than once is read once, where it wins: ``<<: [*a, *a, ...]`` five thousand
        times over a mapping of five thousand keys would otherwise gather 25 million entries.
        """
        weakest_first = [source for value_node in merge_values for source in reversed(
            value_node.value if isinstance(value_node, yaml.SequenceNode) else [value_node])]  # fmt: skip
        strongest_first = {id(source): source for source in reversed(weakest_first)}  # keeps each one's strongest place
        entries: list[Entry] = []
        for source in reversed(strongest_first.values()):
            if not isinstance(source, yaml.MappingNode):
                expected = "expected a mapping or a list of mappings"
                self.report(join(path), f"invalid merge key: {expected}, got {kind_of(source)}", source)
            elif id(source) in self._merging:
                self.report(join(path), "invalid merge key: a mapping cannot merge itself (recursive alias)", source)
            else:
                self.prepare(source, path)
                entries += source.value
        return entries

    def _last_wins(self, entries: list[Entry], path: tuple[str, ...]) -> list[Entry]:
        """One entry per key, in first-seen order with the last value (what ``entries`` would read)."""
        by_key: dict[str | int, Entry] = {}  # unreadable keys (reported) stay apart, by node id
        for key_node, value_node in entries:
            key = self.key(key_node, path)
            by_key[key if key is not None else id(key_node)] = (key_node, value_node)
        return list(by_key.values())

    def scalar(self, node: yaml.ScalarNode, path: str) -> Any:
        """The scalar's value as the safe loader constructs it (``None``, reported, if it cannot)."""
        try:
            return self._loader.construct_object(node, deep=True)
        except yaml.YAMLError as exc:
            message = getattr(exc, "problem", None) or str(exc)
            self.report(path, f"cannot read value: {message} (only plain YAML is allowed)", node)
            return None

    def scalars(self, node: yaml.SequenceNode, path: str) -> list[Any] | None:
        """A flat list's values (``cfg_interval: [0, 0.5]``); ``None``, reported, if an item is not a scalar."""
        values = []
        for index, item in enumerate(node.value):
            if not isinstance(item, yaml.ScalarNode) or not is_safe(item):
                self.report(f"{path}[{index}]", f"expected a single value, got {kind_of(item)}", item)
                return None
            values.append(self.scalar(item, f"{path}[{index}]"))
        return values
