"""A reference set's embedding statistics in a file, so a large reference is embedded once (``score --save-stats``).

A Fréchet distance needs of the reference only the Gaussian fitted to its embeddings (``frechet``'s
``Gaussian``: mean, covariance, count). The file is NumPy's ``.npz`` (a zip of arrays, read with
``allow_pickle=False``, so loading one runs no code): per distance metric ``<metric>.mean``,
``<metric>.cov`` and ``<metric>.count``, and ``info``, a JSON text with the format and, per metric,
what made the embeddings: the model id, its revision (hub commit) and the recipe version. A
distance between embeddings of two models or two recipes means nothing, so statistics are refused
(by name) unless all three match the model the command loads. One metric (``fd_clap``) is stored
today; others add their own keys beside it.
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ..output.atomic import atomic_open
from .frechet import Gaussian

FORMAT = "stable_audio_tools_ext embedding statistics"
FORMAT_VERSION = 1


class StatsFileError(ValueError):
    """A stats file that cannot be used; the message names the file and what is wrong."""


@dataclass(frozen=True)
class EmbeddingSpace:
    """What made a set of embeddings: the model (hub id or local folder), its revision and the recipe version."""

    model: str
    revision: str | None  # the hub commit; None for a local folder
    recipe: str

    def describe(self) -> str:
        return f"{self.model} ({f'revision {self.revision}' if self.revision else 'a local folder'}), recipe {self.recipe}"


@dataclass(frozen=True)
class StoredStats:
    """One metric's reference Gaussian and the embedding space it lives in."""

    gaussian: Gaussian
    space: EmbeddingSpace


def save_stats(path: Path, stats: dict[str, StoredStats], source: str) -> None:
    """Write ``stats`` (by metric name) to ``path`` atomically; ``source`` says which files they came from."""
    arrays: dict[str, np.ndarray] = {}
    for metric, stored in stats.items():
        arrays |= {f"{metric}.mean": stored.gaussian.mean, f"{metric}.cov": stored.gaussian.cov,
                   f"{metric}.count": np.array(stored.gaussian.count)}  # fmt: skip
    info = {"format": FORMAT, "version": FORMAT_VERSION, "source": source,
            "metrics": {metric: asdict(stored.space) for metric, stored in stats.items()}}  # fmt: skip
    with atomic_open(path) as handle:
        np.savez(handle, info=np.array(json.dumps(info)), **arrays)


def load_stats(path: Path) -> dict[str, StoredStats]:
    """The statistics in ``path`` by metric name; ``StatsFileError`` when it is not a stats file this code wrote."""
    where = f"--reference-stats {path}"
    try:
        with np.load(path, allow_pickle=False) as data:
            info = json.loads(str(data["info"]))
            if info.get("format") != FORMAT or info.get("version") != FORMAT_VERSION:
                raise StatsFileError(f"{where}: not an embedding statistics file of format version {FORMAT_VERSION} "
                                     f"(it says {info.get('format')!r} version {info.get('version')!r})")  # fmt: skip
            return {metric: StoredStats(Gaussian(data[f"{metric}.mean"], data[f"{metric}.cov"], int(data[f"{metric}.count"])),
                                        EmbeddingSpace(**space))
                    for metric, space in info["metrics"].items()}  # fmt: skip
    except FileNotFoundError:
        raise StatsFileError(f"{where}: no such file") from None
    except (OSError, ValueError, KeyError, TypeError, AttributeError, zipfile.BadZipFile) as exc:
        if isinstance(exc, StatsFileError):
            raise
        raise StatsFileError(f"{where}: not an embedding statistics file written by finetune.py score --save-stats "
                             f"({type(exc).__name__}: {exc})") from None  # fmt: skip


def space_problem(stats: dict[str, StoredStats], metric: str, expected: EmbeddingSpace, path: Path) -> str | None:
    """Why ``stats`` cannot serve ``metric`` for embeddings made in ``expected``, or ``None`` when they can."""
    where = f"--reference-stats {path}"
    if metric not in stats:
        return f"{where}: holds no statistics for {metric} (it has {', '.join(sorted(stats)) or 'none'})"
    stored = stats[metric].space
    if stored != expected:
        return (f"{where}: its {metric} statistics were made with {stored.describe()}, not with {expected.describe()} "
                "as this run embeds: a distance between them would mean nothing; embed the reference again "
                "(--reference DIR --save-stats FILE)")  # fmt: skip
    return None
