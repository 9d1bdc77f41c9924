"""The page on a hosted model through OpenAI's fill-in-the-middle shape (`--engine openai:URL`), tested
against Sharpen's own service in process: the request is the one the `openai` client sends, the
stream becomes steps, and every refusal becomes one clear message. Nothing leaves 127.0.0.1."""
import json
import socket

import httpx
import openai
import pytest

from editor.history import History
from engine import Span, build_canvas
from engine.serve.app import create_app
from engine.serve.guard import Policy
from page.demo import build_demo, launch
from page.engine_client import EngineError
from page.openai_engine import KEY_ENV, OpenAIEngine, byte_codec, fitted, glued
from tests.engine.serve.conftest import TEXT, served
from tests.page.helpers import QUALITY, args

SPAN = (19, 31)  # "return a + b" in TEXT


class Recording(httpx.BaseTransport):
    """A real transport that keeps every request it sends."""

    def __init__(self):
        self.inner, self.requests = httpx.HTTPTransport(), []

    def handle_request(self, request):
        request.read()
        self.requests.append(request)
        return self.inner.handle_request(request)


def canvas_for(engine, text=TEXT, span=SPAN):
    return build_canvas(engine.model.codec, text, [Span(*span)], engine.model.max_length)


def sent(request):
    body = json.loads(request.content) if request.content else None
    return request.method, request.url.path, body, request.headers.get("authorization")


def test_the_engine_sends_what_the_openai_client_sends(url):
    ours, theirs = Recording(), Recording()
    engine = OpenAIEngine(url + "/v1", api_key="k", transport=ours)
    settings = QUALITY.replace(candidates=2, seed=7, temperature=0.8)
    steps = list(engine.steps(canvas_for(engine), settings))
    body = json.loads(ours.requests[-1].content)
    client = openai.OpenAI(base_url=url + "/v1", api_key="k", http_client=httpx.Client(transport=theirs))
    assert client.models.list().data[0].id == engine.name
    stream = client.completions.create(model=body["model"], prompt=body["prompt"], suffix=body["suffix"],
                                       max_tokens=body["max_tokens"], n=2, seed=7, stream=True, temperature=0.8)
    middles = ["", ""]
    for chunk in stream:
        for choice in chunk.choices:
            middles[choice.index] += choice.text
    assert [sent(r) for r in ours.requests] == [sent(r) for r in theirs.requests]
    assert body["prompt"] == TEXT[:SPAN[0]] and body["suffix"] == TEXT[SPAN[1]:] and body["n"] == 2
    # the same seed, the same service: the page's candidates are the openai client's completions
    assert steps[-1].texts == tuple(TEXT[:SPAN[0]] + m + TEXT[SPAN[1]:] for m in glued(body["prompt"], middles))


def test_the_stream_becomes_steps_that_only_commit(url):
    engine = OpenAIEngine(url)  # the service's root: /v1 is added
    canvas = canvas_for(engine)
    steps = list(engine.steps(canvas, QUALITY.replace(candidates=2)))
    assert len(steps) >= 2 and steps[-1].done and not steps[0].done
    for before, after in zip(steps, steps[1:]):
        assert not (after.masked & ~before.masked).any()  # a committed slot never goes back
        for text in after.texts:
            assert text.startswith(TEXT[:SPAN[0]]) and text.endswith(TEXT[SPAN[1]:])
    shown = [canvas.drafts(s.tokens[0], s.masked[0])[0].split("\u2591")[0] for s in steps]
    assert all(a == b[:len(a)] for a, b in zip(shown, shown[1:]))  # the text grows as it streams
    assert not (steps[0].top_probs[steps[0].masked] > 0).any()  # no draft: the page draws the mask there


def test_a_long_answer_is_cut_at_a_character_inside_the_span(url):
    engine = OpenAIEngine(url)
    text = "x = 1\ny = 2\n"
    canvas = build_canvas(engine.model.codec, text, [Span(4, 5)], engine.model.max_length)  # one byte
    last = list(engine.steps(canvas, QUALITY))[-1]
    assert last.done and len(last.texts[0].encode()) <= len(text.encode())
    assert last.texts[0].startswith("x = ") and last.texts[0].endswith("\ny = 2\n")


def test_an_answer_too_long_for_its_span_ends_at_a_whole_word():
    codec = byte_codec()
    cases = [("sunny and cloudy", 14, "sunny and", "sunny and clou"), ("東京東京", 7, "東京", "東京"),
             ("abcdefgh", 4, "abcd", "abcd"), ("fits", 9, "fits", "fits")]
    for text, width, end, streaming in cases:
        assert codec.decode(fitted(codec, text, width, words=True)) == end
        assert codec.decode(fitted(codec, text, width, words=False)) == streaming


def test_a_middle_does_not_double_the_space_or_indentation_before_it():
    chunks = b"".join(b'data: {"choices": [{"index": 0, "text": "%s"}]}\n\n' % t for t in (b" ", b" She", b" went"))
    engine = OpenAIEngine("http://hosted.invalid/v1", transport=scripted(200, chunks + b"data: [DONE]\n\n"))
    text = "The door opened and walked in."
    a = text.index("walked")
    steps = list(engine.steps(canvas_for(engine, text, (a, a + len("walked in"))), QUALITY))
    assert steps[-1].texts == ("The door opened and She went.",)
    code = "def f():\n    return 1\n"
    b = code.index("return")
    steps = list(engine.steps(canvas_for(engine, code, (b, b + len("return 1"))), QUALITY))
    assert steps[-1].texts == ("def f():\n    She went\n",)


def test_the_page_runs_an_edit_on_the_hosted_model(url):
    from gradio_client import Client
    engine = OpenAIEngine(url)
    demo = build_demo(engine.model, History("sqlite://"), engine_client=engine)
    launch(demo, prevent_thread_lock=True, server_port=None, quiet=True)
    try:
        client = Client(demo.local_url, verbose=False)
        updates = list(client.submit(*args(TEXT, *SPAN, candidates=2), api_name="/regenerate_selection"))
    finally:
        demo.close()
    assert 'data-done="1"' in updates[-1][0] and "hosted at" in engine.model.label
    assert any('data-done="1"' not in u[0] for u in updates[:-1])  # the text was drawn as it streamed


def test_a_wrong_key_is_a_clear_error(model, monkeypatch):
    from app import connect
    with served(create_app(model, policy=Policy(keys=("right",)))) as base:
        monkeypatch.setenv(KEY_ENV, "wrong")
        with pytest.raises(SystemExit, match=f"refused the key .*HTTP 401.*{KEY_ENV}"):
            connect("openai:" + base, None, None)
        monkeypatch.setenv(KEY_ENV, "right")
        monkeypatch.setenv("SHARPEN_ENGINE_MODEL", "mercury-coder")  # any name is the service's one model
        engine = connect("openai:" + base, None, None)
        assert engine.name == "mercury-coder" and list(engine.steps(canvas_for(engine), QUALITY))[-1].done


def scripted(status=200, body=b"", headers=None, error=None):
    """A transport answering every completion with one scripted response (or raising `error`);
    /v1/models names one model."""
    def answer(request):
        if request.url.path.endswith("/models"):
            return httpx.Response(200, json={"data": [{"id": "m"}]})
        if error is not None:
            raise error
        return httpx.Response(status, content=body, headers=headers or {})
    return httpx.MockTransport(answer)


@pytest.mark.parametrize("transport, message", [
    (scripted(429, b'{"error": {"message": "slow down"}}', {"Retry-After": "7"}),
     r"busy \(HTTP 429: slow down\); retry after 7 s"),
    (scripted(503, b"upstream down"), r"failed \(HTTP 503: upstream down\); try again later"),
    (scripted(error=httpx.ReadTimeout("timed out")), "did not answer in time"),
    (scripted(200, b'data: {"choices": [{"index": 0, "text": "a"}]}\n\n'), "ended its stream before"),
    (scripted(200, b'data: {"error": {"message": "overloaded"}}\n\n'), "failed: overloaded"),
    (scripted(200, b'data: <html>\n\n'), "sent a chunk that is not JSON"),
])
def test_a_refusal_is_one_clear_message(transport, message):
    engine = OpenAIEngine("http://hosted.invalid/v1", transport=transport)
    with pytest.raises(EngineError, match=message):
        list(engine.steps(canvas_for(engine), QUALITY))


def test_a_url_that_does_not_answer_is_a_clear_error():
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(EngineError, match=f"cannot reach the hosted model at http://127.0.0.1:{port}/v1"):
        OpenAIEngine(f"http://127.0.0.1:{port}", timeout=2)


def test_the_byte_layout_spells_any_text():
    codec = byte_codec()
    for text in [TEXT, "Héllo wörld, naïve café — 東京 🙂", "  indented\n\ttabs  "]:
        ids = codec.encode(text)
        assert len(ids) == len(text.encode()) and codec.decode(ids) == text


def test_the_page_shows_a_busy_host_as_its_message():
    from gradio_client import Client
    engine = OpenAIEngine("http://hosted.invalid/v1", transport=scripted(429, b'{"error": "queue full"}',
                                                                           {"Retry-After": "3"}))
    demo = build_demo(engine.model, History("sqlite://"), engine_client=engine)
    launch(demo, prevent_thread_lock=True, server_port=None, quiet=True)
    try:
        client = Client(demo.local_url, verbose=False)
        with pytest.raises(Exception, match=r"busy \(HTTP 429: queue full\); retry after 3 s") as err:
            client.predict(*args(TEXT, *SPAN), api_name="/regenerate_selection")
    finally:
        demo.close()
    assert "Traceback" not in str(err.value)


def test_several_spans_are_refused_with_one_line():
    engine = OpenAIEngine("http://hosted.invalid/v1", transport=scripted(200, b"data: [DONE]\n\n"))
    canvas = build_canvas(engine.model.codec, TEXT, [Span(0, 3), Span(*SPAN)], engine.model.max_length)
    with pytest.raises(EngineError, match="fills one span at a time"):
        next(engine.steps(canvas, QUALITY))


def test_a_hosted_model_refuses_an_instruction_in_one_line(model):
    from engine.instruct import with_instruction
    from page.openai_engine import fim_body

    canvas = build_canvas(model.codec, TEXT, [Span(*SPAN)], model.max_length)
    assert fim_body(canvas, QUALITY, "m")["prompt"] == TEXT[:SPAN[0]]
    with pytest.raises(EngineError, match="takes no instruction"):
        fim_body(with_instruction(canvas, "return the sum"), QUALITY, "m")
