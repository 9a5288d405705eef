"""Job-wide progress: counters published by each rank add up on rank 0."""

from __future__ import annotations

import time

from rich.console import Console

from stable_audio_tools_ext.run.progress import (
    ProgressDisplay,
    RankProgress,
    job_totals,
    progress_dir,
    remove_progress,
)
from stable_audio_tools_ext.run.views import rank_times


def test_counters_of_all_ranks_add_up_and_are_removed(tmp_path) -> None:
    ranks = [RankProgress(tmp_path, rank, total=3) for rank in range(3)]
    totals = job_totals(tmp_path)
    assert (totals.done, totals.audio_seconds, totals.finished_ranks, len(totals.rank_seconds)) == (0, 0.0, 0, 3)
    ranks[0].advance(2, 20.0)
    ranks[2].advance(1, 5.5)
    ranks[2].finish()
    totals = job_totals(tmp_path)
    assert (totals.done, totals.audio_seconds, totals.finished_ranks) == (3, 25.5, 1)
    assert all(seconds >= 0 for seconds in totals.rank_seconds)
    assert not list(progress_dir(tmp_path).glob("*.partial"))  # every publish is an atomic replace
    remove_progress(tmp_path)
    assert not progress_dir(tmp_path).exists()


def test_display_waits_for_every_rank_and_logs_plain_lines_off_terminal(tmp_path) -> None:
    console = Console(record=True, force_terminal=False, width=100)
    first, second = RankProgress(tmp_path, 0, total=2), RankProgress(tmp_path, 1, total=1)
    with ProgressDisplay(tmp_path, total=3, console=console, log_every=0.0) as display:
        first.advance(2, 8.0)
        second.advance(1, 4.0)
        first.finish()
        second.finish()  # a rank stopped by a signal also finishes, with fewer items done
        display.wait_for_ranks(2)
    text = console.export_text()
    assert "progress: 3/3 items, 12.0 s audio" in text


def test_the_last_line_of_a_stopped_job_gives_no_eta(tmp_path) -> None:
    """The job is over when the display closes: what is left waits for the rerun, not for an ETA."""
    console = Console(record=True, force_terminal=False, width=100)
    rank = RankProgress(tmp_path, 0, total=4)
    with ProgressDisplay(tmp_path, total=4, console=console, log_every=0.0):
        rank.advance(1, 2.0)
        time.sleep(0.6)  # one refresh of the display's thread: a rate to estimate an ETA from
        rank.advance(1, 2.0)
        rank.finish()  # stopped by a signal with 2 of 4 items done
    lines = [line for line in console.export_text().splitlines() if line.startswith("progress:")]
    assert lines[-1] == "progress: 2/4 items, 4.0 s audio"


def test_rank_wall_times_only_when_something_was_generated() -> None:
    """A rerun with nothing left to do has no per-rank times worth comparing (it said "0.0 s, 0.0 s (imbalance 51.5%)")."""
    assert rank_times([0.0, 0.0], done=0) == ""
    assert rank_times([8.6], done=4) == ""  # one rank: nothing to compare
    assert rank_times([8.0, 12.0], done=4) == "rank wall times: 8.0 s, 12.0 s (imbalance 20.0%)"
