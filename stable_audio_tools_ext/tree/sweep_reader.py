"""Read a leaf's ``_sweep``/``_zip``/``_name`` from YAML nodes and expand it, reporting problems with lines.

The grid itself (axes, combinations, templates, default names) is ``sweeps``; this module checks what
the user wrote - variable names, lists, field values, values that repeat, placeholders, the names the
combinations get - and reports each problem once, at the line it comes from, with the YAML path a
user can search for. One problem does not hide another: a bad value is left out of the grid and the
rest is still expanded and checked, and templates are checked against every variable the leaf
declares, whatever its values.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import yaml

from .conditions import DEFAULTS_KEY, segment_problem
from .fields import LEAF_FIELDS, LIST_FIELDS, Check
from .sweeps import (
    NAME_KEY,
    SWEEP_KEY,
    TEMPLATE_FIELDS,
    ZIP_KEY,
    Axis,
    combinations,
    default_name,
    fill,
    unknown_placeholders,
    variable_name_problem,
)
from .yaml_nodes import YamlNodes, join, kind_of

# A sweep whose names or templates go wrong goes wrong for many combinations alike; past this many
# problems in one leaf the rest are summarised in one line rather than flooding the report.
MAX_PROBLEMS_PER_SWEEP = 10

Entries = Mapping[str, tuple[yaml.Node, yaml.Node]]  # a leaf's key -> (key node, value node)
_LEFT_OUT = object()  # a sweep value that is reported (wrong, or a repeat) and so not part of the grid


@dataclass(frozen=True)
class Sweep:
    """A leaf's grid as read: its axes, its name template, and the node that names are reported at.

    ``declared`` are all its variables, including those none of whose values could be used: what
    its templates may name. ``expandable``: every declared variable has a usable value and the
    name template is usable, so the combinations can be made (and their own problems found).
    """

    axes: list[Axis]
    name_template: str | None
    name_node: yaml.Node
    declared: tuple[str, ...]
    expandable: bool

    @property
    def variables(self) -> list[str]:
        return [name for axis in self.axes for name in axis.names]


@dataclass(frozen=True)
class Combination:
    """One leaf of an expanded sweep: its name, its variables' values (as written) and its field values."""

    name: str
    variables: dict[str, Any]
    values: dict[str, Any]


class SweepReader:
    """Reads and expands the sweeps of one document; problems go to ``nodes`` (reported once each)."""

    def __init__(self, nodes: YamlNodes, checks: Mapping[str, Check]) -> None:
        self._nodes = nodes
        self._checks = checks

    def read(self, entries: Entries, path: tuple[str, ...]) -> Sweep | None:
        """The leaf's sweep, or ``None`` when it has none (or it is broken: check the problem count)."""
        if SWEEP_KEY not in entries and ZIP_KEY not in entries:
            if NAME_KEY in entries:
                key_node = entries[NAME_KEY][0]
                self._nodes.report(join(path, NAME_KEY), f"'{NAME_KEY}' names the leaves of a '{SWEEP_KEY}' or "
                                   f"'{ZIP_KEY}', and this leaf has neither", key_node)  # fmt: skip
            return None
        swept = self._variables(entries, SWEEP_KEY, path, taken=(), distinct=True) if SWEEP_KEY in entries else {}
        axes = []
        for name, values in swept.items():
            usable = tuple((value,) for value in values or () if value is not _LEFT_OUT)
            if usable:
                axes.append(Axis((name,), usable))
        zipped: dict[str, tuple[Any, ...] | None] = {}
        if ZIP_KEY in entries:
            zipped = self._variables(entries, ZIP_KEY, path, taken=swept, distinct=False)
            zip_axis = self._zip_axis(zipped, path + (ZIP_KEY,), entries[ZIP_KEY][1])
            if zip_axis is not None:
                axes.append(zip_axis)
        declared = (*swept, *zipped)
        template, name_node, name_ok = self._name_template(entries, path, declared)
        expandable = name_ok and {name for axis in axes for name in axis.names} == set(declared)
        return Sweep(axes, template, name_node, declared, expandable)

    def _variables(
        self, entries: Entries, key: str, path: tuple[str, ...], taken: Collection[str], distinct: bool
    ) -> dict[str, tuple[Any, ...] | None]:
        """``{variable: values}`` of a ``_sweep`` or ``_zip`` mapping (see ``_values``); bad names are left out.

        ``taken`` are the variables already defined (those of ``_sweep``, when reading ``_zip``);
        ``distinct``: each variable's values must make different leaves (``_sweep``; in ``_zip``
        it is the rows that must differ).
        """
        key_node, node = entries[key]
        where = path + (key,)
        if not isinstance(node, yaml.MappingNode):
            self._nodes.report(join(where), f"expected a mapping of variable names to lists, got {kind_of(node)}", node)
            return {}
        variables: dict[str, tuple[Any, ...] | None] = {}
        for name, name_node, values_node in self._nodes.entries(node, where):
            problem = variable_name_problem(name)
            if problem is None and name in entries:
                problem = f"'{name}' is both swept and set as a field of this leaf; keep one of them"
            if problem is None and name in taken:
                problem = f"'{name}' is in both '{SWEEP_KEY}' and '{ZIP_KEY}'; keep one of them"
            if problem is not None:
                self._nodes.report(join(where, name), problem, name_node)
                continue
            variables[name] = self._values(name, values_node, join(where, name), distinct)
        return variables

    def _values(self, name: str, node: yaml.Node, path: str, distinct: bool) -> tuple[Any, ...] | None:
        """One variable's list, each value checked as its field's values are (when it names a field).

        ``None`` if it is not a list of values; otherwise one entry per item, ``_LEFT_OUT`` for the
        items reported: a wrong value, or (``distinct``) one that makes the same leaves as an earlier one.
        """
        if not isinstance(node, yaml.SequenceNode):
            self._nodes.report(path, f"expected a list of values, got {kind_of(node)} (one value is a list of one: "
                               "[value])", node)  # fmt: skip
            return None
        if not node.value:
            self._nodes.report(path, "empty list: a sweep variable needs at least one value", node)
            return None
        values: list[Any] = []
        seen: dict[Any, tuple[int, Any]] = {}  # what a value makes -> (its index, the value as written)
        for index, item in enumerate(node.value):
            value, problem = self._value(name, item, f"{path}[{index}]")
            if problem is None and distinct:
                first = seen.setdefault(self._identity(name, value), (index, value))
                if first[0] != index:
                    problem = (f"{value!r} is the same {name} as {first[1]!r} at [{first[0]}], so both would make "
                               "the same leaves; keep one")  # fmt: skip
            if problem is not None:
                self._nodes.report(f"{path}[{index}]", problem, item)
            values.append(value if problem is None else _LEFT_OUT)
        return tuple(values)

    def _identity(self, name: str, value: Any) -> Any:
        """What a variable's value makes a leaf get: a field's value as checked (``7`` and ``7.0`` are one
        cfg_scale), a template variable's value as written, its type included (``7`` and ``7.0`` read
        differently in a prompt)."""
        return self._checks[name](value)[0] if name in LEAF_FIELDS else (type(value), value)

    def _value(self, name: str, node: yaml.Node, path: str) -> tuple[Any, str | None]:
        if isinstance(node, yaml.SequenceNode) and name in LIST_FIELDS:
            value = self._nodes.scalars(node, path)
        elif isinstance(node, yaml.ScalarNode):
            value = self._nodes.scalar(node, path)
        else:
            return None, f"expected a single value, got {kind_of(node)}"
        if value is None:
            return None, "expected a value, got null"
        if name in LEAF_FIELDS:
            return value, self._checks[name](value)[1]
        return value, None

    def _zip_axis(self, variables: Mapping[str, tuple[Any, ...] | None], where: tuple[str, ...], node: yaml.Node) -> Axis | None:
        """The rows of ``_zip``'s lists that can be used: equally long lists, rows without a reported
        value, each row making different leaves from the rows before it (repeats are reported)."""
        lists = {name: values for name, values in variables.items() if values is not None}
        lengths = {name: len(values) for name, values in lists.items()}
        if len(set(lengths.values())) > 1:
            listed = ", ".join(f"{name}: {length}" for name, length in lengths.items())
            self._nodes.report(join(where), f"the lists of '{ZIP_KEY}' advance together, so they must be "
                               f"equally long; got {listed}", node)  # fmt: skip
            return None
        names = tuple(lists)
        rows: list[tuple[Any, ...]] = []
        seen: dict[tuple[Any, ...], int] = {}
        for index, row in enumerate(zip(*lists.values())):
            if any(value is _LEFT_OUT for value in row):
                continue
            first = seen.setdefault(tuple(self._identity(name, value) for name, value in zip(names, row)), index)
            if first != index:
                shown = _describe(dict(zip(names, row)))
                self._nodes.report(join(where), f"position [{index}] ({shown}) is the same as position [{first}], so "
                                   "both would make the same leaves; keep one", node)  # fmt: skip
                continue
            rows.append(row)
        return Axis(names, tuple(rows)) if rows else None

    def _name_template(
        self, entries: Entries, path: tuple[str, ...], variables: Sequence[str]
    ) -> tuple[str | None, yaml.Node, bool]:
        """``_name`` (``None`` without one), the node names are reported at, and whether it can be used."""
        fallback = entries[SWEEP_KEY if SWEEP_KEY in entries else ZIP_KEY][1]
        if NAME_KEY not in entries:
            return None, fallback, True
        node = entries[NAME_KEY][1]
        value = self._nodes.scalar(node, join(path, NAME_KEY)) if isinstance(node, yaml.ScalarNode) else None
        if not isinstance(value, str) or not value.strip():
            self._nodes.report(join(path, NAME_KEY), f"expected a name template like \"{{{variables[0] if variables else 'x'}"
                               f"}}\", got {kind_of(node)}", node)  # fmt: skip
            return None, fallback, False
        problem = _placeholder_problem(value, variables)
        if problem is not None:
            self._nodes.report(join(path, NAME_KEY), problem, node)
        return value, node, problem is None

    def templates(
        self,
        values: dict[str, Any],
        sweep: Sweep | None,
        path: tuple[str, ...],
        field_nodes: Mapping[str, yaml.Node],
        leaf_node: yaml.Node,
    ) -> dict[str, Any]:
        """The leaf's field values less its templates that name no variable of the leaf (each reported).

        Checked once per leaf, whatever else is wrong with it. Every ``prompt``, ``negative_prompt``
        and ``init_audio`` is a template, in swept leaves and plain ones alike, so that ``{{`` means
        one brace everywhere: a plain leaf has no variables, so a placeholder there is a mistake (a
        ``_defaults`` template reaching a leaf without a sweep), not text to generate. Swept
        templates (a ``prompt`` list in ``_sweep``) are checked per combination by ``expand``.
        """
        names = list(sweep.declared) if sweep is not None else []
        kept = dict(values)
        for field in TEMPLATE_FIELDS:
            template = values.get(field)
            if not isinstance(template, str) or field in names:
                continue
            problem = _placeholder_problem(template, names)
            if problem is None:
                continue
            if field not in field_nodes:
                problem += f"; the {field} comes from '{DEFAULTS_KEY}'"
            where = field_nodes.get(field, sweep.name_node if sweep is not None else leaf_node)
            self._nodes.report(join(path, field), problem, where)
            del kept[field]
        return kept

    def expand(
        self, sweep: Sweep, path: tuple[str, ...], values: dict[str, Any], field_nodes: Mapping[str, yaml.Node]
    ) -> Iterator[Combination]:
        """The sweep's combinations in order, each with its fields filled in; bad ones are reported, not yielded.

        ``values`` are the leaf's own and inherited field values (templates unfilled); ``field_nodes``
        the nodes of the leaf's own fields, for the line of a template's problem.
        """
        problems = _ProblemLog(self._nodes, path)
        claimed: dict[str, tuple[str, dict[str, Any]]] = {}
        for variables in combinations(sweep.axes):
            filled = dict(values)
            for name, value in variables.items():
                if name in LEAF_FIELDS:
                    filled[name] = self._checks[name](value)[0]
            ok = True
            for field in TEMPLATE_FIELDS:
                template = filled.get(field)
                if not isinstance(template, str):
                    continue
                where = field_nodes.get(field, sweep.name_node)
                text, problem = _filled(template, variables, sweep.variables)
                if problem is None:
                    text, problem = self._checks[field](text)
                    problem = None if problem is None else f"after filling in {_describe(variables)}: {problem}"
                if problem is not None:
                    problems.add(join(path, field), problem, where)
                    ok = False
                filled[field] = text
            name, problem = self._name(sweep, variables, filled)
            if problem is None:
                problem = _collision(name, variables, claimed)
            if problem is not None:
                problems.add(join(path, NAME_KEY if sweep.name_template else SWEEP_KEY), problem, sweep.name_node)
            elif ok:
                yield Combination(name, variables, filled)
        problems.close(sweep.name_node)

    def _name(self, sweep: Sweep, variables: dict[str, Any], filled: dict[str, Any]) -> tuple[str, str | None]:
        """The combination's leaf name: ``_name`` filled in, or its values (swept templates as filled in)."""
        if sweep.name_template is None:
            shown = {name: filled[name] if name in TEMPLATE_FIELDS else value for name, value in variables.items()}
            name, problem = default_name(shown), None
        else:
            name, problem = _filled(sweep.name_template, variables, sweep.variables)
            if problem is not None:
                return "", problem
        bad = segment_problem(name)
        if bad is not None:
            how = "" if sweep.name_template else f" (set '{NAME_KEY}' to name the combinations)"
            return name, f"the leaf name {name!r} for {_describe(variables)} cannot be a file name: {bad}{how}"
        return name, None


def _placeholder_problem(template: str, variables: Sequence[str]) -> str | None:
    try:
        unknown = unknown_placeholders(template, variables)
    except ValueError as exc:
        return f"invalid template {template!r}: {exc} (write '{{{{' and '}}}}' for literal braces)"
    if not unknown:
        return None
    problem = f"unknown placeholder {{{unknown[0]}}} in {template!r}"
    if variables:
        return f"{problem}; the sweep's variables are: {', '.join(variables)}"
    return (f"{problem}: this leaf has no '{SWEEP_KEY}' or '{ZIP_KEY}' whose variables could fill it; "
            "write '{{' and '}}' for literal braces")  # fmt: skip


def _filled(template: str, variables: dict[str, Any], names: list[str]) -> tuple[str, str | None]:
    problem = _placeholder_problem(template, names)
    if problem is not None:
        return template, problem
    try:
        return fill(template, variables), None
    except (ValueError, TypeError, IndexError) as exc:  # a format spec or an index that does not fit the value
        return template, f"cannot fill {template!r} with {_describe(variables)}: {exc}"


def _describe(variables: dict[str, Any]) -> str:
    return ", ".join(f"{name}={value!r}" for name, value in variables.items())


def _collision(name: str, variables: dict[str, Any], claimed: dict[str, tuple[str, dict[str, Any]]]) -> str | None:
    """Two combinations named alike (also case-only: one file on case-insensitive filesystems)."""
    folded = name.casefold()
    if folded in claimed:
        other, other_variables = claimed[folded]
        return (f"{_describe(variables)} and {_describe(other_variables)} both get the leaf name {name!r}"
                f"{'' if name == other else f' / {other!r} (names differing only in case collide)'}; "
                f"make '{NAME_KEY}' use the variables that tell them apart")  # fmt: skip
    claimed[folded] = (name, variables)
    return None


class _ProblemLog:
    """Reports a sweep's problems once each, at most ``MAX_PROBLEMS_PER_SWEEP`` of them, then a count."""

    def __init__(self, nodes: YamlNodes, path: tuple[str, ...]) -> None:
        self._nodes = nodes
        self._path = path
        self._seen: set[tuple[str, str]] = set()
        self._left_out = 0

    def add(self, path: str, message: str, node: yaml.Node) -> None:
        if (path, message) in self._seen:
            return
        if len(self._seen) >= MAX_PROBLEMS_PER_SWEEP:
            self._left_out += 1
            return
        self._seen.add((path, message))
        self._nodes.report(path, message, node)

    def close(self, node: yaml.Node) -> None:
        if self._left_out:
            self._nodes.report(join(self._path), f"... and {self._left_out} more problems in this sweep", node)
