"""``finetune.py score``: the field's metrics for any folder of audio, ours or not.

Per file, ``clap``: the CLAP score (``scoring.clap``, stable-audio-metrics' recipe) of the file, whole,
against its captions (the mean over them when a file has several; with one, the published score). Per
set, ``clap``: the mean of the files' scores; and the distances to a reference set (``--reference DIR``,
or for the Fréchet ones its statistics saved earlier, ``--reference-stats FILE``, ``scoring.stats_file``):
``fd_openl3`` and ``kl_passt`` (the SAO paper's; KL pairs each file with the reference file of its id,
the path without extension) and ``fd_clap`` (``scoring.sets`` computes all three). Metric names are the
JSON keys (``scoring.options``).

Every input is checked on rank 0 before anything is embedded (captions as ``finetune.py prepare``
reads them, every audio header, the file ids KL_passt pairs, the weights files, the stats file and
what it was made with), and every problem is listed at once: exit 2, nothing written. Under torchrun
the files (and reference files) are sharded over the ranks, each embeds its share on its device, and
rank 0 gathers them in file order (OpenL3's frames as their sums), computes the set metrics, writes
the JSON (and ``--save-stats``) atomically and prints the table.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table
from rich.text import Text

from ..datasets.audio_dir import audio_files
from ..finetune.captions import counted, few, read_captions_file, read_sidecar_captions
from ..output.atomic import atomic_write_text
from ..run.distributed import DistContext, all_gather, broadcast_from_main, join_job, shard, shutdown
from ..run.exits import EXIT_JOB_FAILED, EXIT_OK, EXIT_USAGE
from ..scoring.clap import ClapLoadError, cosine_scores
from ..scoring.frechet import Gaussian
from ..scoring.openl3 import Openl3LoadError
from ..scoring.options import DEFAULT_DISTANCES, DISTANCES, FRECHET, NAMES, SCORES
from ..scoring.passt import PasstLoadError
from ..scoring.sets import (Distance, SetEmbeddings, SetModelOptions, SetModels, duplicate_id_problem, embed_files,
                            embedding_spaces, set_distances, unpaired)  # fmt: skip
from ..scoring.stats_file import EmbeddingSpace, StatsFileError, StoredStats, load_stats, save_stats, space_problem

LOG_WIDTH = 160  # table columns when writing to a log file rather than a terminal


@dataclass(frozen=True)
class ScoreInputs:
    """What rank 0 found and checked: the files (relpaths, sorted), their captions, the reference."""

    options: SetModelOptions
    files: list[str]
    captions: dict[str, tuple[str, ...]] = field(default_factory=dict)  # only when clap is asked for
    reference: list[str] = field(default_factory=list)  # relpaths under --reference
    stats: dict[str, StoredStats] | None = None  # --reference-stats
    spaces: dict[str, EmbeddingSpace] = field(default_factory=dict)  # the embeddings this run makes, by metric

    @property
    def metrics(self) -> tuple[str, ...]:
        return self.options.metrics


def requested_metrics(args: argparse.Namespace) -> tuple[str, ...]:
    """``--metrics``, or by default ``clap`` and, with a reference, ``fd_clap``."""
    if args.metrics:
        return args.metrics
    return SCORES + (DEFAULT_DISTANCES if args.reference or args.reference_stats else ())


def model_options(args: argparse.Namespace, metrics: tuple[str, ...]) -> SetModelOptions:
    """The metrics and the flags naming their models."""
    return SetModelOptions(metrics, args.clap_model, args.openl3_content_type or "music", args.openl3_weights,
                           args.passt_weights)  # fmt: skip


def _flag_problems(args: argparse.Namespace, metrics: tuple[str, ...]) -> list[str]:
    """Flags that do not go together."""
    problems = []
    has_reference = args.reference is not None or args.reference_stats is not None
    distances = [m for m in metrics if m in DISTANCES]
    if distances and not has_reference:
        problems.append(f"--metrics {','.join(distances)}: needs --reference DIR or --reference-stats FILE")
    if has_reference and not distances:
        flag = "--reference" if args.reference is not None else "--reference-stats"
        problems.append(f"{flag}: no metric of --metrics {','.join(metrics)} uses it (add {','.join(DISTANCES)})")
    if "kl_passt" in metrics and args.reference_stats is not None:
        problems.append(f"--metrics kl_passt: pairs each file with the reference file of its id, so it needs --reference "
                        f"DIR; a statistics file holds no files ({args.reference_stats})")  # fmt: skip
    if args.save_stats is not None and args.reference is None:
        problems.append("--save-stats: saves the statistics of --reference DIR's audio, and no --reference is given")
    elif args.save_stats is not None and not set(FRECHET) & set(metrics):
        problems.append(f"--save-stats: a statistics file holds {' and '.join(FRECHET)}, and --metrics "
                        f"{','.join(metrics)} asks for neither")  # fmt: skip
    if "clap" not in metrics and (args.captions or args.file_column or args.caption_column):
        problems.append("--captions/--file-column/--caption-column: only the clap metric reads captions, and "
                        f"--metrics {','.join(metrics)} leaves it out")  # fmt: skip
    if args.captions is None and (args.file_column or args.caption_column):
        problems.append("--file-column and --caption-column apply to a --captions file, and none is given")
    for flags, metric, given in (("--openl3-content-type/--openl3-weights", "fd_openl3", args.openl3_content_type or args.openl3_weights),
                                 ("--passt-weights", "kl_passt", args.passt_weights)):  # fmt: skip
        if given and metric not in metrics:
            problems.append(f"{flags}: only {metric} uses them, and --metrics {','.join(metrics)} leaves it out")
    for flag, path in (("--output", args.output), ("--save-stats", args.save_stats)):
        if path is not None and path.is_dir():
            problems.append(f"{flag} {path}: is a folder; give a file name")
    return problems


def _captions(args: argparse.Namespace, files: list[str]) -> tuple[dict[str, tuple[str, ...]], list[str]]:
    """Each file's captions, read as ``prepare`` reads them, and every problem: a file without captions,
    captions without a file, a file listed twice, the captions file's (or sidecar files') own problems."""
    if args.captions is None:  # sidecar .txt files: the reader lists those without an audio file itself
        rows, found = read_sidecar_captions(args.audio_dir)
    else:
        rows, found = read_captions_file(args.captions, args.audio_dir, args.file_column, args.caption_column)
    problems = [problem.render() for problem in found]
    captions: dict[str, tuple[str, ...]] = {}
    present, seen, orphans = set(files), set(), []
    for row in rows:
        if row.relpath in seen:
            problems.append(f"{row.where}: {row.relpath!r} is listed twice")
            continue
        seen.add(row.relpath)
        if row.relpath not in present:
            orphans.append(f"line {row.line} {row.relpath!r}")
        elif row.captions:  # empty ones are among the reader's problems
            captions[row.relpath] = row.captions
    if orphans:
        problems.append(f"{args.captions}: no audio in --audio-dir {args.audio_dir} for {counted(len(orphans), 'row')}: "
                        f"{few(orphans)}")  # fmt: skip
    missing = [repr(relpath) for relpath in files if relpath not in seen]
    if missing:
        source = f"not in {args.captions}" if args.captions else "no .txt beside them"
        problems.append(f"--audio-dir {args.audio_dir}: no caption for {counted(len(missing), 'audio file')} "
                        f"({source}): {few(missing)}")  # fmt: skip
    return captions, problems


def _pairing_problems(args: argparse.Namespace, files: list[str], reference: list[str]) -> list[str]:
    """KL_passt's pairs: ids two files of a folder share, files without a reference file of their id and back."""
    problems = [twice for flag, folder, found in (("--audio-dir", args.audio_dir, files), ("--reference", args.reference, reference))
                if (twice := duplicate_id_problem(flag, folder, found, few))]  # fmt: skip
    alone, unused = unpaired(files, reference)
    if alone:
        problems.append(f"--metrics kl_passt: {counted(len(alone), 'file')} of --audio-dir {args.audio_dir} without a file "
                        f"of the same id (path without extension) in --reference {args.reference}: "
                        f"{few([repr(r) for r in alone])}")  # fmt: skip
    if unused:
        problems.append(f"--metrics kl_passt: {counted(len(unused), 'file')} of --reference {args.reference} without a "
                        f"file of the same id in --audio-dir {args.audio_dir}: {few([repr(r) for r in unused])}")  # fmt: skip
    return problems


def check_inputs(args: argparse.Namespace) -> tuple[ScoreInputs | None, list[str]]:
    """Everything that can be checked before embedding, every problem found (rank 0 only: it reads every header)."""
    metrics = requested_metrics(args)
    options = model_options(args, metrics)
    problems = _flag_problems(args, metrics)
    files, found = audio_files(args.audio_dir, "--audio-dir")
    problems += found
    captions: dict[str, tuple[str, ...]] = {}
    if "clap" in metrics and args.audio_dir.is_dir():
        captions, found = _captions(args, files)
        problems += found
    reference: list[str] = []
    if args.reference is not None:
        reference, found = audio_files(args.reference, "--reference")
        problems += found
        if "kl_passt" in metrics and files and reference:
            problems += _pairing_problems(args, files, reference)
    spaces, found = embedding_spaces(options)
    problems += found
    stats = None
    if args.reference_stats is not None:
        try:
            stats = load_stats(args.reference_stats)
        except StatsFileError as exc:
            problems.append(str(exc))
        else:
            problems += [why for metric in metrics if metric in FRECHET and metric in spaces
                         and (why := space_problem(stats, metric, spaces[metric], args.reference_stats))]  # fmt: skip
    if set(FRECHET) & set(metrics):
        for flag, folder, found_files in (("--audio-dir", args.audio_dir, files), ("--reference", args.reference, reference)):
            if folder is not None and 0 < len(found_files) < 2:
                problems.append(f"{flag} {folder}: 1 audio file; a Fréchet distance needs at least 2 on each side")
    if problems:
        return None, problems
    return ScoreInputs(options, files, captions, reference, stats, spaces), []


def _embed_share(ctx: DistContext, models: SetModels, folder: Path, relpaths: list[str],
                 captions: dict[str, tuple[str, ...]]) -> tuple[SetEmbeddings, dict[str, float]]:  # fmt: skip
    """This rank's share of ``relpaths`` embedded by every model, and (with captions) each file's CLAP score."""
    mine = shard(relpaths, ctx.world_size, ctx.rank)
    embedded = embed_files(models, folder, mine)
    scores: dict[str, float] = {}
    if captions and mine:
        texts = [text for relpath in mine for text in captions[relpath]]
        owners = np.repeat(np.arange(len(mine)), [len(captions[relpath]) for relpath in mine])
        cosines = cosine_scores(models.clap.text_embeddings(texts), embedded.clap[owners])
        scores = {relpath: float(np.mean(cosines[owners == index])) for index, relpath in enumerate(mine)}
    return embedded, scores


def _gathered(ctx: DistContext, share: tuple[SetEmbeddings, dict[str, float]], order: list[str]) -> tuple[SetEmbeddings, dict[str, float]]:
    """Every rank's share on rank 0 as one set in ``order``, and the scores."""
    parts = all_gather(ctx, share)
    return SetEmbeddings.join([part for part, _ in parts], order), {k: v for _, scores in parts for k, v in scores.items()}


@dataclass(frozen=True)
class SetResult:
    """A set metric's value and what it rests on, for the table."""

    name: str
    value: float | None
    basis: str


def _reference_name(args: argparse.Namespace) -> str:
    return f"--reference {args.reference}" if args.reference is not None else f"--reference-stats {args.reference_stats}"


def _results(args: argparse.Namespace, inputs: ScoreInputs, own: SetEmbeddings, scores: dict[str, float],
             distances: dict[str, Distance]) -> tuple[dict, list[SetResult], list[str]]:  # fmt: skip
    """The JSON document, the table's rows and the size warnings."""
    files = {relpath: ({"clap": scores[relpath]} if "clap" in inputs.metrics else {}) for relpath in inputs.files}
    sets: dict[str, float | None] = {}
    rows, warnings = [], []
    if "clap" in inputs.metrics:
        sets["clap"] = float(np.mean(list(scores.values())))
        rows.append(SetResult(NAMES["clap"], sets["clap"], f"mean of {counted(len(files), 'file')}: prompt-audio cosine "
                                                           f"in [-1, 1], {inputs.spaces['fd_clap'].model}"))  # fmt: skip
    for metric in DISTANCES:
        if metric in distances:
            found = distances[metric]
            sets[metric] = found.value
            rows.append(SetResult(NAMES[metric], found.value, f"{found.basis} ({_reference_name(args)}); lower is closer"))
            warnings += found.warnings
    return {"files": files, "sets": sets}, rows, warnings


def _print_table(args: argparse.Namespace, rows: list[SetResult], warnings: list[str], written: list[str]) -> None:
    """One table of the set metrics, then the warnings and what was written."""
    console = Console(highlight=False)
    if not console.is_terminal:
        console.width = LOG_WIDTH
    table = Table(title=Text(f"Scores: {args.audio_dir}"), title_justify="left")
    table.add_column("metric", style="bold")
    table.add_column("value", justify="right")
    table.add_column("basis")
    for row in rows:
        value = "-" if row.value is None else f"{row.value:.4f}" if row.name == NAMES["clap"] else f"{row.value:.4g}"
        table.add_row(row.name, value, Text(row.basis))  # Text: a path holding [brackets] is not markup
    console.print(table)
    for line in warnings:
        console.print(f"warning: {line}", soft_wrap=True, markup=False)
    for line in written:
        console.print(line, soft_wrap=True, markup=False)


def _finish(args: argparse.Namespace, inputs: ScoreInputs, own: SetEmbeddings, scores: dict[str, float],
            reference: SetEmbeddings | None) -> None:  # fmt: skip
    """Rank 0: the set metrics, the JSON and the stats file (atomically), the table."""
    gaussians: dict[str, Gaussian] = reference.gaussians() if reference is not None else {}
    if reference is None and inputs.stats is not None:
        gaussians = {metric: stored.gaussian for metric, stored in inputs.stats.items() if metric in inputs.metrics}
    probs = reference.probabilities_by_id() if reference is not None and "kl_passt" in inputs.metrics else None
    distances = set_distances(inputs.metrics, own, gaussians, probs, f"--audio-dir {args.audio_dir}", _reference_name(args))
    document, rows, warnings = _results(args, inputs, own, scores, distances)
    written = []
    if args.output is not None:
        atomic_write_text(args.output, json.dumps(document, indent=1) + "\n")
        written.append(f"scores: {args.output}")
    saved = {metric: StoredStats(gaussians[metric], inputs.spaces[metric]) for metric in FRECHET
             if metric in inputs.metrics and metric in gaussians}  # fmt: skip
    if args.save_stats is not None and saved:
        save_stats(args.save_stats, saved, str(args.reference))
        counts = ", ".join(f"{NAMES[metric]}: {stored.gaussian.count} {'frames' if metric == 'fd_openl3' else 'files'}"
                           for metric, stored in saved.items())  # fmt: skip
        written.append(f"reference statistics ({counts}): {args.save_stats}; next time: --reference-stats {args.save_stats}")
    _print_table(args, rows, warnings, written)


def score(args: argparse.Namespace) -> int:
    """Check every input (rank 0), embed the files sharded over the ranks, then (rank 0) write and print."""
    ctx = join_job("auto", args.dist_timeout)
    if ctx is None:
        return EXIT_JOB_FAILED
    try:
        inputs, problems = broadcast_from_main(ctx, check_inputs(args) if ctx.is_main else (None, []))
        if inputs is None:
            if ctx.is_main:
                print(f"error: {counted(len(problems), 'problem')}; nothing was written:", file=sys.stderr)
                print("\n".join(f"  {problem}" for problem in problems), file=sys.stderr)
            return EXIT_USAGE
        try:
            models = SetModels.load(inputs.options, ctx.device)
        except (ClapLoadError, Openl3LoadError, PasstLoadError) as exc:
            if ctx.is_main:
                flag = {ClapLoadError: "--clap-model", Openl3LoadError: "--openl3-weights"}.get(type(exc), "--passt-weights")
                print(f"error: {flag}: {exc}; nothing was written", file=sys.stderr)
            return EXIT_USAGE
        if ctx.is_main:
            print(f"score: {counted(len(inputs.files), 'file')}" + (f" and {len(inputs.reference)} reference files"
                  if inputs.reference else "") + f" on {counted(ctx.world_size, 'rank')}", flush=True)  # fmt: skip
        captions = inputs.captions if "clap" in inputs.metrics else {}
        own, scores = _gathered(ctx, _embed_share(ctx, models, args.audio_dir, inputs.files, captions), inputs.files)
        reference = None
        if inputs.reference:
            reference, _ = _gathered(ctx, _embed_share(ctx, models, args.reference, inputs.reference, {}), inputs.reference)
        if ctx.is_main:
            _finish(args, inputs, own, scores, reference)
        return EXIT_OK
    finally:
        shutdown(ctx)
