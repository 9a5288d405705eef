"""What reading a condition tree yields: validated leaves, or problems located by YAML path and line.

The types the rest of the package uses; ``reader`` builds them from YAML text.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..request import InitAudio, LeafAdapter

DEFAULTS_KEY = "_defaults"  # the reserved key whose fields every leaf below it inherits
EXTENSION_PREFIX = "x-"  # top-level keys starting with this are not read: a home for YAML anchors


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


def warnings_report(warnings: list[Problem], source: str) -> str:
    """One ``warning: file:line: yaml/path: message`` line per warning (CLI and studio); empty if none.

    Warnings are problems that do not stop a run: the same type and rendering as errors, so a user
    finds the leaf the same way.
    """
    return "\n".join(f"warning: {warning.render(source)}" for warning in warnings)


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
    init_audio: InitAudio | None = None
    init_noise_level: float | None = None
    cfg_interval: tuple[float, float] | None = None
    lora: tuple[LeafAdapter, ...] | None = None  # with their strengths (lora_strength); None: --lora's
    line: int | None = None
    # The sweep values that made this leaf (``_sweep``/``_zip``, as written in the YAML); empty otherwise.
    vars: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        """The leaf path as written in messages and the manifest, e.g. ``music/drum/sample-1``."""
        return "/".join(self.path)


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
