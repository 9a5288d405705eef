"""The studio's LoRA adapters (``run_gradio.py --lora``): one name each, the only way the page and its trees name them.

A tree sent to the studio must never make the server open a file it names (``init_audio`` is refused
there for that reason), yet adapters are files. So the page speaks of adapters by name only: each
adapter the studio was started with is named after its file's stem (``-2``, ``-3``, ... where stems
collide), a tree's ``lora`` entry is looked up among those names, and no server path is shown or taken.

The export writes ``lora: NAME.safetensors``, a path relative to the tree, which ``generate.py``
reads once the adapter file lies beside the tree under that name, and the tab's trees accept that
form too, so an exported leaf pastes back unchanged. What identifies an adapter is its content (the
sha256 the export lists beside the name), so a copy gives the same audio as the studio's file.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..model.lora_files import AdapterUse

FILE_SUFFIX = ".safetensors"  # what the export appends to a name: the file name generate.py reads beside the tree


@dataclass(frozen=True)
class StudioAdapter:
    """One ``--lora`` adapter as the page knows it: its name, and the file with its start strength."""

    name: str
    use: AdapterUse

    @property
    def file_name(self) -> str:
        """How an exported leaf names it: a file beside the tree."""
        return self.name + FILE_SUFFIX

    def description(self) -> str:
        """What the page says about it besides its name: file content, rank and alpha."""
        config = self.use.file.config
        return f"sha256 {self.use.sha256[:12]}, rank {config.rank}, alpha {config.alpha:g}; in a tree: lora: {self.name}"


def name_adapters(uses: Sequence[AdapterUse]) -> tuple[StudioAdapter, ...]:
    """The adapters in ``--lora`` order, each named by its file's stem, made unique with ``-2``, ``-3``, ...

    A made-up name never takes another file's own stem, so every file whose stem is unique keeps it.
    """
    stems = {use.file.path.stem for use in uses}
    taken: set[str] = set()
    named = []
    for use in uses:
        stem = use.file.path.stem
        name, number = stem, 2
        while name in taken or (name != stem and name in stems):
            name, number = f"{stem}-{number}", number + 1
        taken.add(name)
        named.append(StudioAdapter(name, use))
    return tuple(named)


def tree_names(adapters: Sequence[StudioAdapter]) -> dict[str, tuple[str, str]]:
    """What a tree's ``lora`` entries may say (a name, or the file name the export writes) -> the file's
    server path and sha256, for ``tree.reader``. Names are unique; a file name equal to another
    adapter's name (``x.safetensors``, the stem of ``x.safetensors.safetensors``) means that adapter."""
    names = {adapter.name: (str(adapter.use.file.path), adapter.use.sha256) for adapter in adapters}
    for adapter in adapters:
        names.setdefault(adapter.file_name, names[adapter.name])
    return dict(sorted(names.items(), key=lambda entry: entry[0].removesuffix(FILE_SUFFIX)))


def checked_strengths(adapters: Sequence[StudioAdapter], values: Sequence[Any]) -> tuple[float, ...]:
    """The page's strengths, one per adapter in order, each a finite number (``ValueError`` naming the adapter)."""
    if len(values) != len(adapters):
        raise ValueError(f"{len(values)} LoRA strengths given for the studio's {len(adapters)} adapters")
    strengths = []
    for adapter, value in zip(adapters, values):
        try:
            strength = float(value)
        except (TypeError, ValueError):
            raise ValueError(f"LoRA strength of {adapter.name}: expected a number, got {value!r}") from None
        if not math.isfinite(strength):
            raise ValueError(f"LoRA strength of {adapter.name}: expected a finite number, got {value!r}")
        strengths.append(strength)
    return tuple(strengths)


def lora_flags(adapters: Sequence[StudioAdapter]) -> str:
    """``generate.py``'s flags for the adapters at their start strengths, as files beside the tree: what a
    Batch leaf without ``lora`` gets (`` --lora a.safetensors --lora-strength 1.0``; empty without adapters)."""
    files = "".join(f" --lora {adapter.file_name}" for adapter in adapters)
    return files + "".join(f" --lora-strength {adapter.use.strength!r}" for adapter in adapters)


def placement_lines(adapters: Sequence[StudioAdapter]) -> list[str]:
    """One line per adapter file ``generate.py`` needs beside the tree: its name there and its content's sha256."""
    return [f"{adapter.file_name}  sha256 {adapter.use.sha256}" for adapter in adapters]
