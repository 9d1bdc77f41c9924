"""Several models behind one service: a request's "model" picks one, /v1/models lists them with
their figures, an unknown name is a 400 naming the field; `serve --model` is repeatable."""
from __future__ import annotations

import io

import httpx
import pytest
from openai import OpenAI

from engine.cli import main
from engine.serve.app import create_app
from engine.serve.command import in_thread as served

from .conftest import FIXTURE, QUALITY, TEXT, Paced


@pytest.fixture(scope="module")
def two(model):
    """The tiny model as "tiny" (the default) and a counting wrapper of it as "other"."""
    other = Paced(model)
    with served(create_app(model, model_id="tiny", more={"other": (other, QUALITY)})) as base:
        yield base, other


def test_v1_models_lists_every_served_model_with_its_family_size_and_memory(two, model):
    url, _ = two
    data = httpx.get(f"{url}/v1/models").json()["data"]
    assert [m["id"] for m in data] == ["tiny", "other"]
    tiny = data[0]["sharpen"]
    assert tiny["family"] == "dream" and tiny["parameters"] == sum(p.numel() for p in model.net.parameters())
    assert tiny["memory_bytes"] == model.memory.total and tiny["fits"] is True


def test_a_requests_model_field_picks_the_model_that_runs_it(two):
    url, other = two
    before = other.forwards
    body = {"text": TEXT, "spans": [[19, 31]], "seed": 3, "steps": 4}
    plain = httpx.post(f"{url}/v1/edits", json=body, timeout=60).json()
    assert other.forwards == before  # no "model": the default
    picked = httpx.post(f"{url}/v1/edits", json={**body, "model": "other"}, timeout=60).json()
    assert other.forwards > before
    assert picked["text"] == plain["text"]  # the same weights, the same seed: the same edit
    with OpenAI(base_url=f"{url}/v1", api_key="unused") as client:
        done = client.completions.create(model="other", prompt=TEXT[:19], suffix=TEXT[31:], max_tokens=4)
    assert done.model == "other"
    assert httpx.get(f"{url}/v1/tokenizer", params={"model": "other"}).json()["model"] == "other"


@pytest.mark.parametrize("route", ["/v1/edits", "/v1/completions"])
def test_an_unknown_model_is_a_400_naming_the_field(two, route):
    url, _ = two
    body = {"text": TEXT, "spans": [[19, 31]]} if route == "/v1/edits" else {"prompt": TEXT[:19], "suffix": TEXT[31:]}
    answer = httpx.post(f"{url}{route}", json={**body, "model": "gpt-4"}, timeout=60)
    assert answer.status_code == 400
    assert answer.json()["error"] == ("\"model\": no model 'gpt-4' is served here; use one of tiny, other "
                                      "(GET /v1/models)")


def test_serve_refuses_two_models_under_one_name_before_loading(tmp_path):
    stderr = io.StringIO()
    code = main(["serve", "--model", str(FIXTURE), "--model", str(tmp_path / FIXTURE.name)], stderr=stderr)
    assert code == 2 and stderr.getvalue().startswith("error: --model: two models would be served as one name")
    stderr = io.StringIO()
    assert main(["serve", "--model", str(FIXTURE), "--model", "x", "--tp", "2"], stderr=stderr) == 2
    assert stderr.getvalue() == "error: --tp serves one model: give --model once\n"
