"""Command line of ``generate.py``: parse flags, check every input, then run this rank's share.

Everything that can be wrong with the inputs (flags, YAML tree, model name, output directory) is
checked before the process group is joined, the weights are loaded or anything is written, and is
reported as one clear line per problem with exit code 2.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from collections.abc import Sequence
from pathlib import Path

import torch
from rich.console import Console

# Warnings that upstream libraries print on every run and that a user cannot act on.
_KNOWN_LIBRARY_WARNINGS = (
    r"pkg_resources is deprecated",  # clip, imported by k-diffusion
    r"`torch\.nn\.utils\.weight_norm` is deprecated",  # the Oobleck VAE
    r"`torch\.cuda\.amp\.autocast\(args\.\.\.\)` is deprecated",  # the T5 conditioner
    r"CUDA is not available or torch_xla is imported",  # the T5 conditioner's autocast on CPU
)
for _message in _KNOWN_LIBRARY_WARNINGS:  # before the imports below, which trigger some of them
    warnings.filterwarnings("ignore", message=_message)

from ..datasets.training import add_dataset_arguments, dataset_argument_problems, finish_dataset  # noqa: E402
from ..model.families import SAMPLER_NAMES  # noqa: E402
from ..model.loading import LoadedModel, ModelLoadError, ModelSpec, compile_dit, load_model, resolve_precision  # noqa: E402
from ..model.options import add_model_arguments, model_spec_from_args  # noqa: E402
from ..output.atomic import remove_partial_files  # noqa: E402
from ..output.audio_io import FORMATS  # noqa: E402
from ..output.manifest import ManifestWriter, fold_parts, load_records  # noqa: E402
from ..output.normalize import normalization_from_args  # noqa: E402
from ..output.resume import OutputSettings, ResumeState, resume_state  # noqa: E402
from ..output.writer import WriteError  # noqa: E402
from ..sampling.autobatch import AutoBatchSize  # noqa: E402
from ..tree.conditions import ConditionTreeError, Problem  # noqa: E402
from ..tree.plan import DEFAULT_MAX_ITEMS, SamplingDefaults, WorkItem, balanced_order, build_plan  # noqa: E402
from ..tree.reader import read_condition_file  # noqa: E402
from .distributed import DistContext, barrier, broadcast_from_main, init_distributed, shard, shutdown  # noqa: E402
from .job import RankOutcome, run_rank, written_seconds  # noqa: E402
from .progress import ProgressDisplay, RankProgress, job_totals, remove_progress  # noqa: E402
from .signals import GracefulStop  # noqa: E402
from .views import dry_run_plan, imbalance, model_description, output_tree, rank_costs, start_table  # noqa: E402

LOG_WIDTH = 160  # columns when writing to a log file (SLURM, CI) rather than a terminal
EXIT_OK = 0
EXIT_USAGE = 2  # bad input: nothing was generated or written
EXIT_INTERRUPTED = 3  # stopped by a signal after finishing the batch in flight; rerun to resume
EXIT_NONFINITE = 4  # some items came out NaN/Inf and were not written (see the manifest's status)
EXIT_WRITE_FAILED = 5  # an output file could not be written (disk full, path not creatable, ...)


class UsageError(ValueError):
    """A flag value that cannot work (e.g. an output directory that cannot be created)."""


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {value}")
    return value


def _batch_size(text: str) -> int | str:
    return "auto" if text == "auto" else _positive_int(text)


def _seed(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}") from None
    if not 0 <= value < 2**63:
        raise argparse.ArgumentTypeError(f"expected an integer in [0, 2**63), got {value}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a finite number > 0, got {text}")
    return value


def _finite_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="generate.py",
        description=(
            "Generate a dataset of audio files from a YAML tree of prompts with Stable Audio Open. "
            "Run under torchrun to shard the items over every GPU (and node): "
            "torchrun --standalone --nproc_per_node gpu generate.py --cond-yaml-path TREE.yaml --output-dir OUT"
        ),
    )
    io = parser.add_argument_group("input and output")
    io.add_argument("--cond-yaml-path", required=True, type=Path, help="YAML condition tree (see docs/yaml-format.md)")
    io.add_argument(
        "--output-dir",
        required=True,
        type=Path,
        help="where files go: <output-dir>/<branch>/.../<leaf>_item-<k>.<ext>, mirroring the YAML tree",
    )
    io.add_argument(
        "--format",
        choices=sorted(FORMATS),
        default="wav",
        help="file encoding: wav (16-bit PCM, the default), wav24 (24-bit PCM), wav32f (32-bit float), flac (16-bit), flac24",
    )
    io.add_argument(
        "--clip-length",
        action="store_true",
        help="trim each file to its seconds_total (default: keep the model's whole window)",
    )
    add_model_arguments(parser)
    sampling = parser.add_argument_group(
        "sampling (defaults come from the model family: SAO 1.0 dpmpp-3m-sde/100 steps/cfg 7/sigma 0.3..500, "
        "SAO Small pingpong/8 steps/cfg 1; YAML leaves may override steps, cfg_scale, sampler_type, seed)"
    )
    sampling.add_argument("--sampler-type", choices=SAMPLER_NAMES, help="sampler (must suit the model family)")
    sampling.add_argument("--sample-steps", type=_positive_int, help="denoising steps per item")
    sampling.add_argument("--cfg-scale", type=_finite_float, help="classifier-free guidance scale (1 = no guidance)")
    sampling.add_argument("--sigma-min", type=_positive_float, help="lowest noise level of the schedule (v models)")
    sampling.add_argument("--sigma-max", type=_positive_float, help="highest noise level of the schedule (<= 1 for flow models)")
    sampling.add_argument(
        "--n-sample-per-cond", type=_positive_int, default=1, help="items per leaf; a leaf's n_samples overrides it (default: %(default)s)"
    )
    sampling.add_argument(
        "--seed",
        type=_seed,
        default=0,
        help="base seed (default: %(default)s): item k of a leaf without 'seed' gets a stable hash of (base seed, leaf path, k)",
    )
    run = parser.add_argument_group("running")
    run.add_argument(
        "--batch-size",
        type=_batch_size,
        default=4,
        help="items per forward pass on each rank (default: %(default)s), or 'auto': the largest that fits "
        "the GPU's free memory, probed per latent length; changes speed and memory, never the audio",
    )
    run.add_argument(
        "--latent-length",
        choices=("auto", "full"),
        default="auto",
        help="auto (default): generate only as many latent frames as seconds_start + seconds_total need "
        "(in steps of 0.74 s); full: always the model's whole window, as the reference tool",
    )
    run.add_argument(
        "--decode-chunk",
        type=_positive_int,
        help="VAE-decode in chunks of this many latent frames (overlapping 16 per side) to bound memory",
    )
    run.add_argument("--compile", action="store_true", help="torch.compile the DiT (pays off on long GPU runs)")
    run.add_argument(
        "--overwrite",
        action="store_true",
        help="regenerate every item (default: resume - skip items whose file is complete and whose parameters are unchanged)",
    )
    run.add_argument(
        "--dry-run",
        action="store_true",
        help="print the plan (items per branch and rank, audio seconds, what is already done) without loading the model",
    )
    run.add_argument(
        "--world-size",
        type=_positive_int,
        default=int(os.environ.get("WORLD_SIZE", "1")),
        help="with --dry-run: number of ranks to plan for (default: $WORLD_SIZE or 1)",
    )
    run.add_argument(
        "--max-items",
        type=_positive_int,
        default=DEFAULT_MAX_ITEMS,
        help="refuse trees that expand to more items than this (default: %(default)s)",
    )
    add_dataset_arguments(parser)
    return parser


def _check_output_dir(output_dir: Path) -> None:
    """Fail early, before anything is generated, if ``output_dir`` cannot be created or written."""
    if output_dir.exists() and not output_dir.is_dir():
        raise UsageError(f"--output-dir {output_dir}: exists and is not a directory")
    existing = output_dir
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise UsageError(f"--output-dir {output_dir}: {existing} is a file, cannot create directories below it")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UsageError(f"--output-dir {output_dir}: no permission to write in {existing}")


def _print_problems(problems: list[Problem], source: str, other_errors: list[str]) -> int:
    """Print every input problem (YAML ones sorted by line) and return the usage exit code."""
    if problems:
        print(f"error: {ConditionTreeError(problems, source).report()}", file=sys.stderr)
    for message in other_errors:
        print(f"error: {message}", file=sys.stderr)
    return EXIT_USAGE


def _check_inputs(args: argparse.Namespace, is_main: bool) -> tuple[list[WorkItem], ModelSpec] | int:
    """Validate the tree, the model config, the plan and the output dir; report all problems at once."""
    source = str(args.cond_yaml_path)
    errors: list[str] = []
    spec = None
    items: list[WorkItem] = []
    try:
        spec = model_spec_from_args(args)
    except ModelLoadError as exc:
        errors.append(str(exc))
    samplers = spec.family.samplers if spec is not None else SAMPLER_NAMES
    leaves, problems = read_condition_file(args.cond_yaml_path, samplers)
    if spec is not None:
        errors += _apply_model_defaults(args, spec)
    if spec is not None and not errors:
        defaults = SamplingDefaults(
            steps=args.sample_steps, cfg_scale=args.cfg_scale, sampler_type=args.sampler_type,
            sigma_min=args.sigma_min, sigma_max=args.sigma_max, n_samples=args.n_sample_per_cond, base_seed=args.seed,
        )  # fmt: skip
        try:
            items = build_plan(
                leaves, defaults, spec.window_seconds, FORMATS[args.format].extension, source, args.max_items,
                spec.geometry, args.latent_length,
            )  # fmt: skip
        except ConditionTreeError as exc:
            problems = problems + exc.problems
    try:
        _check_output_dir(args.output_dir)
    except UsageError as exc:
        errors.append(str(exc))
    errors += dataset_argument_problems(args, items)
    if problems or errors or spec is None:
        return _print_problems(problems, source, errors) if is_main else EXIT_USAGE
    return items, spec


def _apply_model_defaults(args: argparse.Namespace, spec: ModelSpec) -> list[str]:
    """Fill unset sampling flags and the precision from the model; return what does not fit it."""
    family = spec.family
    for flag, default in (("sampler_type", family.sampler_type), ("sample_steps", family.steps),
                          ("cfg_scale", family.cfg_scale), ("sigma_min", family.sigma_min), ("sigma_max", family.sigma_max)):  # fmt: skip
        if getattr(args, flag) is None:
            setattr(args, flag, default)
    device_type = "cuda" if args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available()) else "cpu"
    args.precision = resolve_precision(args.precision, device_type)
    errors = []
    if args.sampler_type not in family.samplers:
        errors.append(f"--sampler-type {args.sampler_type} does not work with this model ({spec.objective}); "
                      f"use one of {', '.join(family.samplers)}")  # fmt: skip
    if spec.objective == "v" and args.sigma_min >= args.sigma_max:
        errors.append(f"--sigma-min {args.sigma_min} must be lower than --sigma-max {args.sigma_max}")
    if spec.objective != "v" and args.sigma_max > 1:
        errors.append(f"--sigma-max {args.sigma_max}: flow models ({spec.objective}) need a value <= 1")
    return errors


def _output_settings(args: argparse.Namespace, spec: ModelSpec) -> OutputSettings:
    return OutputSettings(
        model=spec.source, model_revision=spec.revision, precision=args.precision,
        audio_format=args.format, clip_length=args.clip_length, normalization=normalization_from_args(args),
    )  # fmt: skip


def _resume(args: argparse.Namespace, items: list[WorkItem], spec: ModelSpec) -> ResumeState:
    records = {} if args.overwrite else load_records(args.output_dir)
    return resume_state(items, records, args.output_dir, _output_settings(args, spec))


def _seconds_of(args: argparse.Namespace, items: list[WorkItem], spec: ModelSpec) -> dict[str, float]:
    return {i.relpath: written_seconds(i, spec.geometry, args.clip_length) for i in items}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    is_main = os.environ.get("RANK", "0") == "0"
    console = Console(highlight=False)
    if not console.is_terminal:
        console.width = LOG_WIDTH
    started = time.perf_counter()
    checked = _check_inputs(args, is_main)
    if isinstance(checked, int):
        return checked
    items, spec = checked
    if args.dry_run:
        if is_main:
            state = _resume(args, items, spec)
            order = balanced_order(state.pending, args.world_size, spec.geometry.window_frames)
            console.print(dry_run_plan(args.output_dir, items, state, order, args.world_size, _seconds_of(args, items, spec),
                                       spec.geometry.window_frames))  # fmt: skip
        return EXIT_OK

    ctx = init_distributed(args.device)
    try:
        try:
            loaded = load_model(spec, ctx.device, args.precision)
            loaded.decode_chunk = args.decode_chunk
            if args.compile:
                compile_dit(loaded)
        except ModelLoadError as exc:
            return _print_problems([], "", [str(exc)]) if ctx.is_main else EXIT_USAGE
        pending = _prepare_run(args, ctx, items, spec, loaded, console)
        return _generate(args, ctx, items, pending, loaded, console, started)
    finally:
        shutdown(ctx)


def _balance_text(pending: list[WorkItem], world_size: int, spec: ModelSpec) -> str:
    """Planned cost per rank (latent frames x model evaluations) after cost-balanced ordering."""
    costs = rank_costs(balanced_order(pending, world_size, spec.geometry.window_frames), world_size, spec.geometry.window_frames)
    return f"planned cost per rank {', '.join(f'{c:,}' for c in costs)} (imbalance {imbalance(costs):.1%})"


def _prepare_run(
    args: argparse.Namespace, ctx: DistContext, items: list[WorkItem], spec: ModelSpec, loaded: LoadedModel, console: Console
) -> list[WorkItem]:
    """Rank 0 tidies the output dir and decides what is left to do; every rank gets the same answer."""
    pending_paths: list[str] = []
    if ctx.is_main:
        args.output_dir.mkdir(parents=True, exist_ok=True)
        remove_partial_files(args.output_dir)  # temporaries of a run that was killed mid-write
        remove_progress(args.output_dir)  # counters of an earlier run
        fold_parts(args.output_dir)  # records of an earlier run that did not finish
        state = _resume(args, items, spec)
        pending_paths = [item.relpath for item in state.pending]
        counts = ", ".join(f"{name} {count / 1e6:.1f}M" for name, count in loaded.parameter_counts().items())
        console.print(start_table([
            ("model", f"{model_description(spec)} ({loaded.weights_read})"),
            ("parameters", counts),
            ("audio", f"{spec.sample_rate} Hz, window {spec.window_seconds:.2f} s"),
            ("compute", f"{ctx.world_size} rank(s) x {ctx.device.type}, DiT in {loaded.precision}"),
            ("items", f"{len(items)} in the tree, {len(state.pending)} to generate"),
            ("balance", _balance_text(state.pending, ctx.world_size, spec)),
            ("sampling", f"{args.sampler_type}, {args.sample_steps} steps, cfg {args.cfg_scale}, "
                         f"sigma {args.sigma_min}..{args.sigma_max}, base seed {args.seed}, batch {args.batch_size}"),
            ("output", f"{args.output_dir} ({args.format}{', clipped' if args.clip_length else ''})"),
        ]))  # fmt: skip
        console.print(f"resume: {state.summary()}; {len(state.pending)} to generate", soft_wrap=True)
    pending_paths = broadcast_from_main(ctx, pending_paths)
    wanted = set(pending_paths)
    return [item for item in items if item.relpath in wanted]


def _generate(
    args: argparse.Namespace, ctx: DistContext, items: list[WorkItem], pending: list[WorkItem],
    loaded: LoadedModel, console: Console, started: float,
) -> int:  # fmt: skip
    order = balanced_order(pending, ctx.world_size, loaded.spec.geometry.window_frames)
    my_items = shard(order, ctx.world_size, ctx.rank)
    settings = _output_settings(args, loaded.spec)
    progress = RankProgress(args.output_dir, ctx.rank, len(my_items))
    barrier(ctx)  # every rank has published its counters before rank 0 starts watching them
    manifest = ManifestWriter(args.output_dir, ctx.rank)

    batch_size = AutoBatchSize(loaded) if args.batch_size == "auto" else args.batch_size

    def run() -> RankOutcome:
        return run_rank(loaded, my_items, batch_size, args.output_dir, settings, progress, manifest, stop, ctx.rank)

    with GracefulStop() as stop:
        try:
            if not ctx.is_main:
                outcome = run()
                progress.finish()
                return _exit_code(outcome, stop)
            with ProgressDisplay(args.output_dir, len(pending), console) as display:
                run()
                progress.finish()
                display.wait_for_ranks(ctx.world_size)
        except WriteError as exc:
            print(f"error (rank {ctx.rank}): {exc}; files written so far are complete and recorded", file=sys.stderr)
            return EXIT_WRITE_FAILED
        finally:
            manifest.close()
    return _summarise(args, ctx, items, loaded.spec, console, started, stop)


def _exit_code(outcome: RankOutcome, stop: GracefulStop) -> int:
    if outcome.remaining or stop.requested:
        return EXIT_INTERRUPTED
    return EXIT_NONFINITE if outcome.nonfinite else EXIT_OK


def _summarise(
    args: argparse.Namespace, ctx: DistContext, items: list[WorkItem], spec: ModelSpec,
    console: Console, started: float, stop: GracefulStop,
) -> int:  # fmt: skip
    """Rank 0, after every rank finished: fold the manifest and report what the whole job did."""
    records = fold_parts(args.output_dir)
    elapsed = job_totals(args.output_dir).rank_seconds
    remove_progress(args.output_dir)
    if len(elapsed) > 1:
        console.print(f"rank wall times: {', '.join(f'{t:.1f} s' for t in elapsed)} (imbalance {imbalance(elapsed):.1%})",
                      soft_wrap=True)  # fmt: skip
    state = resume_state(items, records, args.output_dir, _output_settings(args, spec))
    nonfinite = [i.relpath for i in state.pending if records.get(i.relpath, {}).get("status") == "nonfinite"]
    wall = time.perf_counter() - started
    if not state.pending:
        seconds = sum(_seconds_of(args, items, spec).values())
        console.print(output_tree(args.output_dir, items))
        console.print(
            f"[bold green]done:[/] {len(items)} items, {seconds:.1f} s of audio, {wall:.1f} s wall time "
            f"on {ctx.world_size} rank(s) ({seconds / wall:.2f} audio-s/s); manifest: {args.output_dir / 'manifest.jsonl'}",
            soft_wrap=True,
        )
        finish_dataset(args, console)
        return EXIT_OK
    if nonfinite:
        console.print(f"[bold red]{len(nonfinite)} items came out NaN/Inf and were not written[/] (manifest status "
                      f"'nonfinite'), e.g. {', '.join(nonfinite[:5])}", soft_wrap=True)  # fmt: skip
    if stop.requested or len(nonfinite) < len(state.pending):
        console.print(
            f"[bold yellow]stopped{f' by {stop.signal_name}' if stop.signal_name else ''}:[/] "
            f"{len(state.pending)} of {len(items)} items remain; rerun the same command to resume.",
            soft_wrap=True,
        )
        return EXIT_INTERRUPTED
    return EXIT_NONFINITE
