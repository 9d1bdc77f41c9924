"""The tensor-parallel process group: one process per shard, started by torchrun, joined here.

torchrun sets RANK, LOCAL_RANK and WORLD_SIZE (and the rendezvous) for each process; `join` checks
them against `--tp`, picks the rank's device (its own GPU, or the CPU with the gloo backend) and
joins the group with a timeout on every collective, so a rank that hangs or dies ends the others
instead of leaving them waiting. Collectives that run inside a forward go through `reduce_sum`,
which turns a failure into `GroupBroken`: the one error that means the ranks can no longer agree.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist


class GroupBroken(RuntimeError):
    """A collective failed: a rank died, hung past the timeout or lost its connection."""


@dataclass(frozen=True)
class Ranks:
    """This process's place in the tensor-parallel group."""

    rank: int            # 0 serves HTTP and runs the scheduler; the others follow its forwards
    size: int            # processes (= shards) in the group
    device: torch.device
    timeout: float       # seconds any collective may wait for the slowest rank

    @property
    def leader(self) -> bool:
        return self.rank == 0


def join(size: int, device: torch.device, timeout: float, env: dict[str, str] | None = None) -> Ranks:
    """Join torchrun's group as one of `size` shards on `device` (cuda: this process's own GPU); a
    ValueError in one line when the processes torchrun started do not match `size` or the GPUs
    (checked before any connection is made)."""
    env = dict(os.environ) if env is None else env
    if size < 1 or not 0 < timeout < 86400:
        raise ValueError(f"--tp must be >= 1 and --tp-timeout in (0, 86400) seconds, got {size} and {timeout:g}")
    if "WORLD_SIZE" not in env:
        raise ValueError(f"--tp {size} runs one process per shard: start it with `torchrun --nproc-per-node "
                         f"{size} -m engine serve --tp {size} ...`")
    world = int(env["WORLD_SIZE"])
    if world != size:
        raise ValueError(f"--tp {size} does not match the {world} processes torchrun started (WORLD_SIZE): "
                         f"--nproc-per-node x --nnodes must equal --tp")
    local = int(env.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        if local >= torch.cuda.device_count():
            raise ValueError(f"torchrun started more processes on this machine than its "
                             f"{torch.cuda.device_count()} GPU(s): --nproc-per-node must not exceed them")
        device = torch.device("cuda", local)  # each process on a machine drives its own GPU
        torch.cuda.set_device(device)
    backend = "nccl" if device.type == "cuda" else "gloo"
    dist.init_process_group(backend, timeout=timedelta(seconds=timeout),
                            device_id=device if device.type == "cuda" else None)
    return Ranks(rank=dist.get_rank(), size=size, device=device, timeout=timeout)


def reduce_sum(t: torch.Tensor) -> None:
    """Sum `t` over the ranks, in place (the partial outputs of a sharded layer)."""
    try:
        dist.all_reduce(t)
    except RuntimeError as err:
        raise GroupBroken(f"a tensor-parallel all-reduce failed: {first_line(err)}") from err


def agree(ranks: Ranks, error: str | None) -> list[str]:
    """Every rank's `error` (None: it is ready), gathered: each failing rank's as 'rank N: error'.
    So a model folder missing on one machine stops all of them, with the reason, at start."""
    everyone: list[str | None] = [None] * ranks.size
    try:
        dist.all_gather_object(everyone, error)
    except RuntimeError as err:
        raise GroupBroken(f"the ranks could not confirm the model loaded: {first_line(err)}") from err
    return [f"rank {rank}: {e}" for rank, e in enumerate(everyone) if e is not None]


def broadcast(message: object, ranks: Ranks) -> object:
    """Rank 0's `message`, on every rank (others pass None)."""
    box = [message]
    try:
        dist.broadcast_object_list(box, src=0, device=ranks.device)
    except RuntimeError as err:
        raise GroupBroken(f"rank {ranks.rank}: the tensor-parallel group broke: {first_line(err)}") from err
    return box[0]


def leave() -> None:
    """Leave the group (collectives are not waited for: a broken group would hang here)."""
    if dist.is_initialized():
        dist.destroy_process_group()


def first_line(err: BaseException) -> str:
    """What a backend's error says happened: its first sentence, less gloo's source-file prefix."""
    text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    text = text.split("] ", 1)[-1] if text.startswith("[") else text
    return text.split(". ", 1)[0]
