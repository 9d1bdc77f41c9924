"""What a session holds: a run's steps are bounded, and a run is let go when it is settled or its tab closes."""
import time

import pytest
import torch

from editor.history import History
from engine import SamplerSettings, Span, TextCodec, build_canvas, infill
from page import actions
from page.actions import Run
from page.demo import build_demo, launch
from tests.page.helpers import args
from tests.tiny import ScriptedModel, byte_bpe_tokenizer

TEXT = "The quick brown fox jumps over the lazy dog."


@pytest.fixture(scope="module")
def model():
    codec = TextCodec.from_tokenizer(byte_bpe_tokenizer(bos=True))
    target = torch.randint(10, 300, (1024,), generator=torch.Generator().manual_seed(0))
    return ScriptedModel(codec, target, torch.linspace(0.3, 0.9, 1024))


def record_run(model, length: int, candidates: int = 2) -> Run:
    canvas = build_canvas(model.codec, TEXT, [Span(4, 15, length=length)], model.max_length)
    run = Run(canvas, TEXT, (4, 15), "text")
    for step in infill(model, canvas, SamplerSettings(strategy="low_confidence", candidates=candidates)):
        run.record(step)
    return run


def test_a_long_run_keeps_a_bounded_spread_of_steps_and_its_result(model, monkeypatch):
    monkeypatch.setattr(actions, "MAX_STEPS_KEPT", 16)
    run = record_run(model, 100)  # one forward per token: 100 steps
    kept = [s.index for s in run.steps]
    assert 8 <= len(kept) <= 16 and kept[0] == 0 and kept[-1] == 99 and kept == sorted(kept)
    assert all(s.texts == () for s in run.steps[:-1]) and len(run.last.texts) == 2
    assert run.result(1).startswith("The ") and run.result(1).endswith(" jumps over the lazy dog.")


def test_a_run_stays_within_its_byte_budget(model, monkeypatch):
    monkeypatch.setattr(actions, "MAX_RUN_BYTES", 512 * 1024)  # about 16 steps of this run
    run = record_run(model, 100, candidates=4)
    assert sum(s.nbytes for s in run.steps) <= 512 * 1024 and len(run.steps) >= 4
    assert run.last.done and run.steps[0].index == 0


def session_runs(demo, session_hash: str) -> list:
    session = demo.state_holder.session_data.get(session_hash)
    return [] if session is None else [v for v in session.state_data.values() if isinstance(v, Run)]


def wait_for(condition, seconds: float = 10.0) -> bool:
    deadline = time.time() + seconds
    while time.time() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return condition()


def test_closing_a_tab_frees_its_run_and_settling_a_run_frees_it(model, monkeypatch):
    from gradio_client import Client
    monkeypatch.setenv("GRADIO_HEARTBEAT_INTERVAL", "0.2")  # how soon the page notices a closed tab
    demo = build_demo(model, History("sqlite://"))
    launch(demo, prevent_thread_lock=True, server_port=None, quiet=True)
    try:
        rejecting, closing = Client(demo.local_url, verbose=False), Client(demo.local_url, verbose=False)
        for client in (rejecting, closing):
            client.predict(*args(TEXT, 4, 15, candidates=2), api_name="/regenerate_selection")
            assert len(session_runs(demo, client.session_hash)) == 1
        rejecting.predict(api_name="/reject")
        assert session_runs(demo, rejecting.session_hash) == []
        closing.close()
        assert wait_for(lambda: session_runs(demo, closing.session_hash) == [])
        rejecting.close()
    finally:
        demo.close()
