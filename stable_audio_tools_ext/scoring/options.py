"""The scoring flags ``generate.py`` and ``finetune.py score``/``evaluate`` share (torch-free, so help and flag
errors print at once)."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

from ..model.tiny import CLAP_REPO_ID

DEFAULT_CLAP_MODEL = CLAP_REPO_ID  # why this checkpoint: scoring/clap.py; the offline tiny build fakes this repo
SCORES = ("clap",)  # a value per item (generate.py --score) or file (finetune.py score)
# A set's distance to a reference set (finetune.py score, evaluate --reference, the JSON's names): the SAO paper's
# FD_openl3 and KL_passt, and the Fréchet distance on CLAP embeddings
DISTANCES = ("fd_openl3", "kl_passt", "fd_clap")
DEFAULT_DISTANCES = ("fd_clap",)  # with a reference and no --metrics: the one that needs no further weights
FRECHET = ("fd_openl3", "fd_clap")  # the distances a reference statistics file can hold (kl_passt pairs clips)
METRICS = SCORES + DISTANCES  # finetune.py score --metrics
NAMES = {"clap": "CLAP score", "fd_openl3": "FD_openl3", "kl_passt": "KL_passt", "fd_clap": "FD_clap"}  # as shown
OPENL3_CONTENT_TYPES = ("music", "env")  # scoring.openl3.CONTENT_TYPES (that module imports torch)
SET_METRIC_COMMANDS = "finetune.py score --audio-dir DIR --reference DIR, finetune.py evaluate --reference DIR"


def score_names(text: str) -> str:
    """generate.py's ``--score``: per-item metrics only (``clap``); a set metric names the commands that compute it."""
    names = list(dict.fromkeys(part.strip() for part in text.split(",") if part.strip()))
    sets = [name for name in names if name in DISTANCES]
    if sets:
        raise argparse.ArgumentTypeError(f"{', '.join(sets)}: a distance between a whole set and a reference set, not "
                                         f"a per-item score; use {SET_METRIC_COMMANDS} (docs/evaluation.md)")  # fmt: skip
    unknown = [name for name in names if name not in SCORES]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"unknown score {', '.join(map(repr, unknown)) or repr(text)}: choose from "
                                         f"{', '.join(SCORES)}")  # fmt: skip
    return ",".join(names)


def metric_names(known: tuple[str, ...]) -> Callable[[str], tuple[str, ...]]:
    """A ``--metrics`` parser: comma-separated names of ``known``, each once."""

    def parse(text: str) -> tuple[str, ...]:
        names = tuple(dict.fromkeys(part.strip() for part in text.split(",")))
        unknown = [name for name in names if name not in known]
        if unknown or not names:
            raise argparse.ArgumentTypeError(f"unknown metric {', '.join(map(repr, unknown)) or repr(text)}: "
                                             f"choose from {', '.join(known)}")  # fmt: skip
        return names

    return parse


def reference_flags_problem(args: argparse.Namespace) -> str | None:
    """The distance flags (``--metrics``, ``add_set_model_arguments``') given without ``--reference``, or ``None``."""
    if args.reference is None and (args.metrics or args.openl3_content_type or args.openl3_weights or args.passt_weights):
        return "--metrics/--openl3-*/--passt-weights: distances to --reference DIR, and none is given"
    return None


def add_score_arguments(parser: argparse.ArgumentParser) -> None:
    """``--score`` and ``--clap-model`` (documented in docs/datasets.md)."""
    group = parser.add_argument_group("scores (docs/datasets.md)")
    group.add_argument(
        "--score",
        type=score_names,
        metavar="clap",
        help="score every written item: clap adds clap_score (prompt-audio cosine similarity in [-1, 1]) to its "
        "manifest record; items an earlier run wrote without one are scored from their files (default: no scores). "
        f"Set metrics ({', '.join(DISTANCES)}) compare whole sets: {SET_METRIC_COMMANDS}",
    )
    group.add_argument(
        "--clap-model",
        default=DEFAULT_CLAP_MODEL,
        metavar="ID",
        help="CLAP checkpoint of --score clap: a hub id or a local folder (default: %(default)s)",
    )


def add_set_model_arguments(group: argparse._ArgumentGroup) -> None:
    """The weights of FD_openl3 and KL_passt (docs/evaluation.md): OpenL3's content type, files given by path."""
    group.add_argument("--openl3-content-type", choices=OPENL3_CONTENT_TYPES,
                       help="OpenL3 model of fd_openl3: music (MusicCaps, Song Describer) or env (AudioCaps) "
                       "(default: music)")  # fmt: skip
    group.add_argument("--openl3-weights", type=Path, metavar="FILE", help="torchopenl3's mel256 512-d weights file of "
                       "that content type (default: torch hub's cache, $TORCH_HOME/hub/checkpoints, fetched once)")  # fmt: skip
    group.add_argument("--passt-weights", type=Path, metavar="FILE", help="hear21passt's PaSST-S weights file of kl_passt "
                       "(default: torch hub's cache, fetched once)")  # fmt: skip
