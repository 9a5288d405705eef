"""Job-wide progress: every rank publishes its counts, rank 0 shows the total with a rich bar.

Ranks publish through small JSON files in a hidden folder of the output directory rather than
through collective calls: a collective would make fast ranks wait for slow ones after every batch,
and the output directory is shared by all ranks (and nodes) anyway. Each file is replaced
atomically, so a reader never sees a torn count.
"""

from __future__ import annotations

import json
import shutil
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from ..output.atomic import atomic_write_text
from ..tree.reserved import PROGRESS_DIRNAME


def progress_dir(output_dir: Path) -> Path:
    return output_dir / PROGRESS_DIRNAME


class RankProgress:
    """One rank's published counters."""

    def __init__(self, output_dir: Path, rank: int, total: int) -> None:
        self.path = progress_dir(output_dir) / f"rank-{rank}.json"
        self.total = total
        self.done = 0
        self.audio_seconds = 0.0
        self.finished = False
        self._started = time.monotonic()
        self._publish()

    def advance(self, items: int, audio_seconds: float) -> None:
        self.done += items
        self.audio_seconds += audio_seconds
        self._publish()

    def finish(self) -> None:
        """Say this rank will publish nothing more: all its items are done, or it was stopped."""
        self.finished = True
        self._publish()

    def _publish(self) -> None:
        record = {"done": self.done, "total": self.total, "audio_seconds": self.audio_seconds,
                  "finished": self.finished, "seconds": time.monotonic() - self._started}  # fmt: skip
        atomic_write_text(self.path, json.dumps(record))


@dataclass(frozen=True)
class JobTotals:
    done: int  # items processed so far, over all ranks
    audio_seconds: float
    finished_ranks: int
    rank_seconds: list[float]  # each rank's working time so far, by rank


def job_totals(output_dir: Path) -> JobTotals:
    """Counters summed over every rank that has published."""
    done, seconds, finished, rank_seconds = 0, 0.0, 0, {}
    for path in progress_dir(output_dir).glob("rank-*.json"):
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):  # replaced between glob and read: the next poll sees it
            continue
        done += int(record["done"])
        seconds += float(record["audio_seconds"])
        finished += bool(record["finished"])
        rank_seconds[int(path.stem.removeprefix("rank-"))] = float(record["seconds"])
    return JobTotals(done, seconds, finished, [rank_seconds[r] for r in sorted(rank_seconds)])


def remove_progress(output_dir: Path) -> None:
    shutil.rmtree(progress_dir(output_dir), ignore_errors=True)


class ProgressDisplay:
    """Rank 0's view of the whole job, refreshed from the published counters in a thread.

    On a terminal it is a live bar with ETA; in a log file (SLURM, CI) it prints a plain line every
    ``log_every`` seconds instead, because a live bar would only show up at the very end.
    """

    def __init__(self, output_dir: Path, total: int, console: Console, log_every: float = 10.0) -> None:
        self.output_dir = output_dir
        self.total = total
        self.console = console
        self.log_every = log_every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="progress", daemon=True)
        self._progress = Progress(
            TextColumn("[bold]generating"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("items"),
            TextColumn("{task.fields[audio]:.1f} s audio"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=console,
            transient=False,
        )
        self._task = self._progress.add_task("generate", total=total, audio=0.0)

    def __enter__(self) -> ProgressDisplay:
        if self.console.is_terminal:
            self._progress.start()
        self._thread.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop.set()
        self._thread.join()
        self._refresh(log=not self.console.is_terminal, final=True)
        self._progress.stop()

    def wait_for_ranks(self, world_size: int) -> None:
        """Block until every rank has said it is finished (done, or stopped by a signal).

        Polling the counters instead of a collective barrier means no rank ever sits in a collective
        for hours (process-group timeouts) while an unevenly loaded rank finishes; if a rank dies,
        torchrun stops the others.
        """
        while job_totals(self.output_dir).finished_ranks < world_size:
            time.sleep(0.5)

    def _refresh(self, log: bool, final: bool = False) -> None:
        """Update the bar; with ``log``, print a plain line (``final``: the job's last, with no ETA left to
        give: a stopped job's remaining items wait for the rerun)."""
        totals = job_totals(self.output_dir)
        done, seconds = totals.done, totals.audio_seconds
        self._progress.update(self._task, completed=done, audio=seconds)
        if log:
            task = self._progress.tasks[0]
            known = task.time_remaining is not None and done and not final
            eta = f", ETA {task.time_remaining:.0f} s" if known else ""
            self.console.print(f"progress: {done}/{self.total} items, {seconds:.1f} s audio{eta}", highlight=False)

    def _run(self) -> None:
        last_log = time.monotonic()
        while not self._stop.wait(0.5):
            log = not self.console.is_terminal and time.monotonic() - last_log >= self.log_every
            if log:
                last_log = time.monotonic()
            self._refresh(log)
