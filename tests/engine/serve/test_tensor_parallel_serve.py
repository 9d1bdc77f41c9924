"""`torchrun --nproc-per-node 2 -m engine serve --tp 2` as a user starts it (gloo, CPU): its edits are
byte for byte the single process's, and flags or models it cannot serve stop every rank with one line."""
import os
import signal
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from engine import load_model
from engine.serve.app import create_app
from tests.engine.serve.conftest import served
from tests.engine.serve.test_process import free_port, healthy
from tests.parity import llada_family, write_tiny
from tests.tiny import save_tiny_bert

pytestmark = pytest.mark.slow
TEXT = " ".join(f"t{7 * i % 200}" for i in range(40))  # the tiny checkpoint's word-level vocabulary
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def torchrun(ranks: int, *flags: str) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(ranks),
            "-m", "engine", "serve", "--device", "cpu", *flags]


@pytest.fixture(scope="module")
def llada(tmp_path_factory):
    """The parity tests' tiny LLaDA: unit-scale weights, so every block's sums decide the tokens."""
    folder = tmp_path_factory.mktemp("tp") / "llada"
    write_tiny(llada_family(), folder)
    return folder


@pytest.fixture(scope="module")
def sharded_url(llada):
    port = free_port()
    server = subprocess.Popen(torchrun(2, "--tp", "2", "--model", str(llada), "--port", str(port), "--max-batch", "4"),
                              stderr=subprocess.PIPE, text=True, env=ENV)
    yield healthy(server, port, 180)
    stop(server)


def workers(agent: subprocess.Popen) -> list[int]:
    """The ranks a torchrun agent started (each in a session of its own, so not its process group)."""
    return [int(pid) for pid in Path(f"/proc/{agent.pid}/task/{agent.pid}/children").read_text().split()]


def stop(agent: subprocess.Popen) -> None:
    """SIGTERM: torchrun stops its ranks before it exits (SIGKILL would leave them running)."""
    agent.terminate()
    try:
        agent.wait(30)
    except subprocess.TimeoutExpired:
        for pid in workers(agent):
            os.kill(pid, signal.SIGKILL)
        agent.kill()


def edits(url: str) -> list[dict]:
    """Three edits at once (the scheduler packs them into shared forwards), each with its own seed,
    spans and, for one, two candidates; the default preset, whose steps read a context cache."""
    bodies = [{"text": TEXT, "spans": [[20, 44]], "seed": 3},
              {"text": TEXT, "spans": [[20, 32, 6], [60, 80]], "seed": 4, "candidates": 2},
              {"text": TEXT, "spans": [[0, 30]], "seed": 5, "temperature": 0.7}]
    with ThreadPoolExecutor(3) as pool:
        responses = list(pool.map(lambda body: httpx.post(f"{url}/v1/edits", json=body, timeout=120), bodies))
    assert [r.status_code for r in responses] == [200] * 3, [r.text for r in responses]
    return [r.json() for r in responses]


def test_tensor_parallel_served_edits_are_the_single_process_ones_byte_for_byte(sharded_url, llada):
    with served(create_app(load_model(llada, device="cpu"), max_batch=4)) as single_url:
        want = edits(single_url)
    got = edits(sharded_url)
    for g, w in zip(got, want):
        assert g["text"].encode() == w["text"].encode()
        assert (g["spans"], g["forwards"]) == (w["spans"], w["forwards"])
    assert len({g["text"] for g in got}) == 3 and all(g["text"] != TEXT for g in got)


@pytest.mark.parametrize("ranks, flags, message", [
    (2, ["--tp", "3"], "error: --tp 3 does not match the 2 processes torchrun started"),
    (2, ["--tp", "2", "--model", "BERT"], "--tp splits the Llama-layout and MoE families"),
])
def test_tensor_parallel_flags_or_a_model_it_cannot_split_stop_every_rank_with_one_line(tmp_path, ranks, flags,
                                                                                         message):
    flags = [str(save_tiny_bert(tmp_path / "bert")) if f == "BERT" else f for f in flags]
    done = subprocess.run(torchrun(ranks, *flags, "--port", str(free_port())), capture_output=True, text=True,
                          env=ENV, timeout=300)
    assert done.returncode != 0
    said = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    assert len(said) == 1 and message in said[0], done.stderr[-2000:]


def test_tensor_parallel_a_machine_that_goes_away_stops_the_service_with_one_line(llada, tmp_path):
    """Two torchrun agents, as on two machines (no agent stops the other's rank): when the second
    machine's rank dies, rank 0 finds out at its next heartbeat and stops serving, exit status 1."""
    port, master = free_port(), free_port()
    logs = [tmp_path / "node0.log", tmp_path / "node1.log"]

    def node(rank: int) -> subprocess.Popen:
        command = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc-per-node", "1",
                   "--node-rank", str(rank), "--master-addr", "127.0.0.1", "--master-port", str(master),
                   "-m", "engine", "serve", "--device", "cpu", "--tp", "2", "--tp-timeout", "10",
                   "--model", str(llada), "--port", str(port)]
        return subprocess.Popen(command, stderr=logs[rank].open("w"), text=True, env=ENV, start_new_session=True)

    first, second = node(0), node(1)
    try:
        healthy(first, port, 180)
        for pid in workers(second) + [second.pid]:  # the machine goes: its rank, then its agent
            os.kill(pid, signal.SIGKILL)
        assert first.wait(60) != 0
    finally:
        for process in (first, second):
            stop(process)
    said = [line for line in logs[0].read_text().splitlines() if line.startswith("error: ")]
    assert len(said) == 1 and "tensor-parallel" in said[0] and said[0].endswith("every rank stops"), said
