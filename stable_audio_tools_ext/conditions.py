"""Parse and validate a YAML condition tree into typed leaves.

The tree's mapping keys are path segments; a mapping whose values are all scalars is a *leaf*: one
condition (a prompt plus its generation parameters). A reserved ``_defaults:`` mapping at any level
supplies fields that every leaf below it inherits (the leaf's own value wins, the nearest level wins).

Validation walks PyYAML's *node* graph rather than the constructed Python objects, because only the
nodes still carry line numbers and show duplicate keys (``yaml.safe_load`` silently keeps the last
one). Every problem in the file is collected and reported at once, each with its YAML path, so a user
fixing line 4,000 of a sweep does not have to rerun once per typo.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

DEFAULTS_KEY = "_defaults"
_MERGE_TAG = "tag:yaml.org,2002:merge"

# Fields a leaf (or a ``_defaults:`` mapping) may set, with the validator for each value.
LEAF_FIELDS = (
    "prompt",
    "negative_prompt",
    "seconds_start",
    "seconds_total",
    "seed",
    "steps",
    "cfg_scale",
    "sampler_type",
    "n_samples",
)


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the condition tree, located by YAML path (and line when known)."""

    yaml_path: str
    message: str
    line: int | None = None

    def render(self, source: str) -> str:
        where = f"{source}:{self.line}" if self.line is not None else source
        return f"{where}: {self.yaml_path or '<root>'}: {self.message}"


class ConditionTreeError(ValueError):
    """Raised with every problem found in a condition tree, so they can all be shown at once."""

    def __init__(self, problems: list[Problem], source: str) -> None:
        # In file order (problems found by different checks arrive grouped by check); unlocated last.
        self.problems = sorted(problems, key=lambda p: (p.line is None, p.line or 0))
        self.source = source
        super().__init__("\n".join(p.render(source) for p in self.problems))

    def report(self) -> str:
        """A count line, then one ``file:line: yaml/path: message`` line per problem (CLI and UI)."""
        count = len(self.problems)
        lines = [f"{count} problem{'s' * (count != 1)} in {self.source}:"]
        return "\n".join(lines + [f"  {problem.render(self.source)}" for problem in self.problems])


@dataclass(frozen=True)
class Condition:
    """A validated leaf of the tree: a prompt and the parameters it sets (``None`` = not set).

    Unset parameters are resolved later against command-line defaults and the model, which this
    module deliberately knows nothing about.
    """

    path: tuple[str, ...]
    prompt: str
    negative_prompt: str | None = None
    seconds_start: float | None = None
    seconds_total: float | None = None
    seed: int | None = None
    steps: int | None = None
    cfg_scale: float | None = None
    sampler_type: str | None = None
    n_samples: int | None = None
    line: int | None = None

    @property
    def name(self) -> str:
        """The leaf path as written in messages and the manifest, e.g. ``music/drum/sample-1``."""
        return "/".join(self.path)


def read_condition_file(path: str | Path, known_samplers: Collection[str]) -> tuple[list[Condition], list[Problem]]:
    """Read a condition tree file: its valid leaves and every problem found (nothing raised).

    Callers that check more (the model's window, output collisions) add their problems to these,
    so that a user sees everything wrong with a tree in one run.
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
    reader = _TreeReader(known_samplers)
    return reader.read(text), reader.problems


def parse_condition_tree(
    text: str, known_samplers: Collection[str], source: str = "<yaml>"
) -> list[Condition]:
    """Validate YAML text into leaves in document order; raises ``ConditionTreeError``."""
    reader = _TreeReader(known_samplers)
    leaves = reader.read(text)
    if reader.problems:
        raise ConditionTreeError(reader.problems, source)
    return leaves


def _line(node: yaml.Node) -> int:
    return node.start_mark.line + 1


def _join(path: tuple[str, ...], key: str | None = None) -> str:
    return "/".join(path + ((key,) if key is not None else ()))


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check_text(value: Any, *, required: bool) -> tuple[Any, str | None]:
    if value is None:
        return None, "must not be empty" if required else None
    if not isinstance(value, str):
        return None, f"expected text, got {type(value).__name__} {value!r} (quote it)"
    if required and not value.strip():
        return None, "must not be empty or whitespace"
    return value, None


def _check_number(value: Any, *, minimum: float, strict: bool) -> tuple[Any, str | None]:
    if not _is_number(value):
        return None, f"expected a number, got {type(value).__name__} {value!r}"
    if not math.isfinite(value):
        return None, f"expected a finite number, got {value!r}"
    if value < minimum or (strict and value == minimum):
        bound = f"> {minimum:g}" if strict else f">= {minimum:g}"
        return None, f"expected a number {bound}, got {value!r}"
    return float(value), None


def _check_int(value: Any, *, minimum: int) -> tuple[Any, str | None]:
    if not isinstance(value, int) or isinstance(value, bool):
        return None, f"expected an integer, got {type(value).__name__} {value!r}"
    if value < minimum:
        return None, f"expected an integer >= {minimum}, got {value!r}"
    if value >= 2**63:
        return None, f"expected an integer < 2**63, got {value!r}"
    return value, None


def _check_any_number(value: Any) -> tuple[Any, str | None]:
    if not _is_number(value) or not math.isfinite(value):
        return None, f"expected a finite number, got {type(value).__name__} {value!r}"
    return float(value), None


_FIELD_CHECKS: dict[str, Callable[[Any], tuple[Any, str | None]]] = {
    "prompt": lambda v: _check_text(v, required=True),
    "negative_prompt": lambda v: _check_text(v, required=False),
    "seconds_start": lambda v: _check_number(v, minimum=0.0, strict=False),
    "seconds_total": lambda v: _check_number(v, minimum=0.0, strict=True),
    "seed": lambda v: _check_int(v, minimum=0),
    "steps": lambda v: _check_int(v, minimum=1),
    "cfg_scale": _check_any_number,
    "n_samples": lambda v: _check_int(v, minimum=1),
}
assert set(_FIELD_CHECKS) | {"sampler_type"} == set(LEAF_FIELDS)


def segment_problem(segment: str) -> str | None:
    """Why ``segment`` cannot be a directory or file name component, or ``None`` if it can."""
    if segment.strip() == "":
        return "empty name"
    if segment in (".", ".."):
        return f"{segment!r} is not allowed as a name"
    for bad in ("/", "\\", "\x00"):
        if bad in segment:
            return f"name must not contain {bad!r}"
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in segment):
        return "name must not contain control characters"
    return None


class _TreeReader:
    """Walks the YAML node graph once, collecting leaves and problems."""

    def __init__(self, known_samplers: Collection[str]) -> None:
        self.known_samplers = sorted(known_samplers)
        self.problems: list[Problem] = []
        self._loader: yaml.SafeLoader | None = None
        self._prepared: set[int] = set()
        self._keys: dict[int, str | None] = {}

    def _problem(self, path: str, message: str, node: yaml.Node | None = None) -> None:
        self.problems.append(Problem(path, message, _line(node) if node is not None else None))

    def read(self, text: str) -> list[Condition]:
        self._loader = yaml.SafeLoader(text)
        try:
            try:
                root = self._loader.get_single_node()
            except yaml.MarkedYAMLError as exc:
                mark = exc.problem_mark or exc.context_mark
                line = mark.line + 1 if mark is not None else None
                what = exc.problem or exc.context or "invalid YAML"
                self.problems.append(Problem("", f"YAML syntax error: {what}", line))
                return []
            except yaml.YAMLError as exc:
                self.problems.append(Problem("", f"YAML error: {exc}"))
                return []
            if root is None:
                self._problem("", "the file is empty: expected a mapping of names to leaves")
                return []
            if not isinstance(root, yaml.MappingNode):
                self._problem("", f"the root must be a mapping of names, got {self._kind(root)}", root)
                return []
            if self._classify(root, ()) == "leaf":
                self._problem(
                    "", "the root is a single leaf without a name; put it under a name, e.g. 'sample-1:'", root
                )
                return []
            return list(self._branch(root, (), {}))
        finally:
            self._loader.dispose()

    @staticmethod
    def _kind(node: yaml.Node) -> str:
        if isinstance(node, yaml.SequenceNode):
            return "a list"
        if isinstance(node, yaml.MappingNode):
            return "a mapping"
        return f"the scalar {node.value!r}"

    def _entries(self, node: yaml.MappingNode, path: tuple[str, ...]) -> list[tuple[str, yaml.Node, yaml.Node]]:
        """Key/value pairs of a mapping, keys as strings; explicit keys override merged ('<<') ones."""
        self._prepare(node, path)
        entries: dict[str, tuple[yaml.Node, yaml.Node]] = {}
        for key_node, value_node in node.value:
            key = self._key(key_node, path)
            if key is not None:
                entries[key] = (key_node, value_node)
        return [(key, key_node, value_node) for key, (key_node, value_node) in entries.items()]

    def _key(self, key_node: yaml.Node, path: tuple[str, ...]) -> str | None:
        """A mapping key as a path segment string (reported once and ``None`` if it cannot be one)."""
        if id(key_node) not in self._keys:
            if isinstance(key_node, yaml.ScalarNode):
                value = self._scalar(key_node, _join(path))
                self._keys[id(key_node)] = "null" if value is None else str(value)
            else:
                self._problem(_join(path), "keys must be plain names, not lists or mappings", key_node)
                self._keys[id(key_node)] = None
        return self._keys[id(key_node)]

    def _prepare(self, node: yaml.MappingNode, path: tuple[str, ...]) -> None:
        """Once per node: report keys written twice, then resolve merge keys ('<<: *anchor') in place."""
        assert self._loader is not None
        if id(node) in self._prepared:
            return
        self._prepared.add(id(node))
        seen: dict[str, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == _MERGE_TAG:
                continue
            key = self._key(key_node, path)
            if key is None:
                continue
            if key in seen:
                self._problem(_join(path, key), f"duplicate key (first defined on line {seen[key]})", key_node)
            else:
                seen[key] = _line(key_node)
        try:
            self._loader.flatten_mapping(node)
        except yaml.MarkedYAMLError as exc:
            self._problem(_join(path), f"invalid merge key: {exc.problem}", node)

    def _scalar(self, node: yaml.ScalarNode, path: str) -> Any:
        assert self._loader is not None
        try:
            return self._loader.construct_object(node, deep=True)
        except yaml.YAMLError as exc:
            message = getattr(exc, "problem", None) or str(exc)
            self._problem(path, f"cannot read value: {message} (only plain YAML is allowed)", node)
            return None

    def _classify(self, node: yaml.MappingNode, path: tuple[str, ...]) -> str:
        """'leaf' (all values scalar), 'branch' (all mappings), or 'invalid' (reported)."""
        self._prepare(node, path)
        kinds: dict[str, list[str]] = {"scalar": [], "mapping": [], "list": []}
        for key_node, value_node in node.value:
            if isinstance(key_node, yaml.ScalarNode) and key_node.value == DEFAULTS_KEY:
                continue
            if value_node.tag not in yaml.SafeLoader.yaml_constructors:
                self._problem(
                    _join(path, str(getattr(key_node, "value", "?"))),
                    f"YAML tag {value_node.tag!r} is not allowed (trees are read with the safe loader)",
                    value_node,
                )
                return "invalid"
            kind = (
                "mapping"
                if isinstance(value_node, yaml.MappingNode)
                else "list"
                if isinstance(value_node, yaml.SequenceNode)
                else "scalar"
            )
            kinds[kind].append(str(getattr(key_node, "value", "?")))
        if kinds["list"]:
            self._problem(
                _join(path),
                f"lists are not supported ({', '.join(kinds['list'])}): "
                "expected a leaf (fields like prompt: ...) or named sub-branches",
                node,
            )
            return "invalid"
        if kinds["scalar"] and kinds["mapping"]:
            self._problem(
                _join(path),
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
        self._problem(_join(path), "empty mapping: expected a leaf with a prompt, or sub-branches", node)
        return "invalid"

    def _fields(self, node: yaml.MappingNode, path: tuple[str, ...], what: str) -> dict[str, Any]:
        """Validated field values of a leaf or ``_defaults`` mapping (``None`` where set to null)."""
        values: dict[str, Any] = {}
        for key, key_node, value_node in self._entries(node, path):
            field_path = _join(path, key)
            if key not in LEAF_FIELDS:
                close = difflib.get_close_matches(key, LEAF_FIELDS, n=1, cutoff=0.6)
                hint = f"; did you mean '{close[0]}'?" if close else f"; known fields: {', '.join(LEAF_FIELDS)}"
                self._problem(field_path, f"unknown {what} field{hint}", key_node)
                continue
            if not isinstance(value_node, yaml.ScalarNode):
                self._problem(field_path, f"expected a single value, got {self._kind(value_node)}", value_node)
                continue
            raw = self._scalar(value_node, field_path)
            if key == "sampler_type":
                value, error = self._check_sampler(raw)
            else:
                value, error = _FIELD_CHECKS[key](raw)
            if error is not None:
                self._problem(field_path, error, value_node)
            else:
                values[key] = value  # an explicit null resets an inherited value to the CLI default
        return values

    def _check_sampler(self, value: Any) -> tuple[Any, str | None]:
        if value is None:
            return None, None
        if not isinstance(value, str) or value not in self.known_samplers:
            close = difflib.get_close_matches(str(value), self.known_samplers, n=1)
            hint = f"did you mean '{close[0]}'? " if close else ""
            return None, f"unknown sampler {value!r}; {hint}known: {', '.join(self.known_samplers)}"
        return value, None

    def _branch(self, node: yaml.MappingNode, path: tuple[str, ...], inherited: dict[str, Any]) -> Iterator[Condition]:
        entries = self._entries(node, path)
        defaults = dict(inherited)
        for key, _, value_node in entries:
            if key != DEFAULTS_KEY:
                continue
            if isinstance(value_node, yaml.MappingNode):
                defaults.update(self._fields(value_node, path + (DEFAULTS_KEY,), f"'{DEFAULTS_KEY}'"))
            else:
                self._problem(
                    _join(path, DEFAULTS_KEY), f"expected a mapping of fields, got {self._kind(value_node)}", value_node
                )
        for key, key_node, value_node in entries:
            if key == DEFAULTS_KEY:
                continue
            child = path + (key,)
            bad_name = segment_problem(key)
            if bad_name is not None:
                self._problem(_join(child), bad_name, key_node)
                continue
            if not isinstance(value_node, yaml.MappingNode):
                self._problem(
                    _join(child),
                    f"expected a leaf (a mapping with prompt: ...) or sub-branches, got {self._kind(value_node)}",
                    value_node,
                )
                continue
            kind = self._classify(value_node, child)
            if kind == "branch":
                yield from self._branch(value_node, child, defaults)
            elif kind == "leaf":
                leaf = self._leaf(value_node, child, defaults)
                if leaf is not None:
                    yield leaf

    def _leaf(self, node: yaml.MappingNode, path: tuple[str, ...], inherited: dict[str, Any]) -> Condition | None:
        known_problems = len(self.problems)
        values = {**inherited, **self._fields(node, path, "leaf")}
        if "prompt" not in values and not any(p.yaml_path == _join(path, "prompt") for p in self.problems):
            self._problem(_join(path), "leaf has no 'prompt' (every leaf needs the text to generate)", node)
        if len(self.problems) > known_problems:
            return None  # only leaves without problems go on to the checks that need the model
        return Condition(path=path, line=_line(node), **values)
