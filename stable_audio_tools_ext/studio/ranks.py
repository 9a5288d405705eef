"""Who generates a studio request: this process alone, or every rank of a torchrun job.

Under ``torchrun --nproc_per_node N run_gradio.py`` rank 0 serves the page and the other ranks hold
the model on their own device and wait. Each request (the variations of a Generate click, the items
of a Batch run) is broadcast to all ranks, and every rank generates its share with the sharding of
``generate.py`` (``run.inprocess.generate_share``): the same seeds, the same files, N times the
throughput. Rank 0 follows the job-wide progress counters, gathers each rank's outcome and folds
the manifest parts.

Failures:

- a rank that *raises* (out of memory, a file it cannot write) reports its error to rank 0, which
  fails the request with that message in the page; every rank stays in the job for the next request;
- a rank that *dies* breaks the process group: the collective call on rank 0 raises within seconds,
  the request fails saying so, and torchrun - which ends the whole job when a worker exits abnormally -
  stops every other rank. Nothing waits for a peer that is gone.

While the page is idle, rank 0 broadcasts a ping every ``PING_SECONDS``, so that the other ranks,
which wait in a collective call, never reach the process group's timeout (30 min for gloo) between
two requests. One request at a time (the app's concurrency limit), so the collectives of two
requests never interleave; a lock also keeps the pings out of a request's sequence.
"""

from __future__ import annotations

import contextvars
import signal
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from ..model.loading import LoadedModel
from ..output.manifest import Record, fold_parts
from ..run import inprocess
from ..run.distributed import DistContext, all_gather, broadcast_from_main
from ..run.progress import job_totals, remove_progress
from ..tree.plan import WorkItem

PING_SECONDS = 30.0
FOLLOW_SECONDS = 0.5  # how often rank 0 reads the ranks' progress counters during a request
_PING, _STOP = "ping", "stop"

Advance = Callable[[int, int], None]  # (items done over all ranks, items in the request)


class Runner(Protocol):
    """What the studio's handlers generate with."""

    def generate(self, items: Sequence[WorkItem], output_dir: Path, batch_size: int, on_advance: Advance) -> dict[str, Record]:
        """Write every item below ``output_dir``; the folded manifest records by path."""
        ...


class RankFailure(RuntimeError):
    """A request failed on one or more ranks; the message names them and what went wrong."""


@dataclass(frozen=True)
class LocalRunner:
    """A world of one: this process generates everything (plain ``python run_gradio.py``)."""

    loaded: LoadedModel

    def generate(self, items: Sequence[WorkItem], output_dir: Path, batch_size: int, on_advance: Advance) -> dict[str, Record]:
        return inprocess.generate_items(self.loaded, items, output_dir, batch_size, on_advance)


@dataclass(frozen=True)
class _Request:
    items: list[WorkItem]
    output_dir: Path
    batch_size: int


def _share(loaded: LoadedModel, request: _Request, ctx: DistContext) -> str | None:
    """Generate this rank's share; ``None`` when it worked, else the error in words (sent to rank 0).

    Any exception is caught: the rank reports it and stays in the job, so one bad request (a CUDA
    out-of-memory on one device, say) does not take the studio down.
    """
    try:
        inprocess.generate_share(loaded, request.items, request.output_dir, request.batch_size, ctx.rank, ctx.world_size)
    except Exception as exc:  # noqa: BLE001 - every failure is reported, with its type, to the page
        return f"{type(exc).__name__}: {exc}"
    return None


class RankPool:
    """Rank 0's side of a torchrun studio: sends each request to every rank and gathers the results."""

    def __init__(self, ctx: DistContext, loaded: LoadedModel, ping_seconds: float = PING_SECONDS) -> None:
        self._ctx, self._loaded = ctx, loaded
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._broken: str | None = None  # why the process group cannot be used any more
        self._pinger = threading.Thread(target=self._ping, args=(ping_seconds,), name="studio-ping", daemon=True)
        self._pinger.start()

    def generate(self, items: Sequence[WorkItem], output_dir: Path, batch_size: int, on_advance: Advance) -> dict[str, Record]:
        request = _Request(list(items), output_dir, batch_size)
        with self._lock:
            if self._broken is not None:
                raise RankFailure(self._broken)
            stop_following = threading.Event()
            follower = threading.Thread(  # in this request's context, so Gradio's progress bar is reachable
                target=contextvars.copy_context().run, args=(_follow, output_dir, len(items), on_advance, stop_following),
                name="studio-progress", daemon=True,
            )  # fmt: skip
            try:
                broadcast_from_main(self._ctx, request)
                follower.start()
                outcomes = all_gather(self._ctx, _share(self._loaded, request, self._ctx))
            except RuntimeError as exc:  # a collective failed: a rank has left the job (torch's DistBackendError)
                self._broken = _left_the_job(exc)
                raise RankFailure(self._broken) from None
            finally:
                stop_following.set()
                if follower.is_alive():
                    follower.join()
        records = fold_parts(output_dir)
        remove_progress(output_dir)
        failures = [f"rank {rank}: {outcome}" for rank, outcome in enumerate(outcomes) if outcome is not None]
        if failures:
            raise RankFailure(f"generation failed on {len(failures)} of {self._ctx.world_size} ranks - " + "; ".join(failures))
        on_advance(len(items), len(items))
        return records

    def close(self) -> None:
        """Tell the other ranks to exit (they return from ``serve_requests``); no more requests after this."""
        self._closed.set()
        with self._lock:
            if self._broken is None:
                try:
                    broadcast_from_main(self._ctx, _STOP)
                except RuntimeError:  # the others are gone already (torchrun stopped them on Ctrl-C): done
                    pass

    def _ping(self, seconds: float) -> None:
        while not self._closed.wait(seconds):
            with self._lock:
                if self._closed.is_set() or self._broken is not None:
                    return
                try:
                    broadcast_from_main(self._ctx, _PING)
                except RuntimeError as exc:
                    self._broken = _left_the_job(exc)
                    return


def _left_the_job(exc: RuntimeError) -> str:
    """Why the pool cannot be used any more, once a collective call has failed."""
    return f"a rank left the studio's torchrun job ({exc}); torchrun stops the job: restart it"


def _follow(output_dir: Path, total: int, on_advance: Advance, stop: threading.Event) -> None:
    """Report the items done over all ranks (their published counters) until ``stop`` is set."""
    while not stop.wait(FOLLOW_SECONDS):
        on_advance(min(job_totals(output_dir).done, total), total)


def serve_requests(ctx: DistContext, loaded: LoadedModel) -> None:
    """Ranks other than 0: generate each request's share until rank 0 says stop.

    Ctrl-C reaches every process of the terminal's job; here it is ignored, because rank 0 ends the
    job (its stop message, or its exit, which torchrun answers by stopping every rank).
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    while True:
        message = broadcast_from_main(ctx, None)
        if message == _STOP:
            return
        if isinstance(message, _Request):
            all_gather(ctx, _share(loaded, message, ctx))
