"""Parameter grids in a leaf: ``_sweep`` (Cartesian product), ``_zip`` (lists that advance together), ``_name``.

A leaf with a sweep stands for one leaf per combination of its variables. A variable named like a
leaf field sets that field; any other name is a template variable. ``prompt``, ``negative_prompt``
and ``init_audio`` (the ``TEMPLATE_FIELDS``) may use ``{name}`` placeholders, filled with Python's
``str.format`` (so ``{cfg_scale:g}`` works and a literal brace is written ``{{``). Those fields are
templates in every leaf, swept or not, so that ``{{`` means one brace everywhere; a plain leaf has no
variables to fill in (``filled_without_variables``). Each combination
becomes a child leaf named by the ``_name`` template or, without one, by its values joined with
``-``: the leaf ``drums/loops`` with ``genre: [techno, jazz]`` gives ``drums/loops/techno`` and
``drums/loops/jazz``. Seeds are derived from that path, so adding a value to a sweep leaves every
existing combination's audio as it was.

This module holds the pure parts (axes, combinations, templates, names); ``reader`` reads the YAML
nodes and reports problems with their lines.
"""

from __future__ import annotations

import itertools
import re
import string
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

SWEEP_KEY = "_sweep"
ZIP_KEY = "_zip"
NAME_KEY = "_name"
SWEEP_KEYS = (SWEEP_KEY, ZIP_KEY, NAME_KEY)
TEMPLATE_FIELDS = ("prompt", "negative_prompt", "init_audio")
_VARIABLE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_INDEXED = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)(?:\[\d+\])*")  # a variable, optionally indexed: cfg_interval[0]


@dataclass(frozen=True)
class Axis:
    """One dimension of the grid: a ``_sweep`` variable, or all ``_zip`` variables advancing together."""

    names: tuple[str, ...]
    rows: tuple[tuple[Any, ...], ...]  # one tuple of values (one per name) per position on the axis


def variable_name_problem(name: str) -> str | None:
    """Why ``name`` cannot be a sweep variable (it must work as a ``{name}`` placeholder), or ``None``."""
    if _VARIABLE_NAME.fullmatch(name) is None:
        return "a sweep variable name must be letters, digits and '_', not starting with a digit"
    return None


def combinations(axes: Sequence[Axis]) -> Iterator[dict[str, Any]]:
    """Every combination as ``{variable: value}``; the first axis varies slowest (``itertools.product``)."""
    for rows in itertools.product(*(axis.rows for axis in axes)):
        yield {name: value for axis, row in zip(axes, rows) for name, value in zip(axis.names, row)}


def placeholders(template: str) -> list[str]:
    """The variable names a template uses; raises ``ValueError`` for a malformed one (a lone ``{``)."""
    return [field for _, field, _, _ in string.Formatter().parse(template) if field is not None]


def unknown_placeholders(template: str, variables: Sequence[str]) -> list[str]:
    """Placeholders that are not ``variables`` (``{0}``, ``{}`` and attributes ``{a.b}`` included).

    An index is allowed, for the list values of ``cfg_interval``: ``{cfg_interval[0]}``.
    """
    return [name for name in placeholders(template) if _INDEXED.fullmatch(name) is None
            or _INDEXED.fullmatch(name).group(1) not in variables]  # fmt: skip


def fill(template: str, values: Mapping[str, Any]) -> str:
    """The template with its placeholders replaced; raises ``ValueError`` when a format spec does not fit."""
    return template.format_map(values)


def literal(text: str) -> str:
    """A template that fills to ``text`` itself: its braces doubled (for trees written from typed-in text)."""
    return text.replace("{", "{{").replace("}", "}}")


def filled_without_variables(values: Mapping[str, Any]) -> dict[str, Any]:
    """A plain leaf's field values with its templates filled: only ``{{`` and ``}}`` change, to one brace.

    Its templates must name no placeholder (a plain leaf has no variables: ``sweep_reader`` checks).
    """
    return {name: fill(value, {}) if name in TEMPLATE_FIELDS and isinstance(value, str) else value
            for name, value in values.items()}  # fmt: skip


def default_name(values: Mapping[str, Any]) -> str:
    """A readable leaf name from a combination's values: ``hip hop``, 90, 7 -> ``hip-hop-90-7``."""
    return "-".join(_name_part(value) for value in values.values())


def _name_part(value: Any) -> str:
    if isinstance(value, list):
        return "-".join(_name_part(item) for item in value)
    return re.sub(r"[\s/\\]+", "-", str(value)).strip("-")
