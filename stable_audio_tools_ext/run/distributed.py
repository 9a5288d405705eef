"""torchrun environment -> process group, this rank's device, and this rank's share of the work.

Plain ``python generate.py`` (no torchrun variables) runs as a world of one without a process group.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import TypeVar

import torch
import torch.distributed as dist
from torch.utils.data import DistributedSampler

from .exits import launched_as, where

T = TypeVar("T")


@dataclass(frozen=True)
class DistContext:
    """Who this process is in the job and which device it owns."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    # Whether init_distributed created the process group: only then does shutdown destroy it. A caller
    # that runs several jobs in one process (finetune.py evaluate) creates the group once and keeps it,
    # because torch cannot reliably join a new one there (the rendezvous keys of the old one are reused).
    owns_group: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    return int(value) if value not in (None, "") else default


def init_distributed(device: str = "auto", timeout: timedelta | None = None) -> DistContext:
    """Join the torchrun job if there is one: nccl on CUDA, gloo on CPU; pick ``cuda:LOCAL_RANK`` or CPU.

    ``device`` may force ``cpu`` (useful on a GPU node for a quick check) or ``cuda``. ``timeout``
    bounds every collective call, joining included (torch's default: 10 min for nccl, 30 for gloo).
    """
    rank, world_size = _env_int("RANK", 0), _env_int("WORLD_SIZE", 1)
    local_rank = _env_int("LOCAL_RANK", 0)
    use_cuda = torch.cuda.is_available() if device == "auto" else device == "cuda"
    if use_cuda and not torch.cuda.is_available():
        raise RuntimeError("--device cuda was requested but CUDA is not available on this node")
    if use_cuda:
        torch.cuda.set_device(local_rank)
        torch_device = torch.device("cuda", local_rank)
    else:
        torch_device = torch.device("cpu")
    owns_group = world_size > 1 and not dist.is_initialized()
    if owns_group:
        dist.init_process_group(
            backend="nccl" if use_cuda else "gloo", device_id=torch_device if use_cuda else None, timeout=timeout
        )
    return DistContext(rank=rank, world_size=world_size, local_rank=local_rank, device=torch_device, owns_group=owns_group)


def join_job(device: str, minutes: float) -> DistContext | None:
    """``init_distributed`` with ``--dist-timeout`` ``minutes``; None when the ranks did not all join in time.

    A node that never started or a firewall between nodes would otherwise end the job with torch's
    traceback (or, without a timeout, after 10 to 30 minutes of silence); instead this rank says, in
    one line naming it, what it waited for. The caller exits with ``EXIT_JOB_FAILED``.
    """
    try:
        return init_distributed(device, timeout=timedelta(minutes=minutes))
    except dist.DistError as exc:
        rank, world_size = launched_as()
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        print(f"{where(rank, world_size)}error: the {world_size} ranks did not all join within "
              f"--dist-timeout {minutes:g} min ({first_line})", file=sys.stderr)  # fmt: skip
        return None


def barrier(ctx: DistContext) -> None:
    """Wait for every rank (no-op in a world of one)."""
    if ctx.world_size > 1:
        dist.barrier()


def broadcast_from_main(ctx: DistContext, value: T) -> T:
    """Rank 0's ``value`` on every rank (picklable objects; a no-op in a world of one).

    Used for decisions that must be identical everywhere but are made by reading the output
    directory, which other ranks must not do at the same moment rank 0 starts writing to it.
    """
    if ctx.world_size == 1:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def all_gather(ctx: DistContext, value: T) -> list[T]:
    """Every rank's ``value``, by rank, on every rank (picklable objects; ``[value]`` in a world of one)."""
    if ctx.world_size == 1:
        return [value]
    gathered: list[T | None] = [None] * ctx.world_size
    dist.all_gather_object(gathered, value)
    return gathered  # type: ignore[return-value]


def shutdown(ctx: DistContext) -> None:
    """Leave the process group this context created, so torchrun sees a normal exit (a caller's group stays)."""
    if ctx.owns_group and dist.is_initialized():
        dist.destroy_process_group()


def shard(items: Sequence[T], world_size: int, rank: int) -> list[T]:
    """This rank's items, split by ``DistributedSampler`` (no shuffle) with its padding removed.

    ``DistributedSampler`` makes every rank's share equally long by repeating items from the start of
    the list; those repeats sit at padded positions >= ``len(items)``. Generating them would write the
    same file twice (and race on it), so they are dropped: every item goes to exactly one rank.
    """
    if not items:
        return []
    sampler = DistributedSampler(range(len(items)), num_replicas=world_size, rank=rank, shuffle=False, drop_last=False)
    positions = range(rank, sampler.total_size, world_size)  # the sampler's own strided subsampling
    return [items[index] for position, index in zip(positions, sampler) if position < len(items)]
