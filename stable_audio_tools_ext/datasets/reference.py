"""A generated folder against a reference set (``--reference DIR``): its FD_openl3, KL_passt and FD_clap.

``report.html`` (``python -m stable_audio_tools_ext.datasets.report OUT --reference DIR``: one folder)
and ``comparison.html`` (``finetune.py evaluate --reference DIR``: one folder per model) show the same
distances, computed here once for both with ``scoring.sets``: the reference is embedded once, each
folder's written files are embedded cut to their items' ``seconds_total`` (a file written without
``--clip-length`` holds the whole window), and ``SetResults`` keeps each distance (or why there is
none) with the file counts it rests on. The pages render them with ``report``'s distance helpers.

``reference_problems`` checks all a reference needs before anything is generated or embedded: the
folder's audio, the weights files of the asked metrics, and for KL_passt ids two files share.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..output.manifest import load_records
from ..output.resume import VALID_STATUSES
from ..scoring.clap import ClapLoadError
from ..scoring.frechet import Gaussian
from ..scoring.openl3 import Openl3LoadError
from ..scoring.options import DEFAULT_DISTANCES, NAMES
from ..scoring.passt import PasstLoadError
from ..scoring.sets import Distance, SetModelOptions, SetModels, duplicate_id_problem, embed_files, embedding_spaces, set_distances
from .audio_dir import audio_files


@dataclass(frozen=True)
class SetResults:
    """A folder's distances to the reference set by metric (a value ``None`` when the sets allow none, the warnings
    saying why) and the file counts they rest on."""

    distances: dict[str, Distance]
    count: int
    reference_count: int


@dataclass(frozen=True)
class ReferenceSet:
    """The reference as the distances need it: its Gaussians, its class probabilities by file id (kl_passt), its files."""

    folder: Path
    gaussians: dict[str, Gaussian]
    probabilities: dict[str, np.ndarray] | None
    count: int


def set_options(args: argparse.Namespace) -> SetModelOptions:
    """``--metrics`` (default: fd_clap, the one that needs no further weights) and the flags naming their models
    (``scoring.options.add_set_model_arguments``, ``--clap-model``), as the report and ``evaluate`` name them."""
    return SetModelOptions(args.metrics or DEFAULT_DISTANCES, args.clap_model, args.openl3_content_type or "music",
                           args.openl3_weights, args.passt_weights)  # fmt: skip


def reference_problems(options: SetModelOptions, folder: Path) -> tuple[list[str], list[str]]:
    """The reference's audio files (relpaths, sorted) and every problem: the folder's (``audio_files``), the weights
    files' of the asked metrics (by flag), and for kl_passt the ids two reference files share."""
    files, problems = audio_files(folder, "--reference")
    if "kl_passt" in options.metrics and (twice := duplicate_id_problem("--reference", folder, files)):
        problems.append(twice)
    return files, problems + embedding_spaces(options)[1]


def embed_reference(models: SetModels, options: SetModelOptions, folder: Path, relpaths: list[str]) -> ReferenceSet:
    """The reference files embedded by every model the metrics need, each read once."""
    embedded = embed_files(models, folder, relpaths)
    probabilities = embedded.probabilities_by_id() if "kl_passt" in options.metrics else None
    return ReferenceSet(folder, embedded.gaussians(), probabilities, len(relpaths))


def written_files(folder: Path) -> list[tuple[str, float]]:
    """The files a generated folder holds for its items (relpaths, sorted), those written only, each with its item's
    ``seconds_total``."""
    records = load_records(folder)
    return [(relpath, record["seconds_total"]) for relpath, record in sorted(records.items())
            if record.get("status") in VALID_STATUSES and (folder / relpath).is_file()]  # fmt: skip


def folder_results(models: SetModels, options: SetModelOptions, reference: ReferenceSet, folder: Path,
                   name: str) -> SetResults:  # fmt: skip
    """``folder``'s distances to the reference (``name`` names it in the warnings: a model's label, ``OUTPUT_DIR``)."""
    files = written_files(folder)
    own = embed_files(models, folder, [relpath for relpath, _ in files], [seconds for _, seconds in files])
    where = f"--reference {reference.folder}"
    distances = set_distances(options.metrics, own, reference.gaussians, reference.probabilities, name, where)
    for metric in options.metrics:  # a reference of one file: no Gaussian, so no distance; say why
        distances.setdefault(metric, Distance(metric, None, "", (f"{NAMES[metric]}: {where}: {reference.count} file: "
                                                                 "no distance, a covariance needs at least 2",)))  # fmt: skip
    return SetResults(distances, len(files), reference.count)


def results_against(output_dir: Path, reference: Path, options: SetModelOptions) -> tuple[SetResults | None, list[str]]:
    """``output_dir``'s distances to ``reference`` (the report's), or every problem found before embedding anything
    (and a model that fails to load); the models on the first GPU when there is one."""
    files, problems = reference_problems(options, reference)
    if problems:
        return None, problems
    try:
        models = SetModels.load(options)
    except (ClapLoadError, Openl3LoadError, PasstLoadError) as exc:
        return None, [f"--reference needs the models of --metrics: {exc}"]
    return folder_results(models, options, embed_reference(models, options, reference, files), output_dir,
                          str(output_dir)), []  # fmt: skip
