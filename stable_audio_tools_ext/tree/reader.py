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

import hashlib
from collections.abc import Collection, Iterator
from pathlib import Path
from typing import Any, Literal

import yaml

from ..request import InitAudio
from .conditions import DEFAULTS_KEY, EXTENSION_PREFIX, Condition, ConditionTreeError, Problem, segment_problem
from .fields import LEAF_FIELDS, LIST_FIELDS, field_checks, unknown_field_hint
from .plan import DEFAULT_MAX_ITEMS
from .reserved import reserved_branch_problem
from .sweep_reader import SweepReader
from .sweeps import SWEEP_KEYS, combination_count
from .yaml_nodes import YamlNodes, is_safe, join, kind_of, line_of

MappingKind = Literal["leaf", "branch", "invalid"]


class _TooManyLeaves(Exception):
    """Ends the walk once it has counted more leaves than the item limit (the problem is reported)."""


def read_condition_file(
    path: str | Path, known_samplers: Collection[str], max_items: int = DEFAULT_MAX_ITEMS, read_init_audio: bool = True
) -> tuple[list[Condition], list[Problem]]:
    """Read a condition tree file: its valid leaves and every problem found (nothing raised).

    Callers that check more (the model's window, output collisions) add their problems to these,
    so that a user sees everything wrong with a tree in one run. A tree with more than ``max_items``
    leaves is given up on as soon as the walk gets there, with no leaves (see ``TreeReader``). With
    ``read_init_audio`` false, a leaf naming an ``init_audio`` file is a problem and no file is opened
    (the studio: a tree sent over the network must not make the server read its files).
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
    base_dir = path.parent if read_init_audio else None
    return TreeReader(text, known_samplers, problems, max_items, base_dir).leaves(), problems


def parse_condition_tree(
    text: str,
    known_samplers: Collection[str],
    source: str = "<yaml>",
    max_items: int = DEFAULT_MAX_ITEMS,
    base_dir: Path | None = None,
) -> list[Condition]:
    """Validate YAML text into leaves in document order; raises ``ConditionTreeError``.

    ``init_audio`` paths are relative to ``base_dir``; without one, init audio is refused.
    """
    problems: list[Problem] = []
    leaves = TreeReader(text, known_samplers, problems, max_items, base_dir).leaves()
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
        self,
        text: str,
        known_samplers: Collection[str],
        problems: list[Problem],
        max_items: int = DEFAULT_MAX_ITEMS,
        base_dir: Path | None = None,
    ) -> None:
        self._text = text
        self._base_dir = base_dir
        self._init_files: dict[Path, tuple[InitAudio | None, str | None]] = {}
        self._checks = field_checks(known_samplers)
        self.problems = problems
        self._max_leaves = max_items
        self._counted = 0
        self._nodes: YamlNodes

    def leaves(self) -> list[Condition]:
        """Every valid leaf in document order (problems, if any, are in ``problems``)."""
        self._nodes = YamlNodes(self._text, self.problems)
        self._sweeps = SweepReader(self._nodes, self._checks)
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
        kinds: dict[str, list[str]] = {"scalar": [], "mapping": [], "list": [], "sweep": []}
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
            if name in SWEEP_KEYS:
                kinds["sweep"].append(name)
            elif isinstance(value_node, yaml.MappingNode):
                kinds["mapping"].append(name)
            elif isinstance(value_node, yaml.SequenceNode) and name not in LIST_FIELDS:
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
        leaf_keys = kinds["scalar"] + kinds["sweep"]
        if leaf_keys and kinds["mapping"]:
            self._nodes.report(
                join(path),
                f"mixes leaf fields ({', '.join(leaf_keys)}) with sub-branches "
                f"({', '.join(kinds['mapping'])}); a mapping is either a leaf or a branch "
                f"(shared fields go under '{DEFAULTS_KEY}:')",
                node,
            )
            return "invalid"
        if leaf_keys:
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
            if key in SWEEP_KEYS and what == "leaf":
                continue  # read by ``_sweep_axes`` and ``_name_template``
            if key not in LEAF_FIELDS:
                hint = f" ('{key}' belongs in a leaf, whose combinations it makes)" if key in SWEEP_KEYS else unknown_field_hint(key)
                self._nodes.report(field_path, f"unknown {what} field{hint}", key_node)
                continue
            value, error = self._field_value(key, value_node, field_path)
            if error is not None:
                self._nodes.report(field_path, error, value_node)
            else:
                values[key] = value  # an explicit null resets an inherited value to the CLI default
        return values

    def _field_value(self, key: str, node: yaml.Node, path: str) -> tuple[Any, str | None]:
        """A field's checked value from its node: one scalar, or a list of scalars for ``LIST_FIELDS``."""
        if isinstance(node, yaml.SequenceNode) and key in LIST_FIELDS:
            raw = self._nodes.scalars(node, path)
            return (None, None) if raw is None else self._checks[key](raw)
        if not isinstance(node, yaml.ScalarNode):
            return None, f"expected a single value, got {kind_of(node)}"
        return self._checks[key](self._nodes.scalar(node, path))

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
            if kind == "leaf":
                yield from self._leaves(value_node, child, defaults)
            else:
                self._count_leaf(child, value_node)

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

    def _count_leaf(self, path: tuple[str, ...], node: yaml.Node, leaves: int = 1, sweep_size: int = 0) -> None:
        """Count more leaves (or one failed leaf); past the limit, report where and end the walk.

        A sweep counts all its combinations at once, from the lengths of its lists, before any is built.
        """
        self._counted += leaves
        if self._counted > self._max_leaves:
            limit = f"{self._max_leaves:,}"
            what = f"this sweep makes {sweep_size:,} leaves, and " if sweep_size else ""
            self._nodes.report(
                join(path),
                f"stopped reading here: {what}the tree has more than {limit} leaves (an alias counts once per use), "
                f"and every leaf makes at least one item, so it exceeds the limit of {limit} items",
                node,
            )
            raise _TooManyLeaves

    def _leaves(self, node: yaml.MappingNode, path: tuple[str, ...], inherited: dict[str, Any]) -> Iterator[Condition]:
        """The leaf at ``path``: one condition, or one per combination of its ``_sweep``/``_zip``."""
        self._count_leaf(path, node)
        known_problems = len(self.problems)
        entries = {key: (key_node, value_node) for key, key_node, value_node in self._nodes.entries(node, path)}
        sweep = self._sweeps.read(entries, path)
        values = {**inherited, **self._fields(node, path, "leaf")}
        has_prompt = "prompt" in values or (sweep is not None and "prompt" in sweep.variables)
        if not has_prompt and not any(p.yaml_path == join(path, "prompt") for p in self.problems[known_problems:]):
            hint = ""
            if any(name.startswith(EXTENSION_PREFIX) for name in path[1:]):
                hint = f"; keys starting with '{EXTENSION_PREFIX}' are ignored only at the top level"
            self._nodes.report(join(path), f"leaf has no 'prompt' (every leaf needs the text to generate){hint}", node)
        if len(self.problems) > known_problems:
            return  # only leaves without problems go on to the checks that need the model
        if sweep is None:
            leaf = self._condition(path, values, {}, node, entries)
            if leaf is not None:
                yield leaf
            return
        size = combination_count(sweep.axes)
        self._count_leaf(path, node, size - 1, sweep_size=size)  # one was counted on the way in
        field_nodes = {key: value_node for key, (_, value_node) in entries.items()}
        for combination in self._sweeps.expand(sweep, path, values, field_nodes):
            leaf = self._condition(path + (combination.name,), combination.values, combination.variables, node, entries)
            if leaf is not None:
                yield leaf

    def _condition(
        self, path: tuple[str, ...], values: dict[str, Any], variables: dict[str, Any], node: yaml.Node, entries: dict
    ) -> Condition | None:
        """The leaf's condition, with its init audio found and read (``None`` if it cannot be: reported)."""
        init_audio = values.get("init_audio")
        if init_audio is not None:
            where = entries["init_audio"][1] if "init_audio" in entries else node
            init, problem = self._init_audio(init_audio)
            if problem is not None:
                self._nodes.report(join(path, "init_audio"), problem, where)
                return None
            values = {**values, "init_audio": init}
        return Condition(path=path, line=line_of(node), vars=variables, **values)

    def _init_audio(self, written: str) -> tuple[InitAudio | None, str | None]:
        """The file an ``init_audio`` value names (relative to the YAML file's folder) and its content hash.

        Hashed once per file: the hash, not the path, identifies the audio in fingerprints.
        """
        if self._base_dir is None:
            return None, "init audio files are not read here: use generate.py, which reads them beside its YAML file"
        path = (self._base_dir / written).resolve()
        if path not in self._init_files:
            try:
                if path.exists() and not path.is_file():  # a folder, a device, a pipe: nothing to hash, or no end
                    raise IsADirectoryError(0, "not a regular file")
                with path.open("rb") as file:
                    self._init_files[path] = (InitAudio(str(path), hashlib.file_digest(file, "sha256").hexdigest()), None)
            except FileNotFoundError:
                self._init_files[path] = (None, f"file not found: {path} (init_audio paths are relative to the YAML file)")
            except OSError as exc:
                self._init_files[path] = (None, f"cannot read {path}: {exc.strerror or exc}")
        return self._init_files[path]
