"""Generate a condition tree inside an already running process, with a model it already holds.

Two callers need ``generate.py``'s results without starting ``generate.py``: the studio (a model
loaded once, many requests) and fine-tuning demos (the model being trained, at each checkpoint).
Both must produce exactly what ``generate.py --clip-length`` would for the same tree and model, so
both go through the CLI's own pieces: the tree is read and planned by ``tree.reader``/``tree.plan``,
and items are generated and written by the per-rank loop ``run.job.run_rank`` (WAVs and manifest
records, as one rank of a job).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from ..model.loading import LoadedModel
from ..model.spec import ModelSpec
from ..output.manifest import ManifestWriter, Record, fold_parts
from ..output.resume import OutputSettings
from ..tree.conditions import ConditionTreeError, warnings_report
from ..tree.plan import MAX_ITEMS_FLAG, SamplingDefaults, WorkItem, balanced_order, build_plan, plan_warnings
from ..tree.reader import read_condition_file
from .distributed import shard
from .job import run_rank
from .leaf_checks import init_audio_problems, lora_problems, model_problems
from .progress import RankProgress, remove_progress
from .signals import GracefulStop

AUDIO_FORMAT = "wav"  # 16-bit PCM, generate.py's default
DEFAULT_SOURCE = "tree.yaml"


def sampling_defaults(spec: ModelSpec) -> SamplingDefaults:
    """What ``generate.py`` uses for flags that are not given: the model family's defaults."""
    family = spec.family
    return SamplingDefaults(
        steps=family.steps, cfg_scale=family.cfg_scale, sampler_type=family.sampler_type,
        sigma_min=family.sigma_min, sigma_max=family.sigma_max,
    )  # fmt: skip


def plan_tree(
    tree_file: Path,
    spec: ModelSpec,
    defaults: SamplingDefaults,
    max_items: int,
    source: str = DEFAULT_SOURCE,
    read_init_audio: bool = True,
    limit_flag: str = MAX_ITEMS_FLAG,
    adapters: Mapping[str, tuple[str, str]] | None = None,
) -> tuple[list[WorkItem], str]:
    """Validate and plan a tree exactly as ``generate.py`` does: its items and its warnings as text.

    Problems of the leaves and of the plan (window, item limit, name collisions) are gathered
    together, as the CLI does, so the user sees all of them at once (``ConditionTreeError``). The
    warnings (``warning: tree.yaml:3: a/b: ...`` lines, empty if none) are the ones ``generate.py``
    prints before a run that goes ahead anyway. ``read_init_audio`` and ``adapters`` (the adapters a
    leaf's ``lora`` names, by name): see ``read_condition_file``; ``limit_flag``: the flag that raises
    ``max_items``, named when a tree is over it.
    """
    leaves, problems = read_condition_file(tree_file, spec.family.samplers, max_items, read_init_audio, limit_flag,
                                           adapters)  # fmt: skip
    problems += model_problems(leaves, spec, defaults.sigma_min) + init_audio_problems(leaves) + lora_problems(leaves)
    try:
        items = build_plan(leaves, defaults, spec.window_seconds, AUDIO_FORMAT, source, max_items, spec.geometry,
                           limit_flag=limit_flag)
    except ConditionTreeError as exc:
        problems = problems + exc.problems
    if problems:
        raise ConditionTreeError(problems, source)
    return items, warnings_report(plan_warnings(items), source)


def clip_length_settings(loaded: LoadedModel) -> OutputSettings:
    """What ``generate.py --clip-length`` records for this model, so manifests and fingerprints match."""
    spec = loaded.spec
    return OutputSettings(
        model=spec.source, model_revision=spec.revision, precision=loaded.precision,
        audio_format=AUDIO_FORMAT, clip_length=True,
    )  # fmt: skip


class _CallbackProgress(RankProgress):
    """The CLI's progress counters, also reported to a callback (items done, items in total)."""

    def __init__(self, output_dir: Path, total: int, on_advance: Callable[[int, int], None]) -> None:
        self._on_advance = on_advance
        super().__init__(output_dir, rank=0, total=total)

    def advance(self, items: int, audio_seconds: float) -> None:
        super().advance(items, audio_seconds)
        self._on_advance(self.done, self.total)


def generate_share(
    loaded: LoadedModel,
    items: Sequence[WorkItem],
    output_dir: Path,
    batch_size: int,
    rank: int = 0,
    world_size: int = 1,
    progress: RankProgress | None = None,
) -> None:
    """Generate and write rank ``rank``'s share of ``items``, dealt out exactly as ``generate.py`` deals them.

    Every rank computes the same cost-balanced order and takes its ``shard``, so a request split over
    the studio's ranks writes the same files, with the same seeds, as ``generate.py`` under torchrun.
    Records go to this rank's manifest part; folding them is the caller's (rank 0's) job.
    """
    mine = shard(balanced_order(items, world_size, loaded.spec.geometry.window_frames), world_size, rank)
    progress = progress if progress is not None else RankProgress(output_dir, rank, len(mine))
    manifest = ManifestWriter(output_dir, rank=rank)
    try:
        run_rank(loaded, mine, batch_size, output_dir, clip_length_settings(loaded), progress, manifest, GracefulStop(), rank)
    finally:
        manifest.close()


def generate_items(
    loaded: LoadedModel,
    items: Sequence[WorkItem],
    output_dir: Path,
    batch_size: int,
    on_advance: Callable[[int, int], None] = lambda done, total: None,
) -> dict[str, Record]:
    """Generate and write ``items`` below ``output_dir`` as a one-rank ``generate.py`` run; returns the manifest.

    The callers run one generation at a time and handle their own signals, so the stop request that
    ``run_rank`` checks between batches is never set.
    """
    try:
        generate_share(loaded, items, output_dir, batch_size, progress=_CallbackProgress(output_dir, len(items), on_advance))
    finally:
        remove_progress(output_dir)
    return fold_parts(output_dir)
