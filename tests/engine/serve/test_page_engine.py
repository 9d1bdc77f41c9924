"""The page as the service's client: `app.py --engine URL` renders the same steps and text as the
engine in process, and the page keeps only the tokenizer."""
import re
import time

import httpx
import pytest
import torch

from editor.history import History
from engine import Span, build_canvas
from engine.serve import wire
from engine.serve.app import create_app
from page.demo import build_demo, launch
from page.engine_client import EngineError, HttpEngine, InProcessEngine
from tests.engine.serve.conftest import TEXT, Paced, served, wait_until
from tests.page.helpers import QUALITY, args
from tests.tiny import TextCodec, wordpiece_tokenizer

SAMPLES = [TEXT, "Héllo wörld, naïve café — 東京 🙂", "  indented\n\ttabs  ", ""]


@pytest.mark.parametrize("which", ["tiny-dream", "wordpiece"])
def test_the_tokenizer_travels_whole(model, which):
    codec = model.codec if which == "tiny-dream" else TextCodec.from_tokenizer(wordpiece_tokenizer())
    copy = wire.codec_from_json(wire.codec_json(codec))
    for text in SAMPLES:
        ids = codec.encode(text)
        assert copy.encode(text) == ids and copy.decode(ids) == codec.decode(ids)
        assert copy.pieces(ids) == codec.pieces(ids) and copy.char_edges(text, ids) == codec.char_edges(text, ids)
    assert (copy.frame_prefix, copy.frame_suffix, copy.banned_ids, copy.mask_id, copy.eos_id) == \
        (codec.frame_prefix, codec.frame_suffix, codec.banned_ids, codec.mask_id, codec.eos_id)


def test_http_steps_are_the_in_process_steps(model, url):
    remote = HttpEngine(url)
    settings = QUALITY.replace(seed=7, temperature=0.9, candidates=2)
    spans = [Span(19, 31), Span(42, 51, 5)]
    here = list(InProcessEngine(model).steps(build_canvas(model.codec, TEXT, spans, model.max_length), settings))
    canvas = build_canvas(remote.model.codec, TEXT, spans, remote.model.max_length)
    there = list(remote.steps(canvas, settings))
    assert len(there) == len(here) >= 2
    for a, b in zip(here, there):
        for name in wire.SLOT_FIELDS:
            assert torch.equal(getattr(a, name), getattr(b, name)), name
        assert a.texts == b.texts and torch.equal(a.positions, b.positions) and a.index == b.index


def test_an_instruction_travels_to_the_service_and_runs_as_in_process(model, url):
    from engine.instruct import with_instruction

    remote = HttpEngine(url)
    settings = QUALITY.replace(seed=3, guidance=1.0)
    spans = [Span(19, 31)]
    canvas = with_instruction(build_canvas(model.codec, TEXT, spans, model.max_length), "return the sum")
    here = [s.tokens.tolist() for s in InProcessEngine(model).steps(canvas, settings)]
    there_canvas = with_instruction(build_canvas(remote.model.codec, TEXT, spans, remote.model.max_length),
                                    "return the sum")
    assert [s.tokens.tolist() for s in remote.steps(there_canvas, settings)] == here
    plain = build_canvas(model.codec, TEXT, spans, model.max_length)
    assert [s.tokens.tolist() for s in InProcessEngine(model).steps(plain, settings)] != here


def test_the_page_through_the_service_shows_what_the_page_in_process_shows(model, url):
    from gradio_client import Client
    remote = HttpEngine(url)
    assert remote.model.fluency() is None and "served by" in remote.model.label
    views = []
    for demo in (build_demo(model, History("sqlite://")), build_demo(remote.model, History("sqlite://"),
                                                                      engine_client=remote)):
        launch(demo, prevent_thread_lock=True, server_port=None, quiet=True)
        try:
            client = Client(demo.local_url, verbose=False)
            updates = list(client.submit(*args(TEXT, 19, 31), api_name="/regenerate_selection"))
        finally:
            demo.close()
        views.append([u[0] for u in updates])
    # the scores beside candidates differ by design: a page on the service holds no weights to score with
    views = [[re.sub(r"<small[^>]*>[^<]*</small>", "", v) for v in run] for run in views]
    assert 'data-done="1"' in views[0][-1] and views[0][-1] == views[1][-1]
    assert views[0] == views[1]  # every streamed step drawn alike


def test_stopping_a_remote_run_cancels_it_on_the_service(model):
    slow = Paced(model, delay=0.05)
    with served(create_app(slow)) as base:
        remote = HttpEngine(base)
        canvas = build_canvas(remote.model.codec, TEXT, [Span(0, 66, 40)], remote.model.max_length)
        steps = remote.steps(canvas, QUALITY)
        next(steps)
        steps.close()  # what the page's Stop does to its run
        assert wait_until(lambda: httpx.get(f"{base}/health").json()["active"] == 0, seconds=2)
        assert slow.forwards < 40


def test_stopping_an_in_process_run_frees_its_slot(model):
    slow = Paced(model, delay=0.05)
    engine = InProcessEngine(slow)
    steps = engine.steps(build_canvas(slow.codec, TEXT, [Span(0, 66, 40)], slow.max_length), QUALITY)
    next(steps)
    steps.close()
    assert wait_until(lambda: engine.scheduler.stats().active == 0, seconds=2)
    forwards = slow.forwards
    time.sleep(0.3)
    assert slow.forwards <= forwards + 1 < 40


def test_the_page_sends_the_services_key_and_a_missing_one_is_a_clear_error(model, monkeypatch):
    import app
    from engine.serve.guard import Policy
    with served(create_app(model, policy=Policy(keys=("page-key",)))) as base:
        with pytest.raises(EngineError, match="Authorization: Bearer KEY"):
            HttpEngine(base)
        monkeypatch.setenv("SHARPEN_API_KEY", "page-key")
        remote = app.connect(base, None, None)  # what app.py --engine does, the key from the environment
        canvas = build_canvas(remote.model.codec, TEXT, [Span(19, 31)], remote.model.max_length)
        assert list(remote.steps(canvas, QUALITY))[-1].done


def test_a_busy_service_is_a_clear_error(model):
    slow = Paced(model)
    slow.gate.clear()  # one run holds the one slot, one waits: the queue is full
    with served(create_app(slow, max_batch=1, max_queue=1)) as base, httpx.Client(timeout=60) as a, \
            httpx.Client(timeout=60) as b:
        remote = HttpEngine(base)
        canvas = build_canvas(remote.model.codec, TEXT, [Span(19, 31)], remote.model.max_length)
        body = {"text": TEXT, "spans": [[19, 31]], "stream": True}
        held = [a.send(a.build_request("POST", f"{base}/v1/edits", json=body), stream=True)]
        assert wait_until(lambda: httpx.get(f"{base}/health").json()["active"] == 1)
        held.append(b.send(b.build_request("POST", f"{base}/v1/edits", json=body), stream=True))
        assert wait_until(lambda: httpx.get(f"{base}/health").json()["queued"] == 1)
        with pytest.raises(EngineError, match=r"the engine is busy.*retry after \d+ s"):
            next(remote.steps(canvas, QUALITY))
        slow.gate.set()
        for response in held:
            response.close()


def test_app_refuses_a_local_model_with_an_engine_and_names_an_unreachable_one(tmp_path, monkeypatch):
    import app
    monkeypatch.setenv("SHARPEN_DATA", str(tmp_path))
    with pytest.raises(SystemExit, match="--engine runs the service's model: leave out --model"):
        app.main(["--engine", "http://127.0.0.1:9", "--model", "tests/fixtures/tiny-dream"])
    with pytest.raises(SystemExit, match="error: cannot reach the engine service at http://127.0.0.1:9"):
        app.main(["--engine", "http://127.0.0.1:9"])
