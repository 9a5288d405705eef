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
from rich.table import Table
from rich.tree import Tree

# Warnings that upstream libraries print on every run and that a user cannot act on.
_KNOWN_LIBRARY_WARNINGS = (
    r"pkg_resources is deprecated",  # clip, imported by k-diffusion
    r"`torch\.nn\.utils\.weight_norm` is deprecated",  # the Oobleck VAE
    r"`torch\.cuda\.amp\.autocast\(args\.\.\.\)` is deprecated",  # the T5 conditioner
    r"CUDA is not available or torch_xla is imported",  # the T5 conditioner's autocast on CPU
    r"Should have (ta>=t0|tb<=t1) but got",  # torchsde clamping float32 round-off at the sigma range ends
)
for _message in _KNOWN_LIBRARY_WARNINGS:  # before the imports below, which trigger some of them
    warnings.filterwarnings("ignore", message=_message)

from .audio_io import FORMATS  # noqa: E402
from .conditions import ConditionTreeError, load_condition_file  # noqa: E402
from .distributed import barrier, init_distributed, shard, shutdown  # noqa: E402
from .job import OutputOptions, run_rank, written_seconds  # noqa: E402
from .model_options import add_model_arguments, model_spec_from_args  # noqa: E402
from .models import ModelLoadError, ModelSpec, load_model  # noqa: E402
from .plan import SamplingDefaults, WorkItem, build_plan  # noqa: E402
from .progress import ProgressDisplay, RankProgress, remove_progress  # noqa: E402
from .samplers import SAMPLER_NAMES  # noqa: E402

EXIT_USAGE = 2
TREE_PREVIEW_LINES = 40


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
    io.add_argument("--cond-yaml-path", required=True, type=Path, help="YAML condition tree (see README: YAML format)")
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
    sampling = parser.add_argument_group("sampling (YAML leaves may override steps, cfg_scale, sampler_type, seed)")
    sampling.add_argument("--sampler-type", choices=SAMPLER_NAMES, default="dpmpp-3m-sde", help="k-diffusion sampler (default: %(default)s)")
    sampling.add_argument("--sample-steps", type=_positive_int, default=100, help="denoising steps per item (default: %(default)s)")
    sampling.add_argument("--cfg-scale", type=_finite_float, default=7.0, help="classifier-free guidance scale (default: %(default)s)")
    sampling.add_argument("--sigma-min", type=_positive_float, default=0.3, help="lowest noise level of the schedule (default: %(default)s)")
    sampling.add_argument("--sigma-max", type=_positive_float, default=500.0, help="highest noise level of the schedule (default: %(default)s)")
    sampling.add_argument(
        "--n-sample-per-cond", type=_positive_int, default=1, help="items per leaf; a leaf's n_samples overrides it (default: %(default)s)"
    )
    sampling.add_argument(
        "--seed",
        type=_seed,
        default=0,
        help="base seed (default: %(default)s): item k of a leaf without 'seed' gets a stable hash of (base seed, leaf path, k)",
    )
    sampling.add_argument(
        "--batch-size",
        type=_positive_int,
        default=4,
        help="items per forward pass on each rank (default: %(default)s); changes speed and memory, never the audio",
    )
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


def _report(exc: Exception, is_main: bool) -> int:
    if is_main:
        if isinstance(exc, ConditionTreeError):
            count = len(exc.problems)
            print(f"error: {count} problem{'s' * (count != 1)} in {exc.source}:", file=sys.stderr)
            for problem in exc.problems:
                print(f"  {problem.render(exc.source)}", file=sys.stderr)
        else:
            print(f"error: {exc}", file=sys.stderr)
    return EXIT_USAGE


def output_tree(output_dir: Path, items: Sequence[WorkItem], max_lines: int = TREE_PREVIEW_LINES) -> Tree:
    """A rich tree of the files the plan writes, cut after ``max_lines`` files."""
    root = Tree(f"[bold]{output_dir}")
    branches: dict[tuple[str, ...], Tree] = {(): root}
    for item in items[:max_lines]:
        parts = tuple(item.relpath.split("/"))
        for depth in range(1, len(parts)):
            if parts[:depth] not in branches:
                branches[parts[:depth]] = branches[parts[: depth - 1]].add(f"[bold blue]{parts[depth - 1]}/")
        branches[parts[:-1]].add(parts[-1])
    if len(items) > max_lines:
        root.add(f"[dim]... and {len(items) - max_lines} more files")
    return root


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    is_main = os.environ.get("RANK", "0") == "0"
    console = Console(highlight=False)
    started = time.perf_counter()

    defaults = SamplingDefaults(
        steps=args.sample_steps,
        cfg_scale=args.cfg_scale,
        sampler_type=args.sampler_type,
        sigma_min=args.sigma_min,
        sigma_max=args.sigma_max,
        n_samples=args.n_sample_per_cond,
        base_seed=args.seed,
    )
    audio_format = FORMATS[args.format]
    try:
        if args.sigma_min >= args.sigma_max:
            raise UsageError(f"--sigma-min {args.sigma_min} must be lower than --sigma-max {args.sigma_max}")
        leaves = load_condition_file(args.cond_yaml_path, SAMPLER_NAMES)
        spec = model_spec_from_args(args)
        items = build_plan(leaves, defaults, spec.window_seconds, audio_format.extension, str(args.cond_yaml_path))
        _check_output_dir(args.output_dir)
    except (ConditionTreeError, ModelLoadError, UsageError) as exc:
        return _report(exc, is_main)

    ctx = init_distributed(args.device)
    try:
        try:
            loaded = load_model(spec, ctx.device)
        except ModelLoadError as exc:
            return _report(exc, ctx.is_main)
        my_items = shard(items, ctx.world_size, ctx.rank)
        if ctx.is_main:
            args.output_dir.mkdir(parents=True, exist_ok=True)
            remove_progress(args.output_dir)  # counters of an earlier run in the same directory
            console.print(_start_table(args, spec, ctx.world_size, ctx.device, len(items)))
        barrier(ctx)
        output = OutputOptions(args.output_dir, audio_format, args.clip_length)
        progress = RankProgress(args.output_dir, ctx.rank, len(my_items))
        if not ctx.is_main:
            run_rank(loaded, my_items, args.batch_size, output, progress)
            return 0
        with ProgressDisplay(args.output_dir, len(items), console) as display:
            run_rank(loaded, my_items, args.batch_size, output, progress)
            display.wait_for_job()
        remove_progress(args.output_dir)
        wall = time.perf_counter() - started
        audio_seconds = sum(written_seconds(i, spec.window_seconds, args.clip_length) for i in items)
        console.print(output_tree(args.output_dir, items))
        console.print(
            f"[bold green]done:[/] {len(items)} items, {audio_seconds:.1f} s of audio, "
            f"{wall:.1f} s wall time on {ctx.world_size} rank(s) ({audio_seconds / wall:.2f} audio-s/s)"
        )
        return 0
    finally:
        shutdown(ctx)


def _start_table(args: argparse.Namespace, spec: ModelSpec, world_size: int, device: torch.device, n_items: int) -> Table:
    table = Table(title="Stable Audio batch generation", show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    model = spec.source + (f" @ {spec.revision[:12]}" if spec.revision else "")
    table.add_row("model", model)
    table.add_row("audio", f"{spec.sample_rate} Hz, window {spec.window_seconds:.2f} s")
    table.add_row("ranks", f"{world_size} x {device.type}")
    table.add_row("items", f"{n_items} (batch size {args.batch_size} per rank)")
    table.add_row(
        "sampling",
        f"{args.sampler_type}, {args.sample_steps} steps, cfg {args.cfg_scale}, "
        f"sigma {args.sigma_min}..{args.sigma_max}, base seed {args.seed}",
    )
    table.add_row("output", f"{args.output_dir} ({args.format}{', clipped' if args.clip_length else ''})")
    return table
