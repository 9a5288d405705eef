"""Command-line value types: a flag's text -> its value, or an ``argparse.ArgumentTypeError`` saying what was expected.

Shared by ``generate.py``, ``finetune.py`` and ``run_gradio.py`` so that the same kind of value is
checked, and its error worded, the same way everywhere; with them ``--dist-timeout``, the one flag
every torchrun entry point takes. Standard library only (help and flag errors print before torch).
"""

from __future__ import annotations

import argparse


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {value}")
    return value


def seed_value(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}") from None
    if not 0 <= value < 2**63:
        raise argparse.ArgumentTypeError(f"expected an integer in [0, 2**63), got {value}")
    return value


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a finite number > 0, got {text}")
    return value


def finite_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text}")
    return value


DIST_TIMEOUT_MINUTES = 60.0


def add_dist_timeout_argument(parser: argparse.ArgumentParser | argparse._ArgumentGroup, longest_wait: str) -> None:
    """``--dist-timeout MINUTES``: how long any rank may wait in a collective call, joining included.

    Every torchrun entry point takes it, because torch's own default (10 minutes with nccl, 30 with
    gloo) ends a job whose ranks legitimately wait longer for each other. ``longest_wait`` says, in the
    help, when this entry point's ranks wait longest, i.e. what to size the timeout by.
    """
    parser.add_argument(
        "--dist-timeout",
        type=positive_float,
        default=DIST_TIMEOUT_MINUTES,
        metavar="MINUTES",
        help=f"minutes any rank may wait in a collective call under torchrun (default: %(default)s); {longest_wait}",
    )
