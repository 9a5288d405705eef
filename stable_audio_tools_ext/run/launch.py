"""The run itself, once every input checked out: join the job, load the model, generate, summarise.

``cli`` imports this module only after the flags, the tree and the model config passed their checks,
because it pulls in torch, k-diffusion and stable-audio-tools (several seconds): help, flag errors
and tree errors never wait for them.

Collective calls happen only at the start (the plan, the shared-folder check) and never while items
are generated: ranks report progress through files, so the process-group timeout (``--dist-timeout``)
only has to cover rank 0's resume scan of the output folder.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from rich.console import Console

from ..datasets.training import finish_dataset, split_of
from ..model.loading import LoadedModel, compile_dit, load_model
from ..model.spec import ModelLoadError, ModelSpec
from ..output.atomic import remove_partial_files
from ..output.manifest import MANIFEST_NAME, ManifestWriter, Record, fold_parts, load_records
from ..output.resume import ResumeState, resume_state
from ..output.shards import DEFAULT_SHARD_SIZE, ShardWriter, shard_paths, unreferenced_shards
from ..output.writer import WriteError
from ..sampling.autobatch import AutoBatchSize
from ..scoring.clap import ClapLoadError, ClapScorer
from ..tree.plan import WorkItem, balanced_order
from ..tree.reserved import SHARDS_DIRNAME
from .distributed import DistContext, all_gather, barrier, broadcast_from_main, join_job, shard, shutdown
from .exits import (
    EXIT_INTERRUPTED,
    EXIT_JOB_FAILED,
    EXIT_NONFINITE,
    EXIT_OK,
    EXIT_USAGE,
    EXIT_WRITE_FAILED,
    print_problems,
    where,
)
from .job import run_rank
from .outputs import current_state, output_settings, seconds_of
from .progress import ProgressDisplay, RankProgress, job_totals, progress_dir, remove_progress
from .score import load_scorer, score_unscored
from .signals import GracefulStop
from .views import (
    adapters_text,
    imbalance,
    model_description,
    output_tree,
    rank_costs,
    rank_times,
    sampling_settings,
    start_table,
)


# torchrun turns any stop into its own exit code 1 and a traceback (a SignalException when it was
# signalled itself, else its report of rank 0's exit code 3); no worker can change that, so the
# stop line, printed just before, says that this is expected.
TORCHRUN_STOP_NOTE = (
    " Every file written is complete and recorded (exit code 3); torchrun reports the stop as a failure "
    "(its exit code 1 and a traceback may follow)."
)


def run_job(args: argparse.Namespace, items: list[WorkItem], spec: ModelSpec, console: Console, started: float) -> int:
    """Generate this rank's share of ``items``; rank 0's return value is the job's exit code."""
    ctx = join_job(args.device, args.dist_timeout)
    if ctx is None:
        return EXIT_JOB_FAILED
    try:
        # Rank 0 decides what is left to do before loading the model: on a large resume the scan of
        # the output folder (read-only) overlaps the other ranks' loading instead of adding to it.
        state = current_state(args, items, spec) if ctx.is_main else None
        try:
            loaded = load_model(spec, ctx.device, args.precision)
            if loaded.adapters is not None:  # every leaf adapter checked against the model before any sampling
                loaded.adapters.read(list({a.sha256: a for i in items for a in i.request.lora or ()}.values()), ctx.device)
            loaded.decode_chunk = args.decode_chunk
            if args.compile:
                compile_dit(loaded)
            scorer = load_scorer(args, ctx.device)
        except (ModelLoadError, ClapLoadError) as exc:  # e.g. the hub cache is missing on this rank's node
            return print_problems([], "", [str(exc)], prefix=where(ctx.rank, ctx.world_size))
        if state is not None:
            _tidy(args)
            _show_start(args, ctx, items, state, loaded, console)
        wanted = set(broadcast_from_main(ctx, [item.relpath for item in state.pending] if state else []))
        pending = [item for item in items if item.relpath in wanted]
        return _generate(args, ctx, items, pending, loaded, scorer, console, started)
    finally:
        shutdown(ctx)


def _tidy(args: argparse.Namespace) -> None:
    """Rank 0, once the model loaded: create the output dir and clear what an earlier run left."""
    args.output_dir.mkdir(parents=True, exist_ok=True)
    remove_partial_files(args.output_dir)  # temporaries of a run that was killed mid-write
    remove_progress(args.output_dir)  # counters of an earlier run
    fold_parts(args.output_dir)  # records of an earlier run that did not finish (already read by the scan)


def _sampling_text(args: argparse.Namespace, pending: list[WorkItem]) -> str:
    """The sampling settings this run uses: the flags' values, or how many leaves override them."""
    settings = list(sampling_settings(pending))
    common = f"sigma {args.sigma_min}..{args.sigma_max}, base seed {args.seed}, batch {args.batch_size}"
    if len(settings) > 1:
        return f"per leaf: {len(settings)} sampler/steps/cfg settings (--dry-run lists them); {common}"
    sampler, steps, cfg = settings[0] if settings else (args.sampler_type, args.sample_steps, args.cfg_scale)
    return f"{sampler}, {steps} steps, cfg {cfg}, {common}"


def _show_start(
    args: argparse.Namespace, ctx: DistContext, items: list[WorkItem], state: ResumeState, loaded: LoadedModel,
    console: Console,
) -> None:  # fmt: skip
    spec = loaded.spec
    window = spec.geometry.window_frames
    costs = rank_costs(balanced_order(state.pending, ctx.world_size, window), ctx.world_size, window)
    counts = ", ".join(f"{name} {count / 1e6:.1f}M" for name, count in loaded.parameter_counts().items())
    console.print(start_table([
        ("model", f"{model_description(spec)} ({loaded.weights_read})"),
        ("parameters", counts),
        *([("LoRA", adapters_text(spec))] if spec.adapters else []),
        ("audio", f"{spec.sample_rate} Hz, window {spec.window_seconds:.2f} s"),
        ("compute", f"{ctx.world_size} rank(s) x {ctx.device.type}, DiT in {loaded.precision}"),
        ("items", f"{len(items)} in the tree, {len(state.pending)} to generate"),
        ("balance", f"planned cost per rank {', '.join(f'{c:,}' for c in costs)} (imbalance {imbalance(costs):.1%})"),
        ("sampling", _sampling_text(args, state.pending)),
        ("output", f"{args.output_dir} ({args.format}{', clipped' if args.clip_length else ''})"),
    ]))  # fmt: skip
    if args.overwrite:
        console.print(f"overwrite: regenerating all {len(items)} items", soft_wrap=True)
    else:
        console.print(f"resume: {state.summary()}; {len(state.pending)} to generate", soft_wrap=True)


def _unshared_output_problem(ctx: DistContext, args: argparse.Namespace) -> str | None:
    """Why rank 0 cannot follow the other ranks through the output dir, or ``None`` if it can.

    Every rank has just written its progress file there. If rank 0 cannot see one, the folder is not
    on a filesystem all nodes share (a node-local /tmp or scratch): rank 0 would wait for that
    rank's progress forever and the manifest would miss its items. All ranks get the same answer.
    """
    hosts = all_gather(ctx, where(ctx.rank, ctx.world_size).removesuffix(": "))
    problem = None
    if ctx.is_main:
        unseen = [r for r in range(ctx.world_size) if not (progress_dir(args.output_dir) / f"rank-{r}.json").exists()]
        if unseen:
            problem = (
                f"--output-dir {args.output_dir} is not shared by all ranks: rank 0 on its node cannot see the files "
                f"of {', '.join(hosts[r] for r in unseen)}. Put it on a filesystem every node mounts "
                "(the cluster's shared or parallel filesystem, not /tmp or node-local scratch)"
            )
    return broadcast_from_main(ctx, problem)


def _generate(
    args: argparse.Namespace, ctx: DistContext, items: list[WorkItem], pending: list[WorkItem],
    loaded: LoadedModel, scorer: ClapScorer | None, console: Console, started: float,
) -> int:  # fmt: skip
    order = balanced_order(pending, ctx.world_size, loaded.spec.geometry.window_frames)
    my_items = shard(order, ctx.world_size, ctx.rank)
    settings = output_settings(args, loaded.spec)
    progress = RankProgress(args.output_dir, ctx.rank, len(my_items))
    barrier(ctx)  # every rank has published its counters before rank 0 looks for them
    problem = _unshared_output_problem(ctx, args)
    if problem is not None:
        return print_problems([], "", [problem]) if ctx.is_main else EXIT_USAGE
    manifest = ManifestWriter(args.output_dir, ctx.rank)
    batch_size = AutoBatchSize(loaded) if args.batch_size == "auto" else args.batch_size
    shards = _shard_writer(args, ctx.rank)

    with GracefulStop() as stop:
        try:
            with ProgressDisplay(args.output_dir, len(pending), console) if ctx.is_main else _NoDisplay() as display:
                run_rank(loaded, my_items, batch_size, args.output_dir, settings, progress, manifest, stop, ctx.rank,
                         scorer, shards)  # fmt: skip
                progress.finish()
                display.wait_for_ranks(ctx.world_size)
        except WriteError as exc:  # the job cannot finish: every rank that hits it says so and ends non-zero
            print(f"{where(ctx.rank, ctx.world_size)}error: {exc}; files written so far are complete and recorded",
                  file=sys.stderr)  # fmt: skip
            return EXIT_WRITE_FAILED
        finally:
            manifest.close()
    # Non-finite items and stops are recorded in the manifest; rank 0 turns them into the job's exit code.
    return _summarise(args, ctx, items, loaded.spec, scorer, console, started, stop) if ctx.is_main else EXIT_OK


def _shard_writer(args: argparse.Namespace, rank: int) -> ShardWriter | None:
    """This rank's shard writer with ``--output-format wds``: with ``--split``, one open shard per split,
    so each split is a set of whole shards."""
    if args.output_format != "wds":
        return None
    splits = args.split
    return ShardWriter(args.output_dir, rank, args.shard_size or DEFAULT_SHARD_SIZE,
                       (lambda leaf: split_of(leaf, splits)) if splits else (lambda leaf: ""))  # fmt: skip


def _show_scores(
    args: argparse.Namespace, items: list[WorkItem], records: dict[str, Record], scorer: ClapScorer, console: Console
) -> None:
    """Rank 0, after a complete run: score what an earlier run left unscored, then print the mean score."""
    backfilled = score_unscored(args.output_dir, items, records, scorer)
    wanted = {item.relpath for item in items}
    scores = [r["clap_score"] for path, r in load_records(args.output_dir).items() if path in wanted and "clap_score" in r]
    line = f"CLAP score ({args.clap_model}): mean {sum(scores) / len(scores):.4f} over {len(scores)} items" if scores else ""
    if backfilled:
        line += f"; {backfilled} items written by an earlier run were scored from their files"
    console.print(line or "CLAP score: no written items to score", soft_wrap=True, markup=False)


class _NoDisplay:
    """Stands in for rank 0's progress display on the other ranks, which show nothing and wait for no one."""

    def __enter__(self) -> _NoDisplay:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def wait_for_ranks(self, world_size: int) -> None:
        return None


def _summarise(
    args: argparse.Namespace, ctx: DistContext, items: list[WorkItem], spec: ModelSpec, scorer: ClapScorer | None,
    console: Console, started: float, stop: GracefulStop,
) -> int:  # fmt: skip
    """Rank 0, after every rank finished: fold the manifest and report what this run did."""
    records = fold_parts(args.output_dir)
    for dead in unreferenced_shards(args.output_dir, records) if args.output_format == "wds" else ():
        dead.unlink()  # every item in it was regenerated into a newer shard
    totals = job_totals(args.output_dir)
    remove_progress(args.output_dir)
    times = rank_times(totals.rank_seconds, totals.done)
    if times:
        console.print(times, soft_wrap=True)
    state = resume_state(items, records, args.output_dir, output_settings(args, spec))
    nonfinite = [i.relpath for i in state.pending if records.get(i.relpath, {}).get("status") == "nonfinite"]
    wall = time.perf_counter() - started
    generated = (
        f"{totals.done} items generated, {totals.audio_seconds:.1f} s of audio, {wall:.1f} s wall time on "
        f"{ctx.world_size} rank(s) ({totals.audio_seconds / wall:.2f} audio-s/s)"
    )
    if not state.pending:
        already = len(items) - totals.done
        if args.output_format == "wds":
            console.print(f"shards: {len(shard_paths(args.output_dir))} in {args.output_dir / SHARDS_DIRNAME}", soft_wrap=True)
        else:
            console.print(output_tree(args.output_dir, items))
        in_all = f" ({sum(seconds_of(args, items, spec).values()):.1f} s of audio in all)"
        console.print(
            f"[bold green]done:[/] {generated}"
            + (f"; {already} of the {len(items)} items were already complete{in_all}" if already else "")
            + f"; manifest: {args.output_dir / MANIFEST_NAME}",
            soft_wrap=True,
        )
        if scorer is not None:
            _show_scores(args, items, records, scorer, console)
        finish_dataset(args, console)
        return EXIT_OK
    console.print(f"this run: {generated}", soft_wrap=True)
    if nonfinite:
        console.print(f"[bold red]{len(nonfinite)} items came out NaN/Inf and were not written[/] (manifest status "
                      f"'nonfinite'), e.g. {', '.join(nonfinite[:5])}", soft_wrap=True)  # fmt: skip
    if stop.requested or len(nonfinite) < len(state.pending):
        console.print(
            f"[bold yellow]stopped{f' by {stop.signal_name}' if stop.signal_name else ''}:[/] "
            f"{len(state.pending)} of {len(items)} items remain; rerun the same command to resume."
            + (TORCHRUN_STOP_NOTE if os.environ.get("TORCHELASTIC_RUN_ID") else ""),
            soft_wrap=True,
        )
        return EXIT_INTERRUPTED
    return EXIT_NONFINITE
