"""Graceful stop: SIGTERM, SIGINT and SIGUSR1 become a request to stop after the current batch.

SLURM sends one of these before killing or preempting a job (``--signal``), torchrun forwards
SIGTERM to its workers, and a user presses Ctrl-C. Finishing the batch in flight means every file
being generated is written and recorded, so a rerun resumes exactly where this run stopped. A second
Ctrl-C stops at once (files are written atomically, so even that leaves nothing half-written).
"""

from __future__ import annotations

import signal
import threading
from types import FrameType, TracebackType

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1)


class GracefulStop:
    """Context manager that catches the stop signals for its duration and remembers the first one."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self.signal_name: str | None = None
        self._previous: dict[int, object] = {}

    @property
    def requested(self) -> bool:
        return self._event.is_set()

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self._event.is_set() and signum == signal.SIGINT:
            raise KeyboardInterrupt  # the user insists
        self.signal_name = signal.Signals(signum).name
        self._event.set()

    def reclaim(self) -> None:
        """Install the handlers again over any a library has put in their place since ``__enter__``.

        PyTorch Lightning's ``fit`` installs its own SIGTERM handler, which ends training at a point
        of its choosing without a checkpoint; fine-tuning calls this once training has started.
        """
        for sig in STOP_SIGNALS:
            signal.signal(sig, self._handle)

    def __enter__(self) -> GracefulStop:
        for sig in STOP_SIGNALS:
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
