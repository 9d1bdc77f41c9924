"""`torchrun --nproc-per-node 2 -m engine serve --tp 2` as a user starts it (gloo, CPU): its edits are
byte for byte the single process's, and flags or models it cannot serve stop every rank with one line."""
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from engine import load_model
from engine.serve.app import create_app
from tests.parity import llada_family, write_tiny
from tests.serve.conftest import served
from tests.serve.test_process import free_port, healthy
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
    server.terminate()  # torchrun stops both ranks
    try:
        server.wait(30)
    finally:
        server.kill()


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
