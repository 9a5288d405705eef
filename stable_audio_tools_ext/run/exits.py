"""``generate.py``'s exit codes, and how an input problem is printed (on any rank, of any node).

A job's exit code is decided once, by rank 0, from the manifest; other ranks end non-zero only when
the job cannot go on (bad input on their node, a failed write), because torchrun stops every rank
of the job as soon as one exits non-zero.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
from typing import NoReturn

from ..tree.conditions import ConditionTreeError, Problem

EXIT_OK = 0
EXIT_JOB_FAILED = 1  # the job itself failed: ranks did not all join (--dist-timeout), a crash
EXIT_USAGE = 2  # bad input: nothing was generated or written
EXIT_INTERRUPTED = 3  # stopped by a signal after finishing the batch in flight; rerun to resume
EXIT_NONFINITE = 4  # some items came out NaN/Inf and were not written (see the manifest's status)
EXIT_WRITE_FAILED = 5  # an output file could not be written (disk full, path not creatable, ...)


def launched_as() -> tuple[int, int]:
    """This process's rank and the world size as torchrun set them (readable before any process group)."""
    return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))


def where(rank: int, world_size: int) -> str:
    """``rank 3 on node17: `` in a multi-process job (problems can differ between nodes), else nothing."""
    return f"rank {rank} on {socket.gethostname()}: " if world_size > 1 else ""


def print_problems(problems: list[Problem], source: str, errors: list[str], prefix: str = "") -> int:
    """Print every input problem (YAML ones sorted by line) to stderr and return ``EXIT_USAGE``."""
    if problems:
        print(f"{prefix}error: {ConditionTreeError(problems, source).report()}", file=sys.stderr)
    for message in errors:
        print(f"{prefix}error: {message}", file=sys.stderr)
    return EXIT_USAGE


class ConciseArgumentParser(argparse.ArgumentParser):
    """A flag error is one line and a pointer to ``-h``, like every other exit-2 error, not the usage block."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"error: {message}\n(run `{self.prog} -h` for every flag)\n")
