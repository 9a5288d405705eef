"""The scoring flags ``generate.py`` shares (torch-free, so help and flag errors print at once)."""

from __future__ import annotations

import argparse

from ..model.tiny import CLAP_REPO_ID

DEFAULT_CLAP_MODEL = CLAP_REPO_ID  # why this checkpoint: scoring/clap.py; the offline tiny build fakes this repo
SCORES = ("clap",)  # a value per item (generate.py --score) or file (finetune.py score)
DISTANCES = ("fd_clap",)  # a set's distance to a reference set (finetune.py score, evaluate --reference)
METRICS = SCORES + DISTANCES  # finetune.py score --metrics: the names its JSON uses


def add_score_arguments(parser: argparse.ArgumentParser) -> None:
    """``--score`` and ``--clap-model`` (documented in docs/datasets.md)."""
    group = parser.add_argument_group("scores (docs/datasets.md)")
    group.add_argument(
        "--score",
        choices=SCORES,
        help="score every written item: clap adds clap_score (prompt-audio cosine similarity in [-1, 1]) to its "
        "manifest record; items an earlier run wrote without one are scored from their files (default: no scores)",
    )
    group.add_argument(
        "--clap-model",
        default=DEFAULT_CLAP_MODEL,
        metavar="ID",
        help="CLAP checkpoint of --score clap: a hub id or a local folder (default: %(default)s)",
    )
