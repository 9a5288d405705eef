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
from collections.abc import Collection, Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml

from ..request import InitAudio, LeafAdapter
from .conditions import DEFAULTS_KEY, EXTENSION_PREFIX, Condition, ConditionTreeError, Problem
from .fields import LEAF_FIELDS, LIST_FIELDS, field_checks, unknown_field_hint
from .leaf_count import Edge, LeafCount
from .plan import DEFAULT_MAX_ITEMS, MAX_ITEMS_FLAG
from .shape import Shape, Shapes
from .sweep_reader import SweepReader
from .sweeps import SWEEP_KEYS, filled_without_variables
from .yaml_nodes import YamlNodes, join, kind_of, line_of


def read_condition_file(
    path: str | Path,
    known_samplers: Collection[str],
    max_items: int = DEFAULT_MAX_ITEMS,
    read_init_audio: bool = True,
    limit_flag: str = MAX_ITEMS_FLAG,
    adapters: Mapping[str, tuple[str, str]] | None = None,
) -> tuple[list[Condition], list[Problem]]:
    """Read a condition tree file: its valid leaves and every problem found (nothing raised).

    Callers that check more (the model's window, output collisions) add their problems to these,
    so that a user sees everything wrong with a tree in one run. A tree with more than ``max_items``
    leaves is refused before any is built, with no leaves (see ``TreeReader``); the message names
    ``limit_flag`` as what raises the limit. With ``read_init_audio`` false, a leaf naming an
    ``init_audio`` or ``lora`` file (or setting ``lora_strength``) is a problem and no file is opened
    (the studio: a tree sent over the network must not make the server read its files).
    With ``adapters`` (name -> the file's path and sha256: the studio's ``--lora`` adapters), a leaf's
    ``lora`` entries are names looked up there, never paths: the one way a tree sent to the studio
    applies adapters.
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
    return TreeReader(text, known_samplers, problems, max_items, base_dir, limit_flag, adapters).leaves(), problems


def parse_condition_tree(
    text: str,
    known_samplers: Collection[str],
    source: str = "<yaml>",
    max_items: int = DEFAULT_MAX_ITEMS,
    base_dir: Path | None = None,
    limit_flag: str = MAX_ITEMS_FLAG,
) -> list[Condition]:
    """Validate YAML text into leaves in document order; raises ``ConditionTreeError``.

    ``init_audio`` and ``lora`` paths are relative to ``base_dir``; without one, both are refused.
    """
    problems: list[Problem] = []
    leaves = TreeReader(text, known_samplers, problems, max_items, base_dir, limit_flag).leaves()
    if problems:
        raise ConditionTreeError(problems, source)
    return leaves


class TreeReader:
    """Walks one document's branches once, inheriting ``_defaults`` and checking every leaf.

    YAML aliases let a small file name the same mapping many times over (ten levels of ten aliases
    are 10^10 leaves in a few hundred bytes), so before walking, ``LeafCount`` counts the leaves on
    the node graph, each mapping once, and a tree with more than ``max_items`` is refused there.
    It counts leaves, not items: a leaf's item count is its ``n_samples``, which may come from the
    command line, unknown here - but every leaf makes at least one item, so more leaves than the
    item limit is already too many items. ``plan.build_plan`` checks the exact item count of a tree
    that passes. Entries that fail to be leaves (reported) count too, so that a bomb of broken
    leaves cannot flood the report either.
    """

    def __init__(
        self,
        text: str,
        known_samplers: Collection[str],
        problems: list[Problem],
        max_items: int = DEFAULT_MAX_ITEMS,
        base_dir: Path | None = None,
        limit_flag: str = MAX_ITEMS_FLAG,
        adapters: Mapping[str, tuple[str, str]] | None = None,
    ) -> None:
        self._text = text
        self._base_dir = base_dir
        self._by_name = adapters  # when given, ``lora`` names these (name -> path, sha256) instead of files
        self._hashes: dict[tuple[Path, str], tuple[str | None, str | None]] = {}  # (file, field) -> (sha256, problem)
        self._checks = field_checks(known_samplers)
        self.problems = problems
        self._max_leaves = max_items
        self._limit_flag = limit_flag
        self._nodes: YamlNodes
        self._recursive: set[Edge] = set()

    def leaves(self) -> list[Condition]:
        """Every valid leaf in document order (problems, if any, are in ``problems``)."""
        self._nodes = YamlNodes(self._text, self.problems)
        self._sweeps = SweepReader(self._nodes, self._checks)
        self._shapes = Shapes(self._nodes)
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
            shape = self._shapes.mapping(root, ())
            if shape.kind == "leaf":
                self._nodes.report(
                    "", "the root is a single leaf without a name; put it under a name, e.g. 'sample-1:'", root
                )
                return []
            if shape.problem is not None:
                self._report(shape, ())
            count = LeafCount(self._nodes, self._shapes)
            total = count.branch(root, ())
            if total > self._max_leaves:
                self._too_many(count, root, total)
                return []  # nothing is built from a tree that is too big
            self._recursive = count.recursive
            return list(self._branch(root, (), {}))
        finally:
            self._nodes.close()

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

    def _branch(self, node: yaml.MappingNode, path: tuple[str, ...], inherited: dict[str, Any]) -> Iterator[Condition]:
        """The leaves below ``node``, not following the entries the count found to be recursive aliases."""
        defaults = dict(inherited)
        for key, _, value_node in self._nodes.entries(node, path):
            if key != DEFAULTS_KEY:
                continue
            if isinstance(value_node, yaml.MappingNode):
                defaults.update(self._fields(value_node, path + (DEFAULTS_KEY,), f"'{DEFAULTS_KEY}'"))
            else:
                self._nodes.report(
                    join(path, DEFAULTS_KEY), f"expected a mapping of fields, got {kind_of(value_node)}", value_node
                )
        for key, key_node, value_node in self._shapes.children(node, path):
            child = path + (key,)
            shape = self._shapes.entry(child, key_node, value_node, (id(node), key) in self._recursive)
            if shape.kind == "branch":
                yield from self._branch(value_node, child, defaults)
            elif shape.kind == "leaf":
                yield from self._leaves(value_node, child, defaults)
            else:
                self._report(shape, child)

    def _report(self, shape: Shape, path: tuple[str, ...]) -> None:
        """Report why the mapping or entry at ``path`` cannot be walked."""
        assert shape.problem is not None and shape.at is not None  # an 'invalid' shape always says why
        self._nodes.report(join(path, shape.key), shape.problem, shape.at)

    def _too_many(self, count: LeafCount, root: yaml.MappingNode, total: int) -> None:
        """Report the tree as too big, at the entry where a count in document order passes the limit."""
        crossing = count.crossing(root, self._max_leaves)
        limit = f"{self._max_leaves:,}"
        sweep = f"this sweep makes {crossing.leaves:,} leaves, and " if crossing.leaves > 1 else ""
        self._nodes.report(
            join(crossing.path),
            f"too many leaves: {sweep}the tree makes {total:,} leaves (an alias counts once per use) and passes "
            f"{limit} here; every leaf makes at least one item, so the tree exceeds the limit of {limit} items "
            f"(raise it with {self._limit_flag})",
            crossing.node,
        )

    def _leaves(self, node: yaml.MappingNode, path: tuple[str, ...], inherited: dict[str, Any]) -> Iterator[Condition]:
        """The leaf at ``path``: one condition, or one per combination of its ``_sweep``/``_zip``.

        Every problem of the leaf is reported, and then it makes no leaves: a sweep with a bad value is
        still expanded without it, for the problems of its combinations (names, filled-in text).
        """
        known_problems = len(self.problems)
        entries = {key: (key_node, value_node) for key, key_node, value_node in self._nodes.entries(node, path)}
        field_nodes = {key: value_node for key, (_, value_node) in entries.items()}
        sweep = self._sweeps.read(entries, path)
        values = {**inherited, **self._fields(node, path, "leaf")}
        has_prompt = "prompt" in values or (sweep is not None and "prompt" in sweep.declared)
        if not has_prompt and not any(p.yaml_path == join(path, "prompt") for p in self.problems[known_problems:]):
            hint = ""
            if any(name.startswith(EXTENSION_PREFIX) for name in path[1:]):
                hint = f"; keys starting with '{EXTENSION_PREFIX}' are ignored only at the top level"
            self._nodes.report(join(path), f"leaf has no 'prompt' (every leaf needs the text to generate){hint}", node)
        values = self._sweeps.templates(values, sweep, path, field_nodes, node)
        if sweep is None:
            if len(self.problems) == known_problems:  # only leaves without problems go on to the model's checks
                leaf = self._condition(path, filled_without_variables(values), {}, node, entries)
                if leaf is not None:
                    yield leaf
            return
        if not sweep.expandable:
            return
        combinations = self._sweeps.expand(sweep, path, values, field_nodes)
        if len(self.problems) > known_problems:
            for _ in combinations:  # reports the combinations' own problems; none of them is a leaf
                pass
            return
        for combination in combinations:
            leaf = self._condition(path + (combination.name,), combination.values, combination.variables, node, entries)
            if leaf is not None:
                yield leaf

    def _condition(
        self, path: tuple[str, ...], values: dict[str, Any], variables: dict[str, Any], node: yaml.Node, entries: dict
    ) -> Condition | None:
        """The leaf's condition, with its init audio and adapter files found and hashed (``None`` if they
        cannot be: reported)."""
        values = dict(values)
        found = True
        init_audio = values.get("init_audio")
        if init_audio is not None:
            where = entries["init_audio"][1] if "init_audio" in entries else node
            file, problem = self._file(init_audio, "init_audio", "init audio files")
            if problem is not None:
                self._nodes.report(join(path, "init_audio"), problem, where)
                found = False
            values["init_audio"] = InitAudio(*file) if file else None
        strengths = values.pop("lora_strength", None)
        lora = values.get("lora")
        if lora is not None or strengths is not None:
            field = "lora" if lora is not None else "lora_strength"
            where = entries[field][1] if field in entries else node
            adapters, problem = self._adapters(lora, strengths)
            if problem is not None:
                self._nodes.report(join(path, field), problem, where)
                found = False
            values["lora"] = adapters
        return Condition(path=path, line=line_of(node), vars=variables, **values) if found else None

    def _adapters(
        self, lora: tuple[str, ...] | None, strengths: tuple[float, ...] | None
    ) -> tuple[tuple[LeafAdapter, ...] | None, str | None]:
        """The leaf's adapter files with their strengths: ``lora_strength`` is one value for all or one
        per file, in order; none is strength 1. Whether each file is a LoRA file is ``run``'s check."""
        if self._base_dir is None and self._by_name is None:
            return None, ("LoRA adapters (lora, lora_strength) are not read from a tree sent here: the server "
                          "does not open files a tree names; use generate.py, which reads them beside its YAML file")  # fmt: skip
        if lora is None:
            return None, "lora_strength needs lora in the leaf or its _defaults (the adapter files it applies to)"
        strengths = strengths or (1.0,)
        if len(strengths) > 1 and len(strengths) != len(lora):
            return None, (f"lora_strength: give one value for all adapters or one per lora file "
                          f"({len(lora)} files, {len(strengths)} strengths)")  # fmt: skip
        adapters = []
        for written, strength in zip(lora, strengths * len(lora) if len(strengths) == 1 else strengths):
            file, problem = self._file(written, "lora", "LoRA adapters") if self._by_name is None else self._named(written)
            if problem is not None:
                return None, problem
            adapters.append(LeafAdapter(*file, strength))
        return tuple(adapters), None

    def _named(self, written: str) -> tuple[tuple[str, str] | None, str | None]:
        """The adapter a ``lora`` entry names among ``adapters`` (path, sha256), or why there is none."""
        assert self._by_name is not None
        if written in self._by_name:
            return self._by_name[written], None
        if not self._by_name:
            return None, ("no LoRA adapters here (the studio was started without --lora); a tree sent here names "
                          "adapters by name, never by path")  # fmt: skip
        return None, (f"no LoRA adapter named {written!r} here; a tree sent here names adapters by name, never by "
                      f"path: {', '.join(self._by_name)}")  # fmt: skip

    def _file(self, written: str, field: str, what: str) -> tuple[tuple[str, str] | None, str | None]:
        """The file a path field names (relative to the YAML file's folder) and its content hash.

        Hashed once per file: the hash, not the path, identifies the file's content in fingerprints.
        """
        if self._base_dir is None:
            return None, f"{what} are not read here: use generate.py, which reads them beside its YAML file"
        path = (self._base_dir / written).resolve()
        if (path, field) not in self._hashes:
            try:
                if path.exists() and not path.is_file():  # a folder, a device, a pipe: nothing to hash, or no end
                    raise IsADirectoryError(0, "not a regular file")
                with path.open("rb") as file:
                    self._hashes[path, field] = (hashlib.file_digest(file, "sha256").hexdigest(), None)
            except FileNotFoundError:
                self._hashes[path, field] = (None, f"file not found: {path} ({field} paths are relative to the YAML file)")
            except OSError as exc:
                self._hashes[path, field] = (None, f"cannot read {path}: {exc.strerror or exc}")
        sha256, problem = self._hashes[path, field]
        return (None, problem) if problem else ((str(path), sha256), None)
