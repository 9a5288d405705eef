"""Turn validated leaves into work items: one per (leaf, item k), each with its seed and output path.

Every rank computes the same plan from the same inputs, so no coordination is needed to agree on
who generates what - the sharding in ``run.distributed`` only picks positions in this list.
"""

from __future__ import annotations

import hashlib
import heapq
import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..request import GenerationRequest, LatentGeometry, LatentMode, latent_frames_for
from .conditions import Condition, ConditionTreeError, Problem

# Seeds derived from (base seed, leaf, k) lie in [0, 2**32): the range upstream's random seeds use.
DERIVED_SEED_RANGE = 2**32
DEFAULT_MAX_ITEMS = 1_000_000
MAX_ITEMS_FLAG = "--max-items"  # what raises the item limit, named in the message (the studio names its own)
# The noise level an init_audio leaf starts from when it sets none: upstream generate_diffusion_cond's default.
DEFAULT_INIT_NOISE_LEVEL = 1.0


@dataclass(frozen=True)
class SamplingDefaults:
    """Command-line values a leaf inherits for anything its YAML does not set."""

    steps: int = 100
    cfg_scale: float = 7.0
    sampler_type: str = "dpmpp-3m-sde"
    sigma_min: float = 0.3
    sigma_max: float = 500.0
    n_samples: int = 1
    base_seed: int = 0


@dataclass(frozen=True)
class WorkItem:
    """One file to generate."""

    leaf: str  # leaf path, e.g. "music/drum/sample-1"
    k: int  # 1-based item index within the leaf
    relpath: str  # output path relative to the output dir, POSIX separators
    request: GenerationRequest
    line: int | None = None  # the leaf's line in the YAML file, for messages about it
    vars: dict[str, Any] = field(default_factory=dict)  # the sweep values that made the leaf (manifest ``vars``)


def derive_seed(base_seed: int, leaf: str, k: int) -> int:
    """A stable seed for item ``k`` of ``leaf``: same inputs, same seed, on any machine and Python.

    Python's ``hash`` is salted per process, so a cryptographic hash of an unambiguous encoding is
    used instead; changing one leaf's name or k never changes another leaf's seeds.
    """
    digest = hashlib.sha256(json.dumps([base_seed, leaf, k]).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % DERIVED_SEED_RANGE


def output_relpath(path: Sequence[str], k: int, extension: str) -> str:
    """``music/drum/sample-1`` item 2 -> ``music/drum/sample-1_item-2.wav`` (the reference layout)."""
    return "/".join([*path[:-1], f"{path[-1]}_item-{k}.{extension}"])


def build_plan(
    leaves: Sequence[Condition],
    defaults: SamplingDefaults,
    window_seconds: float,
    extension: str,
    source: str = "<yaml>",
    max_items: int = DEFAULT_MAX_ITEMS,
    geometry: LatentGeometry | None = None,
    latent_mode: LatentMode = "auto",
    limit_flag: str = MAX_ITEMS_FLAG,
) -> list[WorkItem]:
    """Expand leaves into work items in document order; raises ``ConditionTreeError`` on any problem.

    With the model's ``geometry``, each item gets its latent length (``latent_mode``); without it the
    engine applies the default ("auto") policy itself. ``limit_flag`` is what the item-limit message
    names as raising ``max_items``.

    Checks that need the model (the window) or the whole tree (item count, output collisions,
    including names that differ only in case and so collide on case-insensitive filesystems) live
    here rather than in ``reader``.
    """
    problems: list[Problem] = []
    total = sum(leaf.n_samples or defaults.n_samples for leaf in leaves)
    if total > max_items:
        raise ConditionTreeError(
            [Problem("", f"the tree expands to {total:,} items, more than the limit of {max_items:,} "
                         f"(raise it with {limit_flag})")],
            source,
        )
    items: list[WorkItem] = []
    claimed: dict[str, str] = {}
    for leaf in leaves:
        start = leaf.seconds_start or 0.0
        seconds_total = leaf.seconds_total if leaf.seconds_total is not None else window_seconds - start
        if start + seconds_total > window_seconds + 1e-9:
            problems.append(
                Problem(
                    leaf.name,
                    f"seconds_start + seconds_total = {start + seconds_total:g} s is longer than the model's "
                    f"{window_seconds:.2f} s window",
                    leaf.line,
                )
            )
            continue
        if seconds_total <= 0:
            problems.append(Problem(leaf.name, f"seconds_start {start:g} leaves no room in the window", leaf.line))
            continue
        for k in range(1, (leaf.n_samples or defaults.n_samples) + 1):
            relpath = output_relpath(leaf.path, k, extension)
            folded = relpath.casefold()
            if folded in claimed:
                problems.append(
                    Problem(leaf.name, f"output {relpath} collides with {claimed[folded]} (names differ only in case)", leaf.line)
                )
                break
            claimed[folded] = relpath
            seed = leaf.seed + k - 1 if leaf.seed is not None else derive_seed(defaults.base_seed, leaf.name, k)
            request = GenerationRequest(
                prompt=leaf.prompt,
                negative_prompt=leaf.negative_prompt,
                seconds_start=start,
                seconds_total=seconds_total,
                seed=seed,
                steps=leaf.steps if leaf.steps is not None else defaults.steps,
                cfg_scale=leaf.cfg_scale if leaf.cfg_scale is not None else defaults.cfg_scale,
                sampler_type=leaf.sampler_type or defaults.sampler_type,
                sigma_min=defaults.sigma_min,
                sigma_max=defaults.sigma_max,
                latent_frames=latent_frames_for(start + seconds_total, geometry, latent_mode) if geometry else None,
                init_audio=leaf.init_audio,
                init_noise_level=(leaf.init_noise_level or DEFAULT_INIT_NOISE_LEVEL) if leaf.init_audio else None,
                cfg_interval=leaf.cfg_interval,
                lora=leaf.lora,
            )
            items.append(WorkItem(leaf=leaf.name, k=k, relpath=relpath, request=request, line=leaf.line, vars=leaf.vars))
    if problems:
        raise ConditionTreeError(_one_per_sweep(problems, leaves), source)
    return items


def _one_per_sweep(problems: list[Problem], leaves: Sequence[Condition]) -> list[Problem]:
    """A problem that every leaf of one sweep shares (same line, same words) once, with a count.

    A 500-leaf sweep whose ``seconds_total`` is too long would otherwise fill the screen with one
    line per combination; the first leaf's path is kept, so the user still knows where to look.
    """
    swept_lines = {leaf.line for leaf in leaves if leaf.vars}
    grouped: dict[tuple, list[Problem]] = {}
    for problem in problems:
        key = (problem.line, problem.message) if problem.line in swept_lines else (id(problem),)
        grouped.setdefault(key, []).append(problem)
    collapsed = []
    for group in grouped.values():
        first, others = group[0], len(group) - 1
        suffix = f" (and so are the {others} other leaves of this sweep)" if others else ""
        collapsed.append(Problem(first.yaml_path, first.message + suffix, first.line))
    return collapsed


def plan_warnings(items: Iterable[WorkItem]) -> list[Problem]:
    """What in a valid plan does not do what its leaf says, one problem per leaf (the run goes on).

    A negative prompt enters only classifier-free guidance (as its unconditional side), and a
    cfg_scale of 1 switches guidance off: upstream's DiT then makes the conditional pass alone, so
    the negative prompt is ignored without a word. cfg 1 is Stable Audio Open Small's default. The
    check is on the work items because the effective cfg_scale is known only after ``build_plan``
    has filled in what the leaf leaves to the command line.
    """
    warnings: dict[str, Problem] = {}
    for item in items:
        request = item.request
        if request.negative_prompt and request.cfg_scale == 1.0 and item.leaf not in warnings:
            warnings[item.leaf] = Problem(
                item.leaf,
                "negative_prompt is ignored: the cfg_scale this leaf gets is 1, which switches off the "
                "classifier-free guidance a negative prompt works through; set cfg_scale above 1 to use it",
                item.line,
            )
    return list(warnings.values())


def make_batches(items: Iterable[WorkItem], batch_size: int | Callable[[WorkItem], int]) -> list[list[WorkItem]]:
    """Group items that can share a sampler run, then cut each group into batches.

    ``batch_size`` is a number, or a function giving the size for a group from its first item
    (``--batch-size auto`` sizes batches per latent length). Groups keep the order in which their
    first item appears, and items keep their order within a group, so the schedule is deterministic;
    seeds are per item, so grouping never changes audio.
    """
    groups: dict[tuple, list[WorkItem]] = {}
    for item in items:
        groups.setdefault(item.request.batch_key(), []).append(item)
    batches = []
    for group in groups.values():
        size = batch_size(group[0]) if callable(batch_size) else batch_size
        batches += [group[i : i + size] for i in range(0, len(group), size)]
    return batches


def item_cost(item: WorkItem, window_frames: int) -> int:
    """Relative compute of an item: latent frames x model evaluations (CFG doubles each step).

    DiT time grows about linearly with sequence length at these lengths (attention is a minor share
    next to the MLPs for Stable Audio's 1024-frame maximum), and the VAE decode is linear in it.
    """
    request = item.request
    evaluations = request.steps * (2 if request.cfg_scale != 1.0 else 1)
    return (request.latent_frames or window_frames) * evaluations


def balanced_order(items: Sequence[WorkItem], world_size: int, window_frames: int) -> list[WorkItem]:
    """Reorder items so that ``DistributedSampler``'s strided split gives every rank similar cost.

    The sampler hands position ``p`` to rank ``p % world_size``, so each rank's item count is fixed;
    only which items go where is free. Items are placed most expensive first on the least loaded rank
    that still has room (greedy longest-processing-time with each rank's count as its capacity), then
    interleaved so that the sampler deals exactly that assignment. Ties are broken by path, so every
    rank computes the same order.
    """
    capacity = [len(range(rank, len(items), world_size)) for rank in range(world_size)]
    costs = [item_cost(item, window_frames) for item in items]
    shares = least_loaded_shares(costs, [item.relpath for item in items], world_size, capacity)
    return [items[shares[position % world_size][position // world_size]] for position in range(len(items))]


def least_loaded_shares(costs: Sequence[float], names: Sequence[str], world_size: int,
                        capacity: Sequence[int] | None = None) -> list[list[int]]:  # fmt: skip
    """Each rank's positions in ``costs``: most expensive first onto the least loaded rank (that has room).

    Greedy longest-processing-time. Ties are broken by ``names`` (unique), then by rank, so every rank
    computes the same shares from the same costs. ``capacity`` (items per rank) is for
    ``balanced_order``, whose sampler fixes the counts; without it a rank may take one long item while
    another takes many short ones, and no rank ends more than the largest cost above another.
    """
    shares: list[list[int]] = [[] for _ in range(world_size)]
    loads: list[tuple[float, int]] = [(0, rank) for rank in range(world_size)]  # a heap of (planned cost, rank)
    for index in sorted(range(len(costs)), key=lambda index: (-costs[index], names[index])):
        load, rank = heapq.heappop(loads)
        while capacity is not None and len(shares[rank]) == capacity[rank]:  # full ranks leave the heap for good
            load, rank = heapq.heappop(loads)
        shares[rank].append(index)
        heapq.heappush(loads, (load + costs[index], rank))
    return shares
