"""``finetune.py score``: the field's metrics for any folder of audio, ours or not.

Per file, ``clap``: the CLAP score (``scoring.clap``, stable-audio-metrics' recipe) of the file, whole,
against its captions (the mean over them when a file has several; with one, the published score). Per
set, ``clap``: the mean of the files' scores, and ``fd_clap``: the Fréchet distance of the files' CLAP
audio embeddings to a reference set (``--reference DIR``) or to its statistics saved earlier
(``--reference-stats FILE``, ``scoring.stats_file``). Metric names are the JSON keys; a further metric
is a further name in ``scoring.options``' ``SCORES`` or ``DISTANCES`` and its computation beside these.

Every input is checked on rank 0 before anything is embedded (captions as ``finetune.py prepare``
reads them, every audio header, the stats file and the model it was made with), and every problem is
listed at once: exit 2, nothing written. Under torchrun the files (and reference files) are sharded
over the ranks, each embeds its share on its device, and rank 0 gathers them in file order, computes
the set metrics, writes the JSON (and ``--save-stats``) atomically and prints the table.
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

from ..finetune.captions import AUDIO_EXTENSIONS, counted, few, read_captions_file, read_sidecar_captions, scan_audio
from ..output.atomic import atomic_write_text
from ..output.audio_io import audio_header
from ..run.distributed import DistContext, all_gather, broadcast_from_main, join_job, shard, shutdown
from ..run.exits import EXIT_JOB_FAILED, EXIT_OK, EXIT_USAGE
from ..scoring.clap import ClapLoadError, ClapScorer, checkpoint_identity, cosine_scores
from ..scoring.clap_recipe import RECIPE_VERSION
from ..scoring.frechet import Gaussian, frechet_between, gaussian_of, size_warning
from ..scoring.options import DISTANCES, SCORES
from ..scoring.stats_file import EmbeddingSpace, StatsFileError, StoredStats, load_stats, save_stats, space_problem

LOG_WIDTH = 160  # table columns when writing to a log file rather than a terminal


@dataclass(frozen=True)
class ScoreInputs:
    """What rank 0 found and checked: the files (relpaths, sorted), their captions, the reference."""

    metrics: tuple[str, ...]
    files: list[str]
    captions: dict[str, tuple[str, ...]] = field(default_factory=dict)  # only when clap is asked for
    reference: list[str] = field(default_factory=list)  # relpaths under --reference
    stats: dict[str, StoredStats] | None = None  # --reference-stats
    space: EmbeddingSpace | None = None  # the CLAP embeddings this run makes


def requested_metrics(args: argparse.Namespace) -> tuple[str, ...]:
    """``--metrics``, or by default ``clap`` and, with a reference, ``fd_clap``."""
    if args.metrics:
        return args.metrics
    return SCORES + (DISTANCES if args.reference or args.reference_stats else ())


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
    if args.save_stats is not None and args.reference is None:
        problems.append("--save-stats: saves the statistics of --reference DIR's audio, and no --reference is given")
    if "clap" not in metrics and (args.captions or args.file_column or args.caption_column):
        problems.append("--captions/--file-column/--caption-column: only the clap metric reads captions, and "
                        f"--metrics {','.join(metrics)} leaves it out")  # fmt: skip
    if args.captions is None and (args.file_column or args.caption_column):
        problems.append("--file-column and --caption-column apply to a --captions file, and none is given")
    for flag, path in (("--output", args.output), ("--save-stats", args.save_stats)):
        if path is not None and path.is_dir():
            problems.append(f"{flag} {path}: is a folder; give a file name")
    return problems


def _audio_files(folder: Path, flag: str) -> tuple[list[str], list[str]]:
    """The audio files under ``folder`` (``prepare``'s scan rule) and the problems: not a folder, none, unreadable."""
    if not folder.is_dir():
        return [], [f"{flag} {folder}: not a folder"]
    files = scan_audio(folder)
    if not files:
        return [], [f"{flag} {folder}: no audio files ({', '.join(AUDIO_EXTENSIONS)} at any depth)"]
    problems = []
    for relpath in files:
        header = audio_header(folder / relpath)
        if isinstance(header, str):
            problems.append(f"{flag} {folder}: {relpath!r}: {header}")
    return files, problems


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


def check_inputs(args: argparse.Namespace) -> tuple[ScoreInputs | None, list[str]]:
    """Everything that can be checked before embedding, every problem found (rank 0 only: it reads every header)."""
    metrics = requested_metrics(args)
    problems = _flag_problems(args, metrics)
    files, found = _audio_files(args.audio_dir, "--audio-dir")
    problems += found
    captions: dict[str, tuple[str, ...]] = {}
    if "clap" in metrics and args.audio_dir.is_dir():
        captions, found = _captions(args, files)
        problems += found
    reference: list[str] = []
    if args.reference is not None:
        reference, found = _audio_files(args.reference, "--reference")
        problems += found
    space, stats = None, None
    try:
        space = EmbeddingSpace(*checkpoint_identity(args.clap_model, None), RECIPE_VERSION)
    except (OSError, ValueError) as exc:  # not in the cache offline, no such repo, not a repo id
        problems.append(f"--clap-model {args.clap_model}: cannot load it ({str(exc).strip().splitlines()[0]})")
    if args.reference_stats is not None:
        try:
            stats = load_stats(args.reference_stats)
        except StatsFileError as exc:
            problems.append(str(exc))
        else:
            problems += [why for metric in metrics if metric in DISTANCES and space is not None
                         and (why := space_problem(stats, metric, space, args.reference_stats))]  # fmt: skip
    if any(m in DISTANCES for m in metrics):
        for flag, folder, found_files in (("--audio-dir", args.audio_dir, files), ("--reference", args.reference, reference)):
            if folder is not None and 0 < len(found_files) < 2:
                problems.append(f"{flag} {folder}: 1 audio file; a Fréchet distance needs at least 2 on each side")
    if problems:
        return None, problems
    return ScoreInputs(metrics, files, captions, reference, stats, space), []


def _embed_share(ctx: DistContext, scorer: ClapScorer, folder: Path, relpaths: list[str],
                 captions: dict[str, tuple[str, ...]]) -> list[tuple[str, np.ndarray, float | None]]:  # fmt: skip
    """This rank's share of ``relpaths``: each file's audio embedding and (with captions) its CLAP score."""
    mine = shard(relpaths, ctx.world_size, ctx.rank)
    audio = scorer.file_embeddings([(folder / relpath, None) for relpath in mine])
    scores: list[float | None] = [None] * len(mine)
    if captions:
        texts = [text for relpath in mine for text in captions[relpath]]
        owners = np.repeat(np.arange(len(mine)), [len(captions[relpath]) for relpath in mine])
        cosines = cosine_scores(scorer.text_embeddings(texts), audio[owners])
        scores = [float(np.mean(cosines[owners == index])) for index in range(len(mine))]
    return list(zip(mine, audio, scores))


def _gathered(ctx: DistContext, share: list[tuple[str, np.ndarray, float | None]], order: list[str]) -> tuple[np.ndarray, list[float | None]]:
    """Every rank's share on rank 0, in ``order``: the embeddings (n, dim) and the scores."""
    by_path = {relpath: (embedding, score) for part in all_gather(ctx, share) for relpath, embedding, score in part}
    return np.stack([by_path[relpath][0] for relpath in order]), [by_path[relpath][1] for relpath in order]


@dataclass(frozen=True)
class SetResult:
    """A set metric's value and what it rests on, for the table."""

    name: str
    value: float
    basis: str


def _results(args: argparse.Namespace, inputs: ScoreInputs, embeddings: np.ndarray, scores: list[float | None],
             reference: Gaussian | None) -> tuple[dict, list[SetResult], list[str]]:  # fmt: skip
    """The JSON document, the table's rows and the size warnings."""
    files = {relpath: ({"clap": score} if "clap" in inputs.metrics else {}) for relpath, score in zip(inputs.files, scores)}
    sets: dict[str, float] = {}
    rows, warnings = [], []
    if "clap" in inputs.metrics:
        sets["clap"] = float(np.mean([score for score in scores if score is not None]))
        rows.append(SetResult("CLAP score", sets["clap"], f"mean of {counted(len(files), 'file')}: prompt-audio cosine in "
                                                          f"[-1, 1], {inputs.space.model}"))  # fmt: skip
    if "fd_clap" in inputs.metrics and reference is not None:
        sets["fd_clap"] = frechet_between(gaussian_of(embeddings), reference)
        source = f"--reference {args.reference}" if args.reference is not None else f"--reference-stats {args.reference_stats}"
        rows.append(SetResult("FD_clap", sets["fd_clap"], f"{len(files)} files vs {reference.count} reference files "
                                                          f"({source}); lower is closer"))  # fmt: skip
        dim = embeddings.shape[1]
        warnings += [w for w in (size_warning(len(files), dim, f"--audio-dir {args.audio_dir}"),
                                 size_warning(reference.count, dim, source)) if w]  # fmt: skip
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
        table.add_row(row.name, f"{row.value:.4f}" if row.name == "CLAP score" else f"{row.value:.4g}", Text(row.basis))  # Text: a path holding [brackets] is not markup
    console.print(table)
    for line in warnings:
        console.print(f"warning: {line}", soft_wrap=True, markup=False)
    for line in written:
        console.print(line, soft_wrap=True, markup=False)


def _finish(args: argparse.Namespace, inputs: ScoreInputs, embeddings: np.ndarray, scores: list[float | None],
            reference: np.ndarray | None) -> None:  # fmt: skip
    """Rank 0: the set metrics, the JSON and the stats file (atomically), the table."""
    ref_gaussian = gaussian_of(reference) if reference is not None else None
    if ref_gaussian is None and inputs.stats is not None:
        ref_gaussian = inputs.stats["fd_clap"].gaussian
    document, rows, warnings = _results(args, inputs, embeddings, scores, ref_gaussian)
    written = []
    if args.output is not None:
        atomic_write_text(args.output, json.dumps(document, indent=1) + "\n")
        written.append(f"scores: {args.output}")
    if args.save_stats is not None and ref_gaussian is not None:
        save_stats(args.save_stats, {"fd_clap": StoredStats(ref_gaussian, inputs.space)}, str(args.reference))
        written.append(f"reference statistics ({ref_gaussian.count} files): {args.save_stats}; next time: --reference-stats {args.save_stats}")
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
            scorer = ClapScorer.load(args.clap_model, device=ctx.device)
        except ClapLoadError as exc:
            if ctx.is_main:
                print(f"error: --clap-model: {exc}; nothing was written", file=sys.stderr)
            return EXIT_USAGE
        if ctx.is_main:
            print(f"score: {counted(len(inputs.files), 'file')}" + (f" and {len(inputs.reference)} reference files"
                  if inputs.reference else "") + f" on {counted(ctx.world_size, 'rank')}", flush=True)  # fmt: skip
        share = _embed_share(ctx, scorer, args.audio_dir, inputs.files, inputs.captions if "clap" in inputs.metrics else {})
        embeddings, scores = _gathered(ctx, share, inputs.files)
        reference = None
        if inputs.reference:
            reference, _ = _gathered(ctx, _embed_share(ctx, scorer, args.reference, inputs.reference, {}), inputs.reference)
        if ctx.is_main:
            _finish(args, inputs, embeddings, scores, reference)
        return EXIT_OK
    finally:
        shutdown(ctx)
