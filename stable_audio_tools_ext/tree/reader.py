"""Read a YAML condition tree into validated leaves, collecting every problem on the way.

The tree's mapping keys are path segments; a mapping whose values are all scalars is a *leaf*: one
condition (a prompt plus its generation parameters). A reserved ``_defaults:`` mapping at any level
supplies fields that every leaf below it inherits (the leaf's own value wins, the nearest level wins;
an explicit ``null`` resets an inherited value to the command-line default). Top-level keys starting
with ``x-`` are not read at all (as in Docker Compose's extension fields): they are where YAML anchors
live that leaves merge in with ``<<: *name``. Below the top level such keys are ordinary names, so
trees with a leaf like ``sfx/x-ray`` keep working.

Every problem in the file is collected and reported at once, each with its YAML path and line, so a
user fixing line 4,000 of a sweep does not have to rerun once per typo. Node-level YAML details
(lines, duplicate and merge keys) are ``yaml_nodes``'; value checks are ``fields``'.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator
from pathlib import Path
from typing import Any, Literal

import yaml

from .conditions import DEFAULTS_KEY, EXTENSION_PREFIX, Condition, ConditionTreeError, Problem, segment_problem
from .fields import LEAF_FIELDS, field_checks, unknown_field_hint
from .plan import DEFAULT_MAX_ITEMS
from .reserved import reserved_branch_problem
from .yaml_nodes import YamlNodes, is_safe, join, kind_of, line_of

MappingKind = Literal["leaf", "branch", "invalid"]


class _TooManyLeaves(Exception):
    """Ends the walk once it has counted more leaves than the item limit (the problem is reported)."""


def read_condition_file(
    path: str | Path, known_samplers: Collection[str], max_items: int = DEFAULT_MAX_ITEMS
) -> tuple[list[Condition], list[Problem]]:
    """Read a condition tree file: its valid leaves and every problem found (nothing raised).

    Callers that check more (the model's window, output collisions) add their problems to these,
    so that a user sees everything wrong with a tree in one run. A tree with more than ``max_items``
    leaves is given up on as soon as the walk gets there, with no leaves (see ``TreeReader``).
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return [], [Problem("", "file not found")]
    except IsADirectoryError:
        return [], [Problem("", "is a directory, expected a YAML file")]
    except UnicodeDecodeError as exc:
        return [], [Problem("", f"not UTF-8 text ({exc.reason})")]
    problems: list[Problem] = []
    return TreeReader(text, known_samplers, problems, max_items).leaves(), problems


def parse_condition_tree(
    text: str, known_samplers: Collection[str], source: str = "<yaml>", max_items: int = DEFAULT_MAX_ITEMS
) -> list[Condition]:
    """Validate YAML text into leaves in document order; raises ``ConditionTreeError``."""
    problems: list[Problem] = []
    leaves = TreeReader(text, known_samplers, problems, max_items).leaves()
    if problems:
        raise ConditionTreeError(problems, source)
    return leaves


class TreeReader:
    """Walks one document's branches once, inheriting ``_defaults`` and checking every leaf.

    YAML aliases let a small file name the same mapping many times over (ten levels of ten aliases
    are 10^10 leaves in a few hundred bytes), so the walk counts the leaves it reaches and stops at
    ``max_items``, before it has built more than that many. It counts leaves, not items: a leaf's
    item count is its ``n_samples``, which may come from the command line, unknown here - but every
    leaf makes at least one item, so more leaves than the item limit is already too many items.
    ``plan.build_plan`` checks the exact item count of a tree that passes. Entries that fail to be
    leaves (reported) count too, so that a bomb of broken leaves cannot flood the report either.
    """

    def __init__(
        self, text: str, known_samplers: Collection[str], problems: list[Problem], max_items: int = DEFAULT_MAX_ITEMS
    ) -> None:
        self._text = text
        self._checks = field_checks(known_samplers)
        self.problems = problems
        self._max_leaves = max_items
        self._counted = 0
        self._nodes: YamlNodes

    def leaves(self) -> list[Condition]:
        """Every valid leaf in document order (problems, if any, are in ``problems``)."""
        self._nodes = YamlNodes(self._text, self.problems)
        try:
            known_problems = len(self.problems)
            root = self._nodes.root()
            if root is None:
                if len(self.problems) == known_problems:  # not a syntax error: an empty document
                    self._nodes.report("", "the file is empty: expected a mapping of names to leaves")
                return []
            if not isinstance(root, yaml.MappingNode):
                self._nodes.report("", f"the root must be a mapping of names, got {kind_of(root)}", root)
                return []
            if self._classify(root, ()) == "leaf":
                self._nodes.report(
                    "", "the root is a single leaf without a name; put it under a name, e.g. 'sample-1:'", root
                )
                return []
            return list(self._branch(root, (), {}, frozenset({id(root)})))
        except _TooManyLeaves:
            return []  # nothing is built from a tree that is too big
        finally:
            self._nodes.close()

    def _classify(self, node: yaml.MappingNode, path: tuple[str, ...]) -> MappingKind:
        """'leaf' (all values scalar), 'branch' (all mappings), or 'invalid' (reported)."""
        self._nodes.prepare(node, path)
        kinds: dict[str, list[str]] = {"scalar": [], "mapping": [], "list": []}
        for key_node, value_node in node.value:
            name = str(getattr(key_node, "value", "?"))
            if name == DEFAULTS_KEY or (not path and name.startswith(EXTENSION_PREFIX)):
                continue
            if not is_safe(value_node):
                self._nodes.report(
                    join(path, name),
                    f"YAML tag {value_node.tag!r} is not allowed (trees are read with the safe loader)",
                    value_node,
                )
                return "invalid"
            if isinstance(value_node, yaml.MappingNode):
                kinds["mapping"].append(name)
            elif isinstance(value_node, yaml.SequenceNode):
                kinds["list"].append(name)
            else:
                kinds["scalar"].append(name)
        if kinds["list"]:
            self._nodes.report(
                join(path),
                f"lists are not supported ({', '.join(kinds['list'])}): "
                "expected a leaf (fields like prompt: ...) or named sub-branches",
                node,
            )
            return "invalid"
        if kinds["scalar"] and kinds["mapping"]:
            self._nodes.report(
                join(path),
                f"mixes leaf fields ({', '.join(kinds['scalar'])}) with sub-branches "
                f"({', '.join(kinds['mapping'])}); a mapping is either a leaf or a branch "
                f"(shared fields go under '{DEFAULTS_KEY}:')",
                node,
            )
            return "invalid"
        if kinds["scalar"]:
            return "leaf"
        if kinds["mapping"]:
            return "branch"
        self._nodes.report(join(path), "empty mapping: expected a leaf with a prompt, or sub-branches", node)
        return "invalid"

    def _fields(self, node: yaml.MappingNode, path: tuple[str, ...], what: str) -> dict[str, Any]:
        """Validated field values of a leaf or ``_defaults`` mapping (``None`` where set to null)."""
        values: dict[str, Any] = {}
        for key, key_node, value_node in self._nodes.entries(node, path):
            field_path = join(path, key)
            if key not in LEAF_FIELDS:
                self._nodes.report(field_path, f"unknown {what} field{unknown_field_hint(key)}", key_node)
                continue
            if not isinstance(value_node, yaml.ScalarNode):
                self._nodes.report(field_path, f"expected a single value, got {kind_of(value_node)}", value_node)
                continue
            value, error = self._checks[key](self._nodes.scalar(value_node, field_path))
            if error is not None:
                self._nodes.report(field_path, error, value_node)
            else:
                values[key] = value  # an explicit null resets an inherited value to the CLI default
        return values

    def _branch(
        self, node: yaml.MappingNode, path: tuple[str, ...], inherited: dict[str, Any], ancestors: frozenset[int]
    ) -> Iterator[Condition]:
        """The leaves below ``node``; ``ancestors`` are the ids of the mappings on the path to it."""
        entries = self._nodes.entries(node, path)
        defaults = dict(inherited)
        for key, _, value_node in entries:
            if key != DEFAULTS_KEY:
                continue
            if isinstance(value_node, yaml.MappingNode):
                defaults.update(self._fields(value_node, path + (DEFAULTS_KEY,), f"'{DEFAULTS_KEY}'"))
            else:
                self._nodes.report(
                    join(path, DEFAULTS_KEY), f"expected a mapping of fields, got {kind_of(value_node)}", value_node
                )
        for key, key_node, value_node in entries:
            if key == DEFAULTS_KEY or (not path and key.startswith(EXTENSION_PREFIX)):
                continue
            child = path + (key,)
            kind = self._child_kind(child, key_node, value_node, ancestors)
            if kind == "branch":
                yield from self._branch(value_node, child, defaults, ancestors | {id(value_node)})
                continue
            self._count_leaf(child, value_node)
            if kind == "leaf":
                leaf = self._leaf(value_node, child, defaults)
                if leaf is not None:
                    yield leaf

    def _child_kind(
        self, path: tuple[str, ...], key_node: yaml.Node, node: yaml.Node, ancestors: frozenset[int]
    ) -> MappingKind:
        """What the entry at ``path`` is; 'invalid' (reported) for anything that cannot be walked."""
        bad_name = segment_problem(path[-1])
        if bad_name is not None:
            self._nodes.report(join(path), bad_name, key_node)
            return "invalid"
        if not isinstance(node, yaml.MappingNode):
            self._nodes.report(
                join(path), f"expected a leaf (a mapping with prompt: ...) or sub-branches, got {kind_of(node)}", node
            )
            return "invalid"
        if id(node) in ancestors:
            self._nodes.report(join(path), "recursive alias: this mapping contains itself, so the tree never ends", node)
            return "invalid"
        kind = self._classify(node, path)
        reserved = reserved_branch_problem(path[-1], top_level=len(path) == 1) if kind == "branch" else None
        if reserved is not None:
            self._nodes.report(join(path), reserved, key_node)
            return "invalid"
        return kind

    def _count_leaf(self, path: tuple[str, ...], node: yaml.Node) -> None:
        """Count one more leaf (or failed leaf); past the limit, report where and end the walk."""
        self._counted += 1
        if self._counted > self._max_leaves:
            limit = f"{self._max_leaves:,}"
            self._nodes.report(
                join(path),
                f"stopped reading here: the tree has more than {limit} leaves (an alias counts once per use), "
                f"and every leaf makes at least one item, so it exceeds the limit of {limit} items",
                node,
            )
            raise _TooManyLeaves

    def _leaf(self, node: yaml.MappingNode, path: tuple[str, ...], inherited: dict[str, Any]) -> Condition | None:
        known_problems = len(self.problems)
        values = {**inherited, **self._fields(node, path, "leaf")}
        if "prompt" not in values and not any(p.yaml_path == join(path, "prompt") for p in self.problems[known_problems:]):
            hint = ""
            if any(name.startswith(EXTENSION_PREFIX) for name in path[1:]):
                hint = f"; keys starting with '{EXTENSION_PREFIX}' are ignored only at the top level"
            self._nodes.report(join(path), f"leaf has no 'prompt' (every leaf needs the text to generate){hint}", node)
        if len(self.problems) > known_problems:
            return None  # only leaves without problems go on to the checks that need the model
        return Condition(path=path, line=line_of(node), **values)
