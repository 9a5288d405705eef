"""The ``evaluate`` and ``score`` subcommands of ``finetune.py``: parsers and handlers (the dispatcher is ``finetune_main``).

Imports nothing heavy: the handlers import ``evaluate`` (generate.py's engine, the CLAP scorer) and
``score`` on use, so ``finetune.py prepare`` and ``-h`` stay fast. Bad input: exit code 2
(docs/finetuning.md, docs/evaluation.md).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..model.families import SAMPLER_NAMES
from ..run.argtypes import add_dist_timeout_argument, finite_float, positive_int, seed_value
from ..finetune.captions import CAPTION_COLUMNS, FILE_COLUMNS
from ..scoring.options import (DEFAULT_CLAP_MODEL, DISTANCES, FRECHET, METRICS, add_score_arguments, add_set_model_arguments,
                               metric_names)  # fmt: skip


def _generate_batch_size(text: str) -> str:
    """generate.py's ``--batch-size``: a positive count or ``auto``, checked here so a typo costs no generation."""
    return text if text == "auto" else str(positive_int(text))


def _strengths(text: str) -> tuple[float, ...]:
    """``--lora-strengths``: comma-separated finite numbers, e.g. ``0.5,1``."""
    return tuple(finite_float(part) for part in text.split(","))


def _add_evaluate(subparsers: argparse._SubParsersAction) -> None:
    """The ``evaluate`` subcommand: one tree through several models, then comparison.html (docs/finetuning.md)."""
    parser = subparsers.add_parser(
        "evaluate",
        help="generate one tree with several checkpoints (and the base model) and compare them in comparison.html",
        description="Generate a condition tree with every model given, as generate.py would (same seeds, resumable, "
        "torchrun-sharded), into OUTPUT_DIR/<label>/ (base, step-N, the checkpoint's name, or <adapter>@<strength>), then write "
        "OUTPUT_DIR/comparison.html: items x models with players, spectrograms, CLAP scores and per-model summaries "
        "(with --reference: FD_openl3, KL_passt, FD_clap as --metrics asks). "
        "Bad input: exit 2.",
    )
    parser.add_argument("--cond-yaml-path", type=Path, required=True, metavar="TREE", help="the condition tree every model generates")
    parser.add_argument("--output-dir", type=Path, required=True, metavar="OUT", help="one folder per model, and comparison.html")
    models = parser.add_argument_group("models (at least one)")
    models.add_argument("--run-dir", type=Path, action="append", metavar="SAVE_DIR/NAME", help="every checkpoint of a "
                        "finetune.py train run, labelled step-N; a LoRA run's checkpoints are its base model with each "
                        "one's adapter, and its base is a column too (repeatable; not --run, which torchrun would take "
                        "for its own --run-path)")  # fmt: skip
    models.add_argument("--ckpt-path", type=Path, action="append", metavar="FILE", help="a checkpoint (its model_config.json "
                        "beside it or its run's), labelled by its file name (repeatable)")  # fmt: skip
    models.add_argument("--pretrained-name", metavar="REPO_ID", help="the base model from the hub, labelled base")
    models.add_argument("--revision", help="hub branch, tag or commit of --pretrained-name (default: main)")
    lora = parser.add_argument_group("LoRA adapter files (a LoRA --run-dir needs none: its base and adapters are in it)")
    lora.add_argument("--lora", type=Path, action="append", metavar="FILE", help="an adapter file (stable-audio-tools' "
                      "LoRA .safetensors) on the --pretrained-name base, a model of its own at each --lora-strengths "
                      "value, labelled <file stem>@<strength> (repeatable; not stacked, as generate.py's --lora is)")  # fmt: skip
    lora.add_argument("--lora-strengths", type=_strengths, action="append", metavar="S[,S...]", help="the strengths each "
                      "--lora is compared at: once for every --lora, or once per --lora in order (default: 1; 0 is "
                      "the base model exactly)")  # fmt: skip
    sampling = parser.add_argument_group("sampling and output (as generate.py; its defaults when not given)")
    sampling.add_argument("--sample-steps", type=positive_int, help="denoising steps per item")
    sampling.add_argument("--cfg-scale", type=finite_float, help="classifier-free guidance scale")
    sampling.add_argument("--sampler-type", choices=SAMPLER_NAMES, help="sampler (must suit the model family)")
    sampling.add_argument("--seed", type=seed_value, help="base seed of the items (generate.py's default: 0)")
    sampling.add_argument("--batch-size", type=_generate_batch_size, help="items per forward pass on each rank, or auto")
    sampling.add_argument("--n-sample-per-cond", type=positive_int, help="items per leaf (a leaf's n_samples overrides it)")
    sampling.add_argument("--clip-length", action="store_true", help="trim each file to its seconds_total")
    add_dist_timeout_argument(sampling, "as generate.py's")
    add_score_arguments(parser)
    reference = parser.add_argument_group("distances to a reference set (docs/evaluation.md)")
    reference.add_argument("--reference", type=Path, metavar="DIR", help="audio to compare each model's files with (e.g. "
                           "prepare's validation split, or another model's folder of the same tree): the --metrics "
                           "distances in the summary, with the file counts")  # fmt: skip
    reference.add_argument("--metrics", type=metric_names(DISTANCES), metavar="NAME[,NAME...]", help=f"of "
                           f"{', '.join(DISTANCES)} (default: fd_clap); kl_passt pairs each item with the reference file "
                           "of its id (path without extension)")  # fmt: skip
    add_set_model_arguments(reference)
    parser.set_defaults(handler=evaluate_command, command_parser=parser)


def _add_score(subparsers: argparse._SubParsersAction) -> None:
    """The ``score`` subcommand: the field's metrics for any folder of audio (docs/evaluation.md)."""
    parser = subparsers.add_parser(
        "score",
        help="score any folder of audio: CLAP score per file and its mean; FD_openl3, KL_passt, FD_clap to a reference set",
        description="Score every audio file under --audio-dir (any depth): clap, the CLAP score of each file against "
        "its captions (stable-audio-metrics' recipe) and their mean; fd_openl3 and fd_clap, the Fréchet distances of "
        "the files' OpenL3 frame embeddings and CLAP audio embeddings to --reference audio or to --reference-stats "
        "saved earlier; kl_passt, the mean KL divergence of PaSST's class probabilities of each file and of the "
        "--reference file with its id (path without extension). Prints one table; --output "
        "writes {'files': {path: {metric: value}}, 'sets': {metric: value}} as JSON. Under torchrun the files are "
        "sharded over the ranks. Every input is checked first: bad input lists every problem, exit 2, nothing written.",
    )
    inputs = parser.add_argument_group("inputs")
    inputs.add_argument("--audio-dir", type=Path, required=True, metavar="DIR", help="the audio to score (scanned recursively)")
    inputs.add_argument("--captions", type=Path, metavar="FILE", help="CSV or JSON Lines naming each file relative to "
                        "--audio-dir and its captions, as finetune.py prepare reads them (default: a sidecar .txt "
                        "beside each audio file, one caption per line); several captions: the mean score")  # fmt: skip
    inputs.add_argument("--file-column", metavar="NAME", help=f"the column naming the audio file (default: the first of "
                        f"{', '.join(FILE_COLUMNS)}, in any case)")  # fmt: skip
    inputs.add_argument("--caption-column", metavar="NAME", action="append", help="a column holding captions; repeat "
                        f"for several (default: every caption_<n> column, else the first of {', '.join(CAPTION_COLUMNS)})")  # fmt: skip
    reference = inputs.add_mutually_exclusive_group()
    reference.add_argument("--reference", type=Path, metavar="DIR", help=f"reference audio (any depth) for "
                           f"{', '.join(DISTANCES)}; kl_passt pairs files by relative path without extension")  # fmt: skip
    reference.add_argument("--reference-stats", type=Path, metavar="FILE", help=f"a reference's embedding statistics "
                           f"saved by --save-stats, for {' and '.join(FRECHET)} (refused when made with another model, "
                           "weights file or recipe version)")  # fmt: skip
    metrics = parser.add_argument_group("metrics and output")
    metrics.add_argument("--metrics", type=metric_names(METRICS), metavar="NAME[,NAME...]", help=f"of {', '.join(METRICS)} "
                         "(default: clap, and fd_clap with a reference)")  # fmt: skip
    metrics.add_argument("--clap-model", default=DEFAULT_CLAP_MODEL, metavar="ID",
                         help="CLAP checkpoint: a hub id or a local folder (default: %(default)s)")  # fmt: skip
    add_set_model_arguments(metrics)
    metrics.add_argument("--output", type=Path, metavar="FILE", help="the scores as JSON (written atomically)")
    metrics.add_argument("--save-stats", type=Path, metavar="FILE", help="save --reference's embedding statistics of "
                         f"{' and '.join(FRECHET)} (mean, covariance, count, model, weights, recipe version; .npz) for "
                         "--reference-stats next time")  # fmt: skip
    add_dist_timeout_argument(parser, "rank 0 checks every input while the others wait")
    parser.set_defaults(handler=score_command, command_parser=parser)


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    """The subcommands this package owns, added to ``finetune.py``'s parser."""
    _add_evaluate(subparsers)
    _add_score(subparsers)


def evaluate_command(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """``finetune.py evaluate``: imported on use (it pulls in generate.py's engine and the CLAP scorer)."""
    from .evaluate import evaluate

    return evaluate(args)


def score_command(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """``finetune.py score``: imported on use (the CLAP scorer)."""
    from .score import score

    return score(args)
