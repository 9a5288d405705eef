"""The set metrics of a folder of audio against a reference: FD_openl3, KL_passt and FD_clap, from one read of each file.

``finetune.py score`` (files sharded over torchrun ranks) and ``finetune.py evaluate`` (each model's
files, on rank 0) compute them with this code: ``SetModels`` loads what the metrics asked for need,
``embed_files`` reads each file once (``FILE_CHUNK`` at a time) and hands its clip to every model,
``SetEmbeddings.join`` puts the ranks' shares back in file order, and ``set_distances`` gives each
metric's value, what it rests on and its warnings.

* ``fd_clap``: Fréchet distance of the files' CLAP audio embeddings (one per file);
* ``fd_openl3``: Fréchet distance of the OpenL3 frames (``openl3``: 1 s windows every 0.5 s, left
  and right 1024-d), kept as their ``Moments`` so a large set's frames are never in one place;
* ``kl_passt``: the mean over file ids of KL(eval || reference) of PaSST's class probabilities
  (``passt``), each file paired with the reference file of its id: its path relative to its folder
  without the extension (``rain/0001.wav`` pairs with ``rain/0001.flac``), the id stable-audio-metrics
  names its files by.

``embedding_spaces`` says which embeddings a run makes (model, weights or revision, recipe version),
so statistics saved from another model, another weights file or another recipe are refused by name.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np
import torch

from .clap import ClapScorer, checkpoint_identity, read_clip
from .clap_recipe import RECIPE_VERSION as CLAP_RECIPE_VERSION
from .frechet import Gaussian, Moments, frechet_between, gaussian_of, size_warning
from .openl3 import EMBEDDING_SIZE, EVAL_RATE, HOP_SECONDS, INPUT_REPR, Openl3Embedder, Openl3LoadError
from .openl3 import weights_path as openl3_weights_path
from .passt import PasstClassifier, PasstLoadError, paired_kl
from .passt import weights_path as passt_weights_path
from .hub_weights import file_digest
from .options import NAMES
from .stats_file import EmbeddingSpace

FILE_CHUNK = 64  # files read into memory at a time
OPENL3_RECIPE_VERSION = f"stable-audio-metrics-fd55536/openl3-1 ({EVAL_RATE} Hz, hop {HOP_SECONDS} s, L+R)"


@dataclass(frozen=True)
class SetModelOptions:
    """Which metrics, and the models' flags: ``--clap-model``, ``--openl3-content-type``, ``--openl3-weights``, ``--passt-weights``."""

    metrics: tuple[str, ...]
    clap_model: str
    openl3_content_type: str = "music"
    openl3_weights: Path | None = None
    passt_weights: Path | None = None

    def uses_clap(self) -> bool:
        return bool({"clap", "fd_clap"} & set(self.metrics))


def openl3_model_name(content_type: str) -> str:
    """How a stats file names the OpenL3 model: ``torchopenl3 mel256 music 512-d``."""
    return f"torchopenl3 {INPUT_REPR} {content_type} {EMBEDDING_SIZE}-d"


def embedding_spaces(options: SetModelOptions) -> tuple[dict[str, EmbeddingSpace], list[str]]:
    """What the embeddings of the asked metrics are made with (by Fréchet metric; ``fd_clap``'s whenever CLAP is
    loaded), and every weights problem, by flag.

    Reads the CLAP hub cache and the weights files (fetching OpenL3's and PaSST's into torch hub's cache
    once when missing and online); loads no model. Meant for rank 0, before anything is embedded.
    """
    spaces, problems = {}, []
    if options.uses_clap():
        try:
            spaces["fd_clap"] = EmbeddingSpace(*checkpoint_identity(options.clap_model, None), CLAP_RECIPE_VERSION)
        except (OSError, ValueError) as exc:  # not in the cache offline, no such repo, not a repo id
            problems.append(f"--clap-model {options.clap_model}: cannot load it ({str(exc).strip().splitlines()[0]})")
    if "fd_openl3" in options.metrics:
        try:
            path = openl3_weights_path(options.openl3_content_type, options.openl3_weights)
            spaces["fd_openl3"] = EmbeddingSpace(openl3_model_name(options.openl3_content_type), file_digest(path),
                                                 OPENL3_RECIPE_VERSION)  # fmt: skip
        except Openl3LoadError as exc:
            problems.append(f"--openl3-weights: {exc}")
    if "kl_passt" in options.metrics:
        try:
            passt_weights_path(options.passt_weights)
        except PasstLoadError as exc:
            problems.append(f"--passt-weights: {exc}")
    return spaces, problems


@dataclass
class SetModels:
    """The models the asked metrics need, on one device (``None`` for those not asked for)."""

    clap: ClapScorer | None = None
    openl3: Openl3Embedder | None = None
    passt: PasstClassifier | None = None

    @classmethod
    def load(cls, options: SetModelOptions, device: torch.device | None = None) -> SetModels:
        """Load them; raises ``ClapLoadError``, ``Openl3LoadError`` or ``PasstLoadError`` naming the weights."""
        return cls(ClapScorer.load(options.clap_model, device=device) if options.uses_clap() else None,
                   Openl3Embedder.load(options.openl3_content_type, device, options.openl3_weights)
                   if "fd_openl3" in options.metrics else None,
                   PasstClassifier.load(device, options.passt_weights) if "kl_passt" in options.metrics else None)  # fmt: skip


@dataclass
class SetEmbeddings:
    """A set of files as the metrics see it, files in ``relpaths`` order: what each model made of them."""

    relpaths: list[str]
    clap: np.ndarray | None = None  # (files, dim) unit CLAP audio embeddings
    openl3: Moments | None = None  # of every file's OpenL3 frames
    passt: np.ndarray | None = None  # (files, 527) class probabilities

    @classmethod
    def join(cls, parts: Sequence[SetEmbeddings], order: Sequence[str]) -> SetEmbeddings:
        """The parts (ranks' shares) as one set in ``order`` (every relpath in exactly one part)."""
        where = {relpath: (part, row) for part in parts for row, relpath in enumerate(part.relpaths)}

        def rows(name: str) -> np.ndarray | None:
            if getattr(parts[0], name) is None:
                return None
            return np.stack([getattr(where[r][0], name)[where[r][1]] for r in order]) if order else getattr(parts[0], name)

        openl3 = None
        if parts[0].openl3 is not None:
            openl3 = parts[0].openl3
            for part in parts[1:]:
                openl3 = openl3 + part.openl3
        return cls(list(order), rows("clap"), openl3, rows("passt"))

    def gaussians(self) -> dict[str, Gaussian]:
        """The Gaussian of each Fréchet metric the set has enough embeddings for (2 or more)."""
        fitted = {}
        if self.openl3 is not None and self.openl3.count >= 2:
            fitted["fd_openl3"] = self.openl3.gaussian()
        if self.clap is not None and len(self.clap) >= 2:
            fitted["fd_clap"] = gaussian_of(self.clap)
        return fitted

    def probabilities_by_id(self) -> dict[str, np.ndarray]:
        """PaSST's class probabilities by file id (``file_id``)."""
        return {file_id(relpath): row for relpath, row in zip(self.relpaths, self.passt)} if self.passt is not None else {}


def file_id(relpath: str) -> str:
    """The id that pairs a file with its reference for KL_passt: its relative path without the extension."""
    return str(PurePosixPath(relpath).with_suffix(""))


def duplicate_ids(relpaths: Sequence[str]) -> list[str]:
    """Ids that two files of one folder share (``a.wav`` and ``a.flac``): such a file could not be paired."""
    seen: dict[str, str] = {}
    twice = []
    for relpath in relpaths:
        if file_id(relpath) in seen:
            twice.append(f"{seen[file_id(relpath)]!r} and {relpath!r}")
        seen.setdefault(file_id(relpath), relpath)
    return twice


def duplicate_id_problem(flag: str, folder: Path, relpaths: Sequence[str],
                         listing: Callable[[Sequence[str]], str] = ", ".join) -> str | None:  # fmt: skip
    """The problem to report when two files of ``folder`` (given as ``flag``) share an id, else ``None``;
    ``listing`` writes the pairs (all of them by default)."""
    twice = duplicate_ids(relpaths)
    return f"{flag} {folder}: two files with one id (KL_passt pairs by path without extension): {listing(twice)}" if twice else None


def unpaired(relpaths: Sequence[str], reference: Sequence[str]) -> tuple[list[str], list[str]]:
    """The files without a reference file of their id, and the reference files without a file of theirs."""
    ids, ref_ids = {file_id(r) for r in relpaths}, {file_id(r) for r in reference}
    return [r for r in relpaths if file_id(r) not in ref_ids], [r for r in reference if file_id(r) not in ids]


def embed_files(models: SetModels, folder: Path, relpaths: Sequence[str],
                seconds: Sequence[float | None] | None = None) -> SetEmbeddings:  # fmt: skip
    """``relpaths`` under ``folder`` embedded by every loaded model, each file read once (cut to its ``seconds``)."""
    seconds = list(seconds) if seconds is not None else [None] * len(relpaths)
    clap, passt, openl3 = [], [], Moments.of(np.zeros((0, 2 * EMBEDDING_SIZE)))
    for start in range(0, len(relpaths), FILE_CHUNK):
        clips = [read_clip(folder / relpath, cut) for relpath, cut in
                 zip(relpaths[start:start + FILE_CHUNK], seconds[start:start + FILE_CHUNK])]  # fmt: skip
        if models.clap is not None:
            clap.append(models.clap.audio_embeddings(clips))
        if models.openl3 is not None:
            openl3 = openl3 + Moments.of(models.openl3.frames(clips))
        if models.passt is not None:
            passt.append(models.passt.probabilities(clips))
    clap_dim = models.clap.model.config.projection_dim if models.clap is not None else 0
    return SetEmbeddings(list(relpaths),
                         np.concatenate(clap) if clap else np.zeros((0, clap_dim), np.float32) if models.clap else None,
                         openl3 if models.openl3 is not None else None,
                         np.concatenate(passt) if passt else np.zeros((0, 527), np.float32) if models.passt else None)  # fmt: skip


@dataclass(frozen=True)
class Distance:
    """A set metric's value (``None`` when the sets do not allow one: why is among the warnings) and its basis."""

    metric: str
    value: float | None
    basis: str
    warnings: tuple[str, ...] = ()


def set_distances(metrics: Sequence[str], own: SetEmbeddings, reference: dict[str, Gaussian],
                  reference_probs: dict[str, np.ndarray] | None, own_name: str, ref_name: str) -> dict[str, Distance]:  # fmt: skip
    """Each asked distance of ``own`` to the reference (its Gaussians; its probabilities by id for kl_passt).

    ``own_name`` and ``ref_name`` name the two sides in the warnings (``--audio-dir DIR``, a model's label).
    """
    fitted, results = own.gaussians(), {}
    files = len(own.relpaths)
    for metric in metrics:
        if metric == "fd_clap" and "fd_clap" in reference:
            ref = reference["fd_clap"]
            results[metric] = _frechet(metric, fitted, ref, own_name, ref_name, files, "files",
                                       f"{files} files vs {ref.count} reference files")  # fmt: skip
        elif metric == "fd_openl3" and "fd_openl3" in reference and own.openl3 is not None:
            ref = reference["fd_openl3"]
            results[metric] = _frechet(metric, fitted, ref, own_name, ref_name, own.openl3.count, "frames",
                                       f"{own.openl3.count} frames of {files} files vs {ref.count} reference frames")  # fmt: skip
        elif metric == "kl_passt" and reference_probs is not None:
            probs = own.probabilities_by_id()
            missing = sorted(set(probs) - set(reference_probs))
            if missing or not probs:
                results[metric] = Distance(metric, None, f"{len(probs)} files, {len(missing)} without a reference file",
                                           (f"{own_name}: no KL_passt: it pairs each file with the reference file of its "
                                            f"id (path without extension), and {len(missing)} of {len(probs)} have none "
                                            f"in {ref_name} (e.g. {', '.join(missing[:3])})",))  # fmt: skip
            else:
                results[metric] = Distance(metric, paired_kl(probs, {key: reference_probs[key] for key in probs}),
                                           f"{len(probs)} pairs by file id")  # fmt: skip
    return results


def _frechet(metric: str, fitted: dict[str, Gaussian], ref: Gaussian, own_name: str, ref_name: str, count: int,
             unit: str, basis: str) -> Distance:  # fmt: skip
    """A Fréchet metric's distance with its size warnings, or ``None`` when a side has fewer than 2 embeddings."""
    dim = len(ref.mean)
    warnings = tuple(w for w in (size_warning(count, dim, f"{NAMES[metric]}: {own_name}", unit),
                                 size_warning(ref.count, dim, f"{NAMES[metric]}: {ref_name}", unit)) if w)  # fmt: skip
    if metric not in fitted:
        return Distance(metric, None, basis, (f"{NAMES[metric]}: {own_name}: {count} {unit}: no distance, a covariance "
                                              "needs at least 2",) + warnings)  # fmt: skip
    return Distance(metric, frechet_between(fitted[metric], ref), basis, warnings)
