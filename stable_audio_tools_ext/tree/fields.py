"""The fields a leaf (or a ``_defaults:`` mapping) may set, and the check of each field's value.

Each check takes the value PyYAML constructed and returns ``(value, None)`` when it is usable (numbers
as floats where the engine wants floats) or ``(None, message)`` saying what was expected, in words a
user fixing the YAML can act on.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable, Collection
from typing import Any

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
    "init_audio",
    "init_noise_level",
    "cfg_interval",
    "lora",
    "lora_strength",
)
# The fields whose value may be a YAML list (of scalars) rather than one scalar
LIST_FIELDS = ("cfg_interval", "lora", "lora_strength")

Check = Callable[[Any], tuple[Any, "str | None"]]


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


def _check_interval(value: Any) -> tuple[Any, str | None]:
    """``[lo, hi]`` with 0 <= lo <= hi <= 1: the range of the DiT's sigma (v and rectified flow alike)."""
    if value is None:
        return None, None
    expected = "expected [lo, hi] with 0 <= lo <= hi <= 1 (the noise levels at which guidance applies)"
    if not isinstance(value, list) or len(value) != 2 or not all(_is_number(v) and math.isfinite(v) for v in value):
        return None, f"{expected}, got {value!r}"
    low, high = (float(v) for v in value)
    if not 0 <= low <= high <= 1:
        return None, f"{expected}, got {value!r}"
    return (low, high), None


def _one_or_list(value: Any, check: Check, what: str) -> tuple[Any, str | None]:
    """A scalar or a list of them, each passing ``check``: as a tuple (``[]`` stays empty)."""
    values = value if isinstance(value, list) else [value]
    checked = []
    for item in values:
        result, error = check(item)
        if error is not None or result is None:
            return None, f"{error or 'expected a value, got null'} ({what}, or a list of them)"
        checked.append(result)
    return tuple(checked), None


def _check_lora(value: Any) -> tuple[Any, str | None]:
    """Adapter file paths (the reader resolves and reads them); ``[]``: no adapter, the base model."""
    if value is None:
        return None, None
    return _one_or_list(value, lambda v: _check_text(v, required=True), "a LoRA file path relative to the YAML file")


def _check_strength(value: Any) -> tuple[Any, str | None]:
    if value is None:
        return None, None
    return _one_or_list(value, _check_any_number, "one strength for all adapters or one each")


def sampler_check(known_samplers: Collection[str]) -> Check:
    """The check for ``sampler_type``: the known names depend on the model (its sampler family)."""
    known = sorted(known_samplers)

    def check(value: Any) -> tuple[Any, str | None]:
        if value is None:
            return None, None
        if not isinstance(value, str) or value not in known:
            close = difflib.get_close_matches(str(value), known, n=1)
            hint = f"did you mean '{close[0]}'? " if close else ""
            return None, f"unknown sampler {value!r}; {hint}known: {', '.join(known)}"
        return value, None

    return check


def field_checks(known_samplers: Collection[str]) -> dict[str, Check]:
    """One check per name in ``LEAF_FIELDS``."""
    return {
        "prompt": lambda v: _check_text(v, required=True),
        "negative_prompt": lambda v: _check_text(v, required=False),
        "seconds_start": lambda v: _check_number(v, minimum=0.0, strict=False),
        "seconds_total": lambda v: _check_number(v, minimum=0.0, strict=True),
        "seed": lambda v: _check_int(v, minimum=0),
        "steps": lambda v: _check_int(v, minimum=1),
        "cfg_scale": _check_any_number,
        "sampler_type": sampler_check(known_samplers),
        "n_samples": lambda v: _check_int(v, minimum=1),
        "init_audio": lambda v: _check_text(v, required=False),  # a path: the reader resolves and reads it
        "init_noise_level": lambda v: _check_number(v, minimum=0.0, strict=True),
        "cfg_interval": _check_interval,
        "lora": _check_lora,
        "lora_strength": _check_strength,
    }


def unknown_field_hint(key: str) -> str:
    """``; did you mean 'prompt'?`` for a near miss, else the list of known fields."""
    close = difflib.get_close_matches(key, LEAF_FIELDS, n=1, cutoff=0.6)
    return f"; did you mean '{close[0]}'?" if close else f"; known fields: {', '.join(LEAF_FIELDS)}"
