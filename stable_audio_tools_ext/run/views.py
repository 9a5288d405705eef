"""Rich renderings of a job for the terminal: the start-up table, the dry-run plan, the output tree."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.console import Group
from rich.table import Table
from rich.text import Text
from rich.tree import Tree

from ..model.spec import ModelSpec
from ..output.resume import ResumeState
from ..tree.plan import WorkItem, item_cost
from .distributed import shard

TREE_PREVIEW_FILES = 40
SWEEP_PREVIEW_NAMES = 3


def output_tree(output_dir: Path, items: Sequence[WorkItem], max_files: int = TREE_PREVIEW_FILES) -> Tree:
    """A tree of the files the plan writes, cut after ``max_files`` files."""
    root = Tree(f"[bold]{output_dir}")
    branches: dict[tuple[str, ...], Tree] = {(): root}
    for item in items[:max_files]:
        parts = tuple(item.relpath.split("/"))
        for depth in range(1, len(parts)):
            if parts[:depth] not in branches:
                branches[parts[:depth]] = branches[parts[: depth - 1]].add(f"[bold blue]{parts[depth - 1]}/")
        branches[parts[:-1]].add(parts[-1])
    if len(items) > max_files:
        root.add(f"[dim]... and {len(items) - max_files} more files")
    return root


def sweep_table(items: Sequence[WorkItem], max_names: int = SWEEP_PREVIEW_NAMES) -> Table | None:
    """One row per swept leaf: its variables, how many leaves and items it made, its first leaf names.

    The leaves of one sweep are the children of the leaf that had the ``_sweep`` (their parent path).
    """
    sweeps: dict[str, dict[str, list[WorkItem]]] = {}
    for item in items:
        if item.vars:
            parent, name = item.leaf.rsplit("/", 1)
            sweeps.setdefault(parent, {}).setdefault(name, []).append(item)
    if not sweeps:
        return None
    table = Table()
    for column in ("swept leaf", "variables", "leaves", "items", "first leaves"):
        table.add_column(column, justify="right" if column in ("leaves", "items") else "left")
    for parent, leaves in sweeps.items():
        first = next(iter(leaves.values()))[0]
        names = list(leaves)
        shown = ", ".join(names[:max_names]) + (f", ... (+{len(names) - max_names})" if len(names) > max_names else "")
        variables = _axes_text([items[0].vars for items in leaves.values()], list(first.vars))
        table.add_row(parent, variables, str(len(leaves)), str(sum(map(len, leaves.values()))), shown)
    return table


def _axes_text(leaf_vars: Sequence[dict[str, Any]], names: Sequence[str]) -> str:
    """``genre x bpm`` for a ``_sweep`` (every combination), ``object + seconds_total`` for a ``_zip``
    (values that advance together), ``genre x (object + seconds_total)`` for both.

    A variable joins the axis of an earlier one when its value follows from that one's in every leaf:
    a zipped list advances with the others, a swept one varies independently of them.
    """
    axes: list[list[str]] = []
    for name in names:
        for axis in reversed(axes):  # the nearest first: a _zip's variables are listed together
            mapping: dict[str, str] = {}
            if all(mapping.setdefault(repr(v[axis[0]]), repr(v[name])) == repr(v[name]) for v in leaf_vars):
                axis.append(name)
                break
        else:
            axes.append([name])
    parts = [" + ".join(axis) for axis in axes]
    return " x ".join(f"({part})" if len(axes) > 1 and "+" in part else part for part in parts)


def sampling_settings(items: Sequence[WorkItem]) -> dict[tuple[str, int, float], list[WorkItem]]:
    """The items of each (sampler, steps, cfg) setting, in the order the settings first appear."""
    settings: dict[tuple[str, int, float], list[WorkItem]] = {}
    for item in items:
        settings.setdefault((item.request.sampler_type, item.request.steps, item.request.cfg_scale), []).append(item)
    return settings


def sampling_table(items: Sequence[WorkItem]) -> Table:
    """One row per sampler/steps/CFG setting the items use: how many items, in which top-level branches."""
    table = Table()
    for column in ("sampler", "steps", "cfg", "items", "branches"):
        table.add_column(column, justify="right" if column in ("steps", "cfg", "items") else "left")
    for (sampler, steps, cfg), group in sampling_settings(items).items():
        branches = ", ".join(dict.fromkeys(item.relpath.split("/", 1)[0] for item in group))
        table.add_row(sampler, str(steps), f"{cfg:g}", str(len(group)), branches)
    return table


def start_table(rows: Sequence[tuple[str, str]]) -> Table:
    table = Table(title="Stable Audio batch generation", show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    for name, value in rows:
        table.add_row(name, value)
    return table


def model_description(spec: ModelSpec) -> str:
    return f"{spec.source} @ {spec.revision[:19] if spec.revision.startswith('sha256:') else spec.revision[:12]}"


def adapters_text(spec: ModelSpec) -> str:
    """The LoRA adapters applied to every item: file, first digits of its sha256, strength, rank and alpha."""
    return "; ".join(
        f"{a.file.path.name} (sha256 {a.sha256[:12]}) at strength {a.strength:g}, rank {a.file.config.rank}, "
        f"alpha {a.file.config.alpha:g}, {len(a.file.layers)} layers"
        for a in spec.adapters
    )


def leaf_adapters_table(items: Sequence[WorkItem]) -> Table | None:
    """One row per adapter set the leaves' ``lora`` fields ask for (file, first digits of its sha256,
    strength), with its items and leaves; ``None`` when no leaf sets adapters (every item gets --lora's)."""
    sets: dict[tuple[str, ...] | None, list[WorkItem]] = {}
    for item in items:
        sets.setdefault(item.request.adapter_key(), []).append(item)
    if set(sets) == {None}:
        return None
    table = Table()
    for column in ("adapters (file, sha256, strength)", "items", "leaves"):
        table.add_column(column, justify="right" if column in ("items", "leaves") else "left")
    for key, group in sets.items():
        lora = group[0].request.lora
        files = "; ".join(f"{Path(a.path).name} ({a.sha256[:12]}) at {a.strength:g}" for a in lora or ())
        text = "--lora's" if lora is None else files or "none (base model)"
        table.add_row(text, str(len(group)), str(len(dict.fromkeys(item.leaf for item in group))))
    return table


def rank_costs(order: Sequence[WorkItem], world_size: int, window_frames: int) -> list[int]:
    """Planned compute per rank for items dealt out in ``order``."""
    return [sum(item_cost(i, window_frames) for i in shard(order, world_size, rank)) for rank in range(world_size)]


def imbalance(costs: Sequence[float]) -> float:
    """How much longer the busiest rank works than the average one (0.0 = perfect balance)."""
    mean = sum(costs) / len(costs) if costs else 0
    return max(costs) / mean - 1 if mean else 0.0


def rank_times(rank_seconds: Sequence[float], done: int) -> str:
    """``rank wall times: 8.6 s, 8.3 s (imbalance 1.7%)`` for a job of several ranks that generated
    something; empty otherwise (ranks that only waited have no times worth comparing)."""
    if len(rank_seconds) < 2 or not done:
        return ""
    return f"rank wall times: {', '.join(f'{t:.1f} s' for t in rank_seconds)} (imbalance {imbalance(rank_seconds):.1%})"


def dry_run_plan(
    output_dir: Path,
    items: Sequence[WorkItem],
    state: ResumeState,
    order: Sequence[WorkItem],
    world_size: int,
    seconds_of: dict[str, float],
    window_frames: int,
) -> Group:
    """What a run would do: per-branch counts, already-done items, per-rank load, the output tree.

    ``order`` is the pending items in the order they are dealt to ranks; ``seconds_of`` maps each
    item's path to the audio seconds its file will hold.
    """
    pending = {item.relpath for item in state.pending}
    branches = Table()
    for column in ("branch", "items", "audio s", "done", "to generate"):
        branches.add_column(column, justify="left" if column == "branch" else "right")
    by_branch: dict[str, list[WorkItem]] = {}
    for item in items:
        by_branch.setdefault(item.relpath.split("/", 1)[0], []).append(item)
    for branch, group in by_branch.items():
        todo = [i for i in group if i.relpath in pending]
        branches.add_row(
            branch, str(len(group)), f"{sum(seconds_of[i.relpath] for i in group):.1f}",
            str(len(group) - len(todo)), str(len(todo)),
        )  # fmt: skip
    ranks = Table()
    for column in ("rank", "items", "audio s", "cost (frames x evals)"):
        ranks.add_column(column, justify="right")
    costs = rank_costs(order, world_size, window_frames)
    for rank in range(world_size):
        share = shard(order, world_size, rank)
        ranks.add_row(str(rank), str(len(share)), f"{sum(seconds_of[i.relpath] for i in share):.1f}", f"{costs[rank]:,}")
    todo_seconds = sum(seconds_of[i.relpath] for i in state.pending)
    summary = (
        f"[bold]dry run:[/] {len(items)} items; {state.summary()}; "
        f"{len(state.pending)} to generate = {todo_seconds:.1f} s of audio. Nothing was loaded or written."
    )
    sweeps = sweep_table(items)
    sweep_section = [Text("Sweeps (leaves expanded from _sweep/_zip)", style="bold"), sweeps] if sweeps else []
    adapters = leaf_adapters_table(items)
    if adapters is not None:
        title = "LoRA adapters of the leaves (YAML lora/lora_strength; batched by set)"
        sweep_section += [Text(title, style="bold"), adapters]
    return Group(
        Text("Items per top-level branch", style="bold"), branches, *sweep_section,
        Text("Sampling settings (sampler, steps, CFG) of the items", style="bold"), sampling_table(items),
        Text(f"Items to generate per rank (world size {world_size}; cost imbalance {imbalance(costs):.1%})", style="bold"), ranks,
        output_tree(output_dir, items), Text.from_markup(summary),
    )  # fmt: skip
