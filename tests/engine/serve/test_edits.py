"""/v1/edits: the same edit as the CLI's, text outside the spans untouched, every step streamed,
and input it cannot run refused with a message a person can act on."""
import json

import httpx
import pytest

from engine import DEFAULT_PRESET, MASK_GLYPH, PRESETS, Span, build_canvas, run
from engine.correct import corrected
from engine.serve.app import create_app
from tests.engine.serve.conftest import TEXT, Paced, served

JSON = {"content-type": "application/json"}
SPANS = [[19, 31, 12], [42, 51, 10]]  # "return a + b" and "range(10)", each given a length


def edit(url, **body):
    return httpx.post(f"{url}/v1/edits", json={"text": TEXT, "spans": SPANS, **body}, timeout=60)


def stream(url, **body):
    with httpx.stream("POST", f"{url}/v1/edits", json={"text": TEXT, "spans": SPANS, "stream": True, **body},
                      timeout=60) as response:
        assert response.status_code == 200, response.read()
        return response.headers["X-Edit-Id"], [json.loads(line) for line in response.iter_lines()]


def test_an_edit_is_the_engines_own_result_and_text_outside_the_spans_is_unchanged(url, model):
    response = edit(url, seed=3, temperature=0.8)
    assert response.status_code == 200
    result = response.json()
    settings = PRESETS[DEFAULT_PRESET].replace(seed=3, temperature=0.8)  # the service's defaults, changed
    canvas = build_canvas(model.codec, TEXT, [Span(*s) for s in SPANS], model.max_length)
    expected = run(corrected(model, canvas, settings))  # no "language": scope constraints, no rounds
    assert (result["text"], result["forwards"]) == (expected.texts[0], expected.forwards)
    (a0, b0), (a1, b1) = result["spans"]
    text = result["text"]
    assert text[:a0] == TEXT[:19] and text[b0:a1] == TEXT[31:42] and text[b1:] == TEXT[51:]
    assert result["id"] == response.headers["X-Edit-Id"] and result["forwards"] >= 1


def test_the_stream_has_every_step_then_the_same_result(url):
    plain = edit(url, seed=5, strategy="low_confidence", cache="none").json()
    edit_id, lines = stream(url, seed=5, strategy="low_confidence", cache="none")
    steps, done = lines[:-1], lines[-1]
    assert done["done"] is True and done["text"] == plain["text"] and done["spans"] == plain["spans"]
    assert [s["forwards"] for s in steps] == list(range(1, len(steps) + 1)) == [s["step"] + 1 for s in steps]
    assert len(steps) >= 2 and {line["id"] for line in lines} == {edit_id}
    masked = [sum(sum(span["masked"]) for span in s["candidates"][0]["spans"]) for s in steps]
    assert masked == sorted(masked, reverse=True) and masked[-1] == 0  # never grows, ends at none
    first = steps[0]["candidates"][0]["spans"][0]
    assert MASK_GLYPH in first["text"] and len(first["tokens"]) == len(first["confidence"])
    assert sum(first["committed"]) >= 1
    last_texts = [span["text"] for span in steps[-1]["candidates"][0]["spans"]]
    assert last_texts == [done["text"][a:b] for a, b in done["spans"]]


def test_constraints_and_lengths_reach_the_canvas(url):
    body = {"text": TEXT, "spans": [[19, 31, 6]], "constraints": [["a", 0]], "seed": 1}
    result = httpx.post(f"{url}/v1/edits", json=body, timeout=60).json()
    (start, end), = result["spans"]
    assert result["text"][start:end].startswith("a") and result["forwards"] >= 1


def test_several_candidates_each_come_back(url):
    result = edit(url, candidates=3, temperature=1.0).json()
    assert len(result["candidates"]) == 3 and result["candidates"][0]["text"] == result["text"]


@pytest.mark.parametrize("body, message", [
    ({"text": TEXT, "spans": [[20, 999]]}, "span 20:999 is outside the document (0:66)"),
    ({"text": TEXT, "spans": [[0, 10], [5, 12]]}, "overlaps the span before it"),
    ({"text": TEXT, "spans": [[12, 5]]}, "is reversed"),
    ({"text": TEXT, "spans": [[4, 4]]}, "is empty: give a length"),
    ({"text": TEXT, "spans": []}, '"spans" must be a non-empty list'),
    ({"text": TEXT, "spans": [["a", 3]]}, "whole numbers"),
    ({"text": "", "spans": [[0, 0, 3]]}, '"text" must be a non-empty string'),
    ({"text": TEXT, "spans": [[0, 3]], "steps": "3"},
     "steps must be a whole number from 1 to 65536 (or none), got '3'"),
    ({"text": TEXT, "spans": [[0, 3]], "strategy": "fastest"}, "unknown strategy 'fastest'; choose one of"),
    ({"text": TEXT, "spans": [[0, 3]], "topp": 0.9}, "unknown setting(s) topp; known: alternatives"),
    ({"text": TEXT, "spans": [[0, 3]], "stream": "yes"}, '"stream" must be true or false'),
    ({"text": TEXT * 40, "spans": [[0, 3]]}, "the model's context is 1024"),
    ({"text": "a\x00b", "spans": [[0, 1]]}, "NUL character"),
    ([TEXT], "the body must be a JSON object, got list"),
    ({"text": TEXT, "spans": [[0, 3]], "language": "klingon"}, "unknown language 'klingon'"),
    ({"text": TEXT, "spans": [[0, 3]], "language": ["python"]}, '"language" must be a language name'),
    ({"text": TEXT, "spans": [[0, 3]], "guide": 1.0}, "guide: "),  # the fixture model has no causal view
    ({"text": TEXT, "spans": [[0, 3]], "guide": -1}, "guide must be a finite number from 0 to 8"),
    ({"text": TEXT, "spans": [[0, 3]], "instruction": "x" * 1001}, "instruction: 1,001 characters; the limit is 1,000"),
    ({"text": TEXT, "spans": [[0, 3]], "instruction": ["shorter"]}, "instruction must be text, got list"),
    ({"text": TEXT, "spans": [[0, 3]], "instruction": "shorter", "guidance": -1}, "guidance must be a finite number"),
    ({"text": TEXT, "spans": [[0, 3]], "instruction": "shorter", "guidance": 1e9}, "guidance must be a finite number"),
])
def test_bad_input_is_400_with_a_message(url, body, message):
    response = httpx.post(f"{url}/v1/edits", json=body, timeout=60)
    assert response.status_code == 400
    assert message in response.json()["error"]


def test_a_body_that_is_not_json_is_400(url):
    response = httpx.post(f"{url}/v1/edits", content=b"{text: 1", headers=JSON, timeout=60)
    assert response.status_code == 400 and response.json()["error"].startswith("the body is not JSON")


def test_unknown_routes_and_edits_use_the_same_error_shape(url):
    assert httpx.get(f"{url}/v2/nothing").json() == {"error": "GET /v2/nothing: Not Found"}
    response = httpx.delete(f"{url}/v1/edits/nope")
    assert response.status_code == 404 and "no edit nope is running" in response.json()["error"]


def test_health_and_models_name_the_model(url, model):
    assert httpx.get(f"{url}/health").json() == {"status": "ok", "model": model.label, "queued": 0, "active": 0}
    models = httpx.get(f"{url}/v1/models").json()
    assert models["object"] == "list" and [m["id"] for m in models["data"]] == [model.label]


class Broken(Paced):
    def forward_many(self, calls):
        raise RuntimeError("CUDA out of memory (pretend)")


def test_a_model_failure_ends_the_answer_with_its_message(model):
    """The edit's id comes at once, so its status (200) is sent before the model fails: the body says."""
    with served(create_app(Broken(model))) as base:
        response = edit(base)
        assert response.status_code == 200
        assert response.json() == {"id": response.headers["X-Edit-Id"],
                                    "error": "the model failed: CUDA out of memory (pretend)"}
        edit_id, lines = stream(base)
        assert lines == [{"id": edit_id, "error": "the model failed: CUDA out of memory (pretend)"}]
        assert httpx.get(f"{base}/health").json()["active"] == 0


def test_a_body_past_the_limit_is_413_before_it_is_read_whole(url):
    from engine.serve.service import MAX_BODY
    response = httpx.post(f"{url}/v1/edits", content=b" " * (MAX_BODY + 1), headers=JSON, timeout=60)
    assert response.status_code == 413 and response.json() == {"error": "the body is over 8 MiB; send a shorter text"}


def test_a_language_brings_correction_rounds_streamed_as_rounds(url, monkeypatch):
    asked = []

    def checker_for(language, model):
        asked.append(language)
        return lambda before, after, span, new_span: [new_span]  # never satisfied: every round runs
    monkeypatch.setattr("engine.serve.service.checker_for", checker_for)
    _, lines = stream(url, seed=2, correct_rounds=2, language="python")
    rounds = [line["round"] for line in lines[:-1]]
    assert asked == ["python"] and rounds == sorted(rounds) and set(rounds) == {0, 1, 2}
    assert lines[-1]["done"] and lines[-2]["candidates"][0]["spans"][0]["text"] in lines[-1]["text"]
    _, plain = stream(url, seed=2, correct_rounds=2)  # no language: the service does not guess one
    assert {line["round"] for line in plain[:-1]} == {0} and asked == ["python"]


def test_an_instruction_edit_is_the_engines_own_and_an_empty_instruction_is_none(url, model):
    from engine.instruct import with_instruction

    body = {"seed": 2, "strategy": "low_confidence", "cache": "none"}
    guided = edit(url, instruction="use a list comprehension", guidance=1.5, **body).json()
    settings = PRESETS[DEFAULT_PRESET].replace(guidance=1.5, **body)
    canvas = build_canvas(model.codec, TEXT, [Span(*s) for s in SPANS], model.max_length)
    expected = run(corrected(model, with_instruction(canvas, "use a list comprehension"), settings))
    assert (guided["text"], guided["forwards"]) == (expected.texts[0], expected.forwards)
    plain = edit(url, **body).json()
    assert edit(url, instruction="  ", guidance=1.5, **body).json()["text"] == plain["text"]


def test_a_nan_guidance_is_400_naming_it(url):
    body = '{"text": "def f(): pass", "spans": [[4, 5]], "instruction": "rename it", "guidance": NaN}'
    response = httpx.post(f"{url}/v1/edits", content=body.encode(), headers=JSON, timeout=60)
    assert response.status_code == 400 and "guidance" in response.json()["error"]


@pytest.mark.parametrize("body, message", [
    ({"text": TEXT, "spans": [[0, 10], [5, 12]]}, '"spans": span 5:12 overlaps the span before it (0:10)'),
    ({"text": TEXT, "spans": [[12, 5]]}, '"spans": span 12:5 is reversed'),
    ({"text": "no holes here", "template": True}, '"template": the text has no holes'),
    ({"text": "a ⟨⟩ b", "template": True, "spans": [[0, 1]]}, '"template": give no "spans"'),
    ({"text": "a ⟨⟩ b", "template": "yes"}, '"template" must be true or false'),
    ({"text": "a ⟨⟩ b", "template": True, "hole_marker": "<"}, '"hole_marker" must be'),
    ({"text": TEXT, "spans": [[0, 3]], "constraints": [["x", "middle"]]}, '"constraints" must be a list'),
    ({"text": TEXT, "spans": [[0, 3]], "constraints": [["x", 0, 4]]}, '"constraints": \'x\' names span 4'),
    ({"text": TEXT, "spans": [[0, 3]], "include": ""}, '"include" must be a non-empty string'),
    ({"text": TEXT, "spans": [[0, 3, 2]], "ends_with": "return a + b"}, "does not fit in a span of 2 tokens"),
])
def test_bad_pins_and_templates_are_400_naming_the_field(url, body, message):
    response = httpx.post(f"{url}/v1/edits", json=body, timeout=60)
    assert response.status_code == 400
    assert message in response.json()["error"]


def test_a_template_fills_every_hole_and_keeps_the_rest(url):
    template = '{"name": ⟨⟩, "age": ⟨2⟩}'
    result = httpx.post(f"{url}/v1/edits", json={"text": template, "template": True, "seed": 1}, timeout=60).json()
    (a0, b0), (a1, b1) = result["spans"]
    text = result["text"]
    assert "⟨" not in text and text[:a0] == '{"name": ' and text[b0:a1] == ', "age": ' and text[b1:] == "}"


def test_pinned_words_land_where_asked(url):
    body = {"text": TEXT, "spans": [[19, 31, 8]], "ends_with": " b", "constraints": [["return", 0]],
            "include": " +", "seed": 2}
    result = httpx.post(f"{url}/v1/edits", json=body, timeout=60).json()
    (start, end), = result["spans"]
    new = result["text"][start:end]
    assert new.startswith("return") and new.endswith(" b") and " +" in new
    assert len(result["candidates"]) >= 2  # each place of " +" tried, the most likely first
