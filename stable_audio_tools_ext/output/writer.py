"""A background thread that writes finished batches while the next batch is being sampled.

Converting, measuring and writing a batch of files (and fsyncing the manifest) is CPU and disk work
that would otherwise leave the accelerator idle between batches. The queue is bounded, so when the
disk is slower than the sampler, sampling waits instead of piling generated audio up in memory.
An error on the writer thread (a full disk, a path that cannot be created) is raised in the caller
at its next hand-off or at the end, so a failed write can never pass silently.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from types import TracebackType
from typing import Generic, TypeVar

T = TypeVar("T")

DEFAULT_DEPTH = 2  # generated batches that may wait for the writer


class WriteError(RuntimeError):
    """Writing generated audio failed; the message names what and why."""


class BackgroundWriter(Generic[T]):
    """Runs ``handle(job)`` for every submitted job, in order, on one thread."""

    def __init__(self, handle: Callable[[T], None], depth: int = DEFAULT_DEPTH) -> None:
        self._handle = handle
        self._jobs: queue.Queue[tuple[T] | None] = queue.Queue(maxsize=depth)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="audio-writer", daemon=True)

    def __enter__(self) -> BackgroundWriter[T]:
        self._thread.start()
        return self

    def submit(self, job: T) -> None:
        """Queue ``job``; blocks while ``depth`` jobs are waiting. Raises an earlier write failure."""
        self._raise_if_failed()
        self._jobs.put((job,))

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        """Write everything already submitted - also when the caller stops early - then report failures."""
        self._jobs.put(None)
        self._thread.join()
        if exc_type is None:
            self._raise_if_failed()

    def _raise_if_failed(self) -> None:
        if self._error is not None:
            raise WriteError(f"writing generated audio failed: {self._error}") from self._error

    def _run(self) -> None:
        while (entry := self._jobs.get()) is not None:
            if self._error is None:  # after a failure, drain the queue without writing more
                try:
                    self._handle(entry[0])
                except BaseException as exc:  # noqa: BLE001 - handed to the caller
                    self._error = exc
