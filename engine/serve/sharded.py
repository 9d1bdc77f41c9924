"""`torchrun --nproc-per-node N -m engine serve --tp N`: every rank loads the model and keeps its
shard; rank 0 serves HTTP and runs the scheduler, the others follow its forwards (engine/lockstep.py).

Every failure ends every rank with one line on rank 0: flags that do not match the processes
torchrun started, a model some rank cannot load or split (all ranks say whether they are ready
before anyone serves), and a rank that dies or hangs while serving (the collectives' timeout).
"""
from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, TextIO

from ..load import load_model, pick_device
from ..lockstep import Leader, follow
from ..model import DiffusionLM
from ..ranks import GroupBroken, Ranks, agree, join, leave

if TYPE_CHECKING:
    import uvicorn


def serve_sharded(args: argparse.Namespace, start: Callable[[DiffusionLM, float], uvicorn.Server],
                  stderr: TextIO) -> int:
    """0 after a clean stop, 1 when the group broke while serving, 2 for bad flags or a model that
    cannot be served this way. `start(model, t0)` builds rank 0's server (engine/serve/command.py)."""
    first = os.environ.get("RANK", "0") == "0"
    if args.compile != "off":
        return refuse("--compile does not combine with --tp yet: the sharded forwards run eagerly", first, stderr)
    if args.quantize:  # engine/families/shard.py slices float weights by rows and columns
        return refuse(f"--quantize {args.quantize} does not combine with --tp yet: the shards slice float weights",
                      first, stderr)
    try:
        ranks = join(args.tp, pick_device(args.device), args.tp_timeout)
    except ValueError as err:
        return refuse(str(err), first, stderr)
    try:
        t0 = time.perf_counter()
        model, problem = load_shard(args, ranks), None
    except (OSError, ValueError) as err:  # ModelNotFound, UnsupportedModel, --tp not splitting it, too large
        model, problem = None, str(err)
    try:
        problems = agree(ranks, problem)
        if problems or model is None:
            return refuse(one_line(problems), ranks.leader, stderr)
        if not ranks.leader:
            return run_follower(model, ranks)
        return run_leader(model, ranks, lambda leader: start(leader, t0), stderr)
    except GroupBroken as err:
        print(f"error: {err}", file=stderr, flush=True)
        return 1
    finally:
        leave()


def load_shard(args: argparse.Namespace, ranks: Ranks) -> DiffusionLM:
    """The whole model read into this machine's memory, then cut to this rank's part on its device.
    On a GPU the weights keep the checkpoint's dtype unless --dtype says otherwise."""
    from ..load import stored_dtype

    dtype = args.dtype or (stored_dtype(args.model) if ranks.device.type == "cuda" else None)
    model = load_model(args.model, device="cpu", dtype=dtype)
    model.shard(ranks.rank, ranks.size, ranks.device)
    return model


def run_follower(model: DiffusionLM, ranks: Ranks) -> int:
    try:
        follow(model, ranks)
    except KeyboardInterrupt:  # Ctrl-C reaches every rank; rank 0 says goodbye
        pass
    return 0


def run_leader(model: DiffusionLM, ranks: Ranks, start: Callable[[DiffusionLM], uvicorn.Server],
               stderr: TextIO) -> int:
    """Serve until interrupted (0) or until the group breaks (1: the server stops, and so does torchrun)."""
    server: uvicorn.Server | None = None
    broken: list[GroupBroken] = []

    def stop(err: GroupBroken) -> None:
        broken.append(err)
        print(f"error: {err}; every rank stops", file=stderr, flush=True)
        if server is not None:
            server.should_exit = True

    leader = Leader(model, ranks, on_broken=stop)
    print(f"tensor parallel over {ranks.size} ranks; each holds {model.memory}", file=stderr, flush=True)
    try:
        server = start(leader)
        if not broken:
            server.run()
    finally:
        leader.close()
    return 1 if broken else 0


def refuse(message: str, say: bool, stderr: TextIO) -> int:
    """Exit status 2; only rank 0 prints, so the line is not repeated once per rank."""
    if say:
        print(f"error: {message}", file=stderr, flush=True)
    return 2


def one_line(problems: list[str]) -> str:
    """Each rank's problem, or the one they share said once."""
    reasons = {p.split(": ", 1)[1] for p in problems}
    return reasons.pop() if len(reasons) == 1 else "; ".join(problems)
