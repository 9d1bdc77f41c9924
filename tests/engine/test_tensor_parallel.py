"""Tensor parallel on the CPU: two gloo ranks give the logits one process gives (a dense LLaDA and an
MoE checkpoint), and a rank that dies or hangs ends the other one instead of leaving it waiting.
The served path (torchrun) is in tests/engine/serve/test_tensor_parallel_serve.py."""
from __future__ import annotations

import gc
import multiprocessing
import os
import re
import signal
import socket
import time
from pathlib import Path

import pytest
import torch

from engine import load_model
from engine.families.llama_net import LlamaShape
from engine.families.shard import check_split
from engine.lockstep import Leader, follow
from engine.model import DiffusionLM, ForwardCall
from engine.ranks import GroupBroken, join

pytestmark = pytest.mark.slow
RANKS = 2
WAIT = 120  # seconds a test waits for its ranks before it fails as a hang


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> dict[str, Path]:
    """The dense (LLaDA) and MoE (LLaDA-MoE: a dense layer, four experts, a shared one) tiny checkpoints."""
    from tests.parity import llada_moe_family, write_tiny
    from tests.tiny import save_tiny_llada

    root = tmp_path_factory.mktemp("tp")
    write_tiny(llada_moe_family(), root / "moe")
    return {"dense": save_tiny_llada(root / "dense"), "moe": root / "moe"}


def canvas(model: DiffusionLM) -> torch.Tensor:
    """(1, 16) ids with masked slots at 3..8, drawn from a seeded generator."""
    g = torch.Generator().manual_seed(5)
    ids = torch.randint(0, min(model.vocab_size, 200), (1, 16), generator=g)
    assert model.mask_id is not None
    ids[0, 3:9] = model.mask_id
    return ids


def forwards(model: DiffusionLM) -> list[torch.Tensor]:
    """The forwards a run makes: a whole canvas; three calls at once (packed on the dense net), one of
    them making a context cache; that cache read after a commit, alone and beside another call."""
    ids, slots = canvas(model).to(model.device), torch.arange(3, 9, device=model.device)
    first = model.forward_many([ForwardCall(ids, slots), ForwardCall(ids[:, :12], slots, cached=True),
                                ForwardCall(ids[:, 2:], slots - 2)])
    cache = first[1][1]
    later = ids[:, :12].clone()
    later[0, 4] = 7  # a committed slot
    again = model.forward_many([ForwardCall(later, slots, cached=True, cache=cache), ForwardCall(ids, slots)])
    alone = model.cached_logits(later, slots, cache)[0]
    return [t.cpu() for t in (model.logits(ids), first[0], first[1][0], first[2], again[0][0], again[1], alone)]


def rank_main(rank: int, port: int, role: str, folder: Path, out: Path, timeout: float, device: str) -> None:
    """One rank of a test's group (a spawned process): join, load and shard, then play `role`."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), LOCAL_RANK=str(rank),
                      WORLD_SIZE=str(RANKS))
    torch.set_num_threads(1)
    ranks = join(RANKS, torch.device(device), timeout)  # cuda: this rank's own GPU, NCCL
    model = load_model(folder, device="cpu")
    model.shard(rank, RANKS, ranks.device)
    try:
        if rank:
            caches: dict = {}
            follow(model, ranks, caches)
            out.with_suffix(".caches").write_text(str(len(caches)))  # left once rank 0's loop let go
            return
        broken: list[GroupBroken] = []
        leader = Leader(model, ranks, on_broken=broken.append)
        logits = forwards(leader)
        if role == "logits":
            torch.save(logits, out)
            gc.collect()  # the cache `forwards` made is garbage now: the stop message names it
            leader.close()
            return
        (out.parent / "ready").touch()   # the test now kills or stops rank 1
        while not (out.parent / "go").exists():
            time.sleep(0.05)
        outcome = []
        for _ in range(2):  # the first forward meets the broken group; the second fails at once
            try:
                leader.logits(canvas(leader))
            except GroupBroken as err:
                outcome.append(str(err))
        out.write_text("\n".join(outcome + [f"heard {len(broken)}"]))
    except GroupBroken as err:  # a follower whose rank 0 died
        out.write_text(str(err))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_ranks(role: str, folder: Path, out: Path, timeout: float = 60.0, device: str = "cpu") -> list:
    # Forked from a server process that imported the engine once: quick to start, and free of
    # whatever threads the test run has going (a plain fork would copy their locks).
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload([__name__, "torch._dynamo", "safetensors.torch",
                                    "transformers.models.auto.tokenization_auto"])
    port = free_port()
    ranks = [context.Process(target=rank_main, args=(rank, port, role, folder, out, timeout, device))
             for rank in range(RANKS)]
    for process in ranks:
        process.start()
    return ranks


def wait_for(condition, ranks) -> None:
    deadline = time.monotonic() + WAIT
    while not condition():
        if time.monotonic() > deadline:
            for process in ranks:
                process.kill()
            pytest.fail(f"the ranks hung ({WAIT} s)")
        time.sleep(0.1)


@pytest.mark.parametrize("family", ["dense", "moe"])
def test_tensor_parallel_logits_equal_one_process(folders, tmp_path, family):
    logits_match(folders[family], tmp_path, "cpu")


@pytest.mark.gpu
@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="NCCL tensor parallel needs two CUDA GPUs")
@pytest.mark.parametrize("family", ["dense", "moe"])
def test_tensor_parallel_logits_equal_one_process_on_nccl(folders, tmp_path, family):
    logits_match(folders[family], tmp_path, "cuda")


def logits_match(folder: Path, tmp_path: Path, device: str) -> None:
    """Two ranks' logits (gloo on the CPU, NCCL on two GPUs) against one process on the same device."""
    out = tmp_path / "logits.pt"
    ranks = start_ranks("logits", folder, out, device=device)
    wait_for(lambda: all(not p.is_alive() for p in ranks), ranks)
    assert [p.exitcode for p in ranks] == [0, 0]
    sharded = torch.load(out)
    torch.set_num_threads(1)
    whole = forwards(load_model(folder, device=device))
    assert len(sharded) == len(whole) == 7
    for got, want in zip(sharded, whole):
        assert got.dtype == torch.float32 and got.shape == want.shape
        # float32's own tolerance (torch's default for it): the MoE fixture's logits reach ~40, where
        # a sum split in two rounds differently by a few ulps (1.9e-5 seen)
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1.3e-6)
    assert not torch.allclose(whole[2], whole[4])  # the commit changed what the cached call sees
    assert out.with_suffix(".caches").read_text() == "0"  # rank 1 freed its part of the dropped cache


@pytest.mark.parametrize("fault", ["dies", "hangs"])
def test_tensor_parallel_a_follower_that_dies_or_hangs_stops_rank_0(folders, tmp_path, fault):
    out = tmp_path / "outcome.txt"
    ranks = start_ranks("fault", folders["dense"], out, timeout=5.0)
    wait_for((tmp_path / "ready").exists, ranks)
    os.kill(ranks[1].pid, signal.SIGKILL if fault == "dies" else signal.SIGSTOP)
    (tmp_path / "go").touch()
    try:
        wait_for(lambda: not ranks[0].is_alive(), ranks)
    finally:
        ranks[1].kill()
    lines = out.read_text().splitlines()
    assert len(lines) == 3 and lines[2] == "heard 1", lines  # both forwards refused, reported once
    assert all("tensor-parallel" in line for line in lines[:2])


def test_tensor_parallel_followers_stop_when_rank_0_dies(folders, tmp_path):
    out = tmp_path / "outcome.txt"
    ranks = start_ranks("fault", folders["dense"], out, timeout=5.0)
    wait_for((tmp_path / "ready").exists, ranks)
    ranks[0].kill()
    wait_for(lambda: not ranks[1].is_alive(), ranks)
    assert out.read_text().startswith("rank 1: the tensor-parallel group broke")


def test_tensor_parallel_refuses_a_split_the_heads_do_not_allow():
    shape = LlamaShape(vocab=50, width=32, layers=1, heads=4, kv_heads=2, ffn=64)
    check_split(shape, 2)
    for size in (3, 4):  # not dividing the heads; more ranks than key/value heads
        with pytest.raises(ValueError, match=rf"--tp {size} does not divide .*4 attention heads, 2 key/value "
                                             r"heads.*runs with --tp 1 or 2$"):
            check_split(shape, size)


@pytest.mark.parametrize("env, message", [
    ({}, "start it with `torchrun --nproc-per-node 2 -m engine serve --tp 2"),
    ({"WORLD_SIZE": "3"}, "--tp 2 does not match the 3 processes torchrun started"),
])
def test_tensor_parallel_refuses_a_world_size_that_is_not_tp(env, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        join(2, torch.device("cpu"), 60.0, env=env)
