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
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console

from ..quiet import hide_library_warnings
from .argtypes import add_dist_timeout_argument, finite_float, positive_float, positive_int, seed_value

hide_library_warnings()  # before the imports below, which trigger some of them

from ..datasets.training import add_dataset_arguments, dataset_argument_problems  # noqa: E402
from ..model.families import SAMPLER_NAMES  # noqa: E402
from ..model.options import add_lora_arguments, add_model_arguments, model_spec_from_args  # noqa: E402
from ..model.spec import ModelLoadError, ModelSpec  # noqa: E402
from ..output.audio_io import FORMATS  # noqa: E402
from ..output.shards import DEFAULT_SHARD_SIZE, OUTPUT_FORMATS, layout_problem  # noqa: E402
from ..sampling.chunking import DECODE_OVERLAP_PER_SIDE, MIN_DECODE_CHUNK, decode_chunk_frames  # noqa: E402
from ..scoring.options import add_score_arguments  # noqa: E402
from ..tree.conditions import ConditionTreeError, Problem, warnings_report  # noqa: E402
from ..tree.plan import DEFAULT_MAX_ITEMS, SamplingDefaults, WorkItem, balanced_order, build_plan, plan_warnings  # noqa: E402
from ..tree.reader import read_condition_file  # noqa: E402
from .exits import EXIT_OK, ConciseArgumentParser, launched_as, print_problems, where  # noqa: E402
from .leaf_checks import init_audio_problems, lora_problems, model_problems  # noqa: E402
from .outputs import current_state, seconds_of  # noqa: E402

LOG_WIDTH = 160  # columns when writing to a log file (SLURM, CI) rather than a terminal


class UsageError(ValueError):
    """A flag value that cannot work (e.g. an output directory that cannot be created)."""


def _batch_size(text: str) -> int | str:
    return "auto" if text == "auto" else positive_int(text)


def build_parser() -> argparse.ArgumentParser:
    parser = ConciseArgumentParser(
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
        "--output-format",
        choices=OUTPUT_FORMATS,
        default="files",
        help="files (default): one audio file per item; wds: WebDataset tar shards under <output-dir>/shards/, "
        "each sample the item's audio and its manifest record as JSON (docs/datasets.md#webdataset-shards)",
    )
    io.add_argument(
        "--shard-size",
        type=positive_int,
        metavar="N",
        help=f"with --output-format wds: items per shard (default: {DEFAULT_SHARD_SIZE}); a killed run loses "
        "at most each rank's open shards, which the rerun regenerates",
    )
    io.add_argument(
        "--clip-length",
        action="store_true",
        help="trim each file to its seconds_total (default: keep all the audio its latent decoded: "
        "seconds_start + seconds_total rounded up to 0.74 s with --latent-length auto, the model's whole window with full)",
    )
    add_model_arguments(parser)
    add_lora_arguments(parser)
    sampling = parser.add_argument_group(
        "sampling (defaults come from the model family: SAO 1.0 dpmpp-3m-sde/100 steps/cfg 7/sigma 0.3..500, "
        "SAO Small pingpong/8 steps/cfg 1; YAML leaves may override steps, cfg_scale, sampler_type, seed)"
    )
    sampling.add_argument("--sampler-type", choices=SAMPLER_NAMES, help="sampler (must suit the model family)")
    sampling.add_argument("--sample-steps", type=positive_int, help="denoising steps per item")
    sampling.add_argument("--cfg-scale", type=finite_float, help="classifier-free guidance scale (1 = no guidance)")
    sampling.add_argument("--sigma-min", type=positive_float, help="lowest noise level of the schedule (v models)")
    sampling.add_argument("--sigma-max", type=positive_float, help="highest noise level of the schedule (<= 1 for flow models)")
    sampling.add_argument(
        "--n-sample-per-cond", type=positive_int, default=1, help="items per leaf; a leaf's n_samples overrides it (default: %(default)s)"
    )
    sampling.add_argument(
        "--seed",
        type=seed_value,
        default=0,
        help="base seed (default: %(default)s): item k of a leaf without 'seed' gets a stable hash of (base seed, leaf path, k)",
    )
    run = parser.add_argument_group("running")
    run.add_argument(
        "--batch-size",
        type=_batch_size,
        default=4,
        help="items per forward pass on each rank (default: %(default)s), or 'auto': the largest that fits "
        "the GPU's free memory, probed per latent length and CFG on/off; changes speed and memory, and the audio "
        "only by float round-off (measured on an H100: bf16 identical, fp32 within 1e-6; see docs/reproducibility.md)",
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
        type=decode_chunk_frames,
        help=f"VAE-decode in chunks of this many latent frames (at least {MIN_DECODE_CHUNK}; neighbouring chunks "
        f"overlap {DECODE_OVERLAP_PER_SIDE} per side) to bound memory",
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
        type=positive_int,
        help="with --dry-run only: number of ranks to plan for (default: $WORLD_SIZE or 1); "
        "a real run takes its world size from torchrun",
    )
    run.add_argument(
        "--check",
        action="store_true",
        help="check the flags, the tree, the model config and the output dir, print one line, and exit "
        "(0: good, 2: problems); imports no torch: what the SLURM scripts run before starting torchrun",
    )
    add_dist_timeout_argument(
        run,
        "the longest wait is the other ranks' while rank 0 scans the output dir to resume, so very large "
        "outputs on slow filesystems may need more",
    )
    run.add_argument(
        "--max-items",
        type=positive_int,
        default=DEFAULT_MAX_ITEMS,
        help="refuse trees that expand to more items than this (default: %(default)s)",
    )
    add_score_arguments(parser)
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


def _report(args: argparse.Namespace, problems: list[Problem], errors: list[str], node_errors: Sequence[str] = ()) -> int:
    """Print this rank's input problems; return its exit code.

    Rank 0 prints everything, once. Under torchrun the other ranks check too, on their own node: they
    print only what can differ between nodes (``node_errors``: the model cache, the output dir; an
    unreadable tree file), each line naming the rank and host. A rank with nothing of its own to say
    exits 0: torchrun stops every rank as soon as one exits non-zero, so a rank ending 2 first would
    kill rank 0 before it printed the tree's problems; rank 0's exit code 2 fails the job.
    """
    rank, world_size = launched_as()
    if rank != 0:
        problems = [p for p in problems if p.line is None and not p.yaml_path]  # the file itself, not its contents
        errors = []
        if not problems and not node_errors:
            return EXIT_OK
    return print_problems(problems, str(args.cond_yaml_path), [*node_errors, *errors], prefix=where(rank, world_size))


def _flag_problems(args: argparse.Namespace) -> list[str]:
    """Problems with flag combinations, the same on every node."""
    problems = []
    if args.world_size is not None and not args.dry_run:
        problems.append("--world-size only applies with --dry-run; a real run takes its world size from torchrun")
    if args.shard_size is not None and args.output_format != "wds":
        problems.append("--shard-size only applies with --output-format wds")
    if args.output_dir.is_dir() and (problem := layout_problem(args.output_dir, args.output_format)):
        problems.append(problem)
    return problems


def _output_dir_problems(args: argparse.Namespace) -> list[str]:
    """Why this node cannot write ``--output-dir``, if it cannot (node-local mounts differ)."""
    try:
        _check_output_dir(args.output_dir)
    except UsageError as exc:
        return [str(exc)]
    return []


def _check_inputs(args: argparse.Namespace) -> tuple[list[WorkItem], ModelSpec] | int:
    """Validate the flags, the tree, the model config and the plan, reporting every problem found.

    The tree is read first and, if it has problems, they are reported (with the flag problems)
    before the model is even looked up: a typo costs no hub round trip and no torch import. A tree
    that reads cleanly is then checked against the model (window, samplers, collisions) in one go.
    """
    leaves, problems = read_condition_file(args.cond_yaml_path, SAMPLER_NAMES, max_items=args.max_items)
    errors = _flag_problems(args)
    node_errors = _output_dir_problems(args)
    if problems:
        return _report(args, problems, errors + dataset_argument_problems(args), node_errors)
    try:
        spec = model_spec_from_args(args)
    except ModelLoadError as exc:
        return _report(args, [], errors + dataset_argument_problems(args), [*node_errors, str(exc)])
    errors += _apply_model_defaults(args, spec)
    problems = model_problems(leaves, spec, args.sigma_min) + init_audio_problems(leaves) + lora_problems(leaves)
    items: list[WorkItem] = []
    if not errors and not node_errors and not problems:
        defaults = SamplingDefaults(
            steps=args.sample_steps, cfg_scale=args.cfg_scale, sampler_type=args.sampler_type,
            sigma_min=args.sigma_min, sigma_max=args.sigma_max, n_samples=args.n_sample_per_cond, base_seed=args.seed,
        )  # fmt: skip
        try:
            items = build_plan(
                leaves, defaults, spec.window_seconds, FORMATS[args.format].extension, str(args.cond_yaml_path),
                args.max_items, spec.geometry, args.latent_length,
            )  # fmt: skip
        except ConditionTreeError as exc:
            problems = exc.problems
    errors += dataset_argument_problems(args)
    if problems or errors or node_errors:
        return _report(args, problems, errors, node_errors)
    tree_warnings = plan_warnings(items)
    if tree_warnings and launched_as()[0] == 0:
        print(warnings_report(tree_warnings, str(args.cond_yaml_path)), file=sys.stderr)
    return items, spec


def _apply_model_defaults(args: argparse.Namespace, spec: ModelSpec) -> list[str]:
    """Fill unset sampling flags from the model; return what does not fit it."""
    family = spec.family
    for flag, default in (("sampler_type", family.sampler_type), ("sample_steps", family.steps),
                          ("cfg_scale", family.cfg_scale), ("sigma_min", family.sigma_min), ("sigma_max", family.sigma_max)):  # fmt: skip
        if getattr(args, flag) is None:
            setattr(args, flag, default)
    errors = []
    if args.sampler_type not in family.samplers:
        errors.append(f"--sampler-type {args.sampler_type} does not work with this model ({spec.objective}); "
                      f"use one of {', '.join(family.samplers)}")  # fmt: skip
    if spec.objective == "v" and args.sigma_min >= args.sigma_max:
        errors.append(f"--sigma-min {args.sigma_min} must be lower than --sigma-max {args.sigma_max}")
    if spec.objective != "v" and args.sigma_max > 1:
        errors.append(f"--sigma-max {args.sigma_max}: flow models ({spec.objective}) need a value <= 1")
    return errors


def _resolve_precision(args: argparse.Namespace) -> None:
    """The DiT's precision (it is part of every item's fingerprint); needs torch to look at the GPU."""
    import torch

    from ..model.loading import resolve_precision

    device_type = "cuda" if args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available()) else "cpu"
    args.precision = resolve_precision(args.precision, device_type)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    console = Console(highlight=False)
    if not console.is_terminal:
        console.width = LOG_WIDTH
    started = time.perf_counter()
    checked = _check_inputs(args)
    if isinstance(checked, int):
        return checked
    items, spec = checked
    if args.check:
        console.print(f"ok: {len(items)} items from {args.cond_yaml_path} for {spec.source}", soft_wrap=True)
        return EXIT_OK
    _resolve_precision(args)
    if args.dry_run:
        rank, launched_world_size = launched_as()
        if rank == 0:
            from .views import dry_run_plan  # imports torch (DistributedSampler) for the per-rank split

            world_size = args.world_size or launched_world_size
            state = current_state(args, items, spec)
            order = balanced_order(state.pending, world_size, spec.geometry.window_frames)
            console.print(dry_run_plan(args.output_dir, items, state, order, world_size, seconds_of(args, items, spec),
                                       spec.geometry.window_frames))  # fmt: skip
        return EXIT_OK

    from .launch import run_job  # torch, k-diffusion, stable-audio-tools: only once the inputs are known good

    return run_job(args, items, spec, console, started)
