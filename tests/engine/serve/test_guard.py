"""Nothing one request can break: keys, browser-borne requests, values past every bound, budgets and
deadlines, plain requests that can be cancelled while they wait (issue 20)."""
import json

import httpx
import pytest
from starlette.testclient import TestClient

from engine.limits import MAX_STEPS
from engine.serve.app import create_app
from engine.serve.guard import Policy, read_keys
from engine.settings import knobs
from tests.engine.serve.conftest import QUALITY, TEXT, Paced, served, wait_until

JSON = {"content-type": "application/json"}
EDIT = {"text": TEXT, "spans": [[19, 31]]}


def asgi(app, client_host="127.0.0.1", host="127.0.0.1"):
    """A client of `app` in this process, as if from `client_host` (no socket: refusals come first)."""
    return TestClient(app, base_url=f"http://{host}", client=(client_host, 50000))


@pytest.fixture(scope="module")
def keyed(model):
    return create_app(model, policy=Policy(keys=("k-one", "k-two")))


def test_a_key_is_needed_on_every_v1_route_and_health_only_where_open(keyed, model):
    with asgi(keyed, "10.1.2.3") as c:
        assert c.get("/v1/models").status_code == 401
        refused = c.post("/v1/edits", json=EDIT, headers={"Authorization": "Bearer k-on"})
        assert refused.status_code == 401 and refused.headers["WWW-Authenticate"] == "Bearer"
        assert "Authorization: Bearer KEY" in refused.json()["error"]
        assert c.get("/v1/models", headers={"Authorization": "Basic k-one"}).status_code == 401
        for key in ("k-one", "k-two"):
            assert c.get("/v1/models", headers={"Authorization": f"Bearer {key}"}).status_code == 200
        assert c.get("/health").status_code == 401 and c.get("/metrics").status_code == 401
    with asgi(create_app(model, policy=Policy(keys=("k",), open_health=True)), "10.1.2.3") as c:
        assert c.get("/health").status_code == 200 and c.get("/v1/tokenizer").status_code == 401


def test_without_a_key_only_loopback_clients_are_served(model):
    app = create_app(model)
    with asgi(app, "192.168.1.20") as c:
        refused = c.get("/health")
        assert refused.status_code == 403 and "serves only this machine" in refused.json()["error"]
    with asgi(app, "127.0.0.1") as c:
        assert c.get("/health").status_code == 200


def test_keys_come_from_the_flag_a_file_or_the_environment(tmp_path):
    keys = tmp_path / "keys"
    keys.write_text("# one a line\nalpha\n\n beta \n")
    assert read_keys(None, None, {}) == ()
    assert read_keys("x", keys, {}) == ("x", "alpha", "beta")
    assert read_keys(None, None, {"SHARPEN_API_KEY": "env", "SHARPEN_API_KEY_FILE": str(keys)}) == (
        "env", "alpha", "beta")
    (tmp_path / "empty").write_text("# none\n")
    with pytest.raises(ValueError, match="holds no key"):
        read_keys(None, tmp_path / "empty", {})


@pytest.mark.parametrize("headers, status, message", [
    ({"content-type": "text/plain"}, 415, "send the body as JSON"),  # a form post from any web page
    ({"content-type": "application/x-www-form-urlencoded"}, 415, "send the body as JSON"),  # curl -d
    ({}, 415, "not 'no type'"),
    ({**JSON, "origin": "http://evil.example"}, 403, "requests from web pages"),
    ({**JSON, "host": "attacker.example"}, 421, "Host 'attacker.example' is not served here"),  # DNS rebinding
])
def test_requests_a_web_page_could_send_are_refused(model, headers, status, message):
    with asgi(create_app(model)) as c:
        answer = c.post("/v1/edits", content=json.dumps(EDIT).encode(), headers=headers)
    assert answer.status_code == status and message in answer.json()["error"]


def test_allowed_hosts_and_origins_and_ip_literals_pass(model):
    app = create_app(model, policy=Policy(hosts=("engine",), origins=("https://mine.example",)))
    with asgi(app) as c:
        for host in ("engine:8000", "localhost:8000", "10.0.0.11:8000", "[::1]:8000"):
            assert c.get("/health", headers={"host": host}).status_code == 200, host
        assert c.get("/health", headers={"origin": "https://mine.example"}).status_code == 200


def test_docs_and_openapi_only_when_asked(model):
    with asgi(create_app(model)) as c:
        assert c.get("/docs").status_code == 404 and c.get("/openapi.json").status_code == 404
    with asgi(create_app(model, docs=True)) as c:
        assert c.get("/openapi.json").status_code == 200


HUGE = [2**64, 1e308, 10**30]


@pytest.mark.parametrize("value", HUGE)
def test_every_field_past_its_bounds_is_400_naming_it(model, value):
    with asgi(create_app(model)) as c:
        for knob in knobs():
            answer = c.post("/v1/edits", json={**EDIT, knob.name: value})
            assert answer.status_code == 400 and knob.name in answer.json()["error"], knob.name
        for field in ("max_tokens", "n"):
            answer = c.post("/v1/completions", json={"prompt": "a", field: value})
            assert answer.status_code == 400 and f'"{field}"' in answer.json()["error"], field
        answer = c.post("/v1/edits", json={**EDIT, "spans": [[0, 3, value]]})
        assert answer.status_code == 400


@pytest.mark.parametrize("body, message", [
    ({"prompt": "a", "max_tokens": 10**9}, '"max_tokens" must be a whole number from 1 to 32,768'),
    ({"prompt": "a", "max_tokens": 10**10}, '"max_tokens" must be a whole number from 1 to 32,768'),
    ({"text": TEXT, "spans": [[0, 3, 10**9]]}, "the longest span is 32,768 tokens"),
    ({"text": TEXT, "spans": [[0, 3, 30_000]]}, "the model's context is 1,024 tokens"),
    ({**EDIT, "steps": MAX_STEPS, "candidates": 64}, "one request may use 2,000,000"),
])
def test_requests_that_would_allocate_without_end_are_refused_by_arithmetic(model, body, message):
    route = "/v1/completions" if "prompt" in body else "/v1/edits"
    with asgi(create_app(model)) as c:
        answer = c.post(route, json=body)
    assert answer.status_code == 400 and message in answer.json()["error"]


def test_a_deeply_nested_body_is_400_json(model):
    with asgi(create_app(model)) as c:
        for raw in (b"[" * 100_000, b'{"text": ' + b"[" * 20 + b"]" * 20 + b"}"):
            answer = c.post("/v1/edits", content=raw, headers=JSON)
            assert answer.status_code == 400 and "nests JSON deeper than 16" in answer.json()["error"]


def test_a_self_correcting_run_ends_at_its_deadline_with_its_text_and_says_so(model):
    """remask_below 0.99 with the most steps could run 65,536 forwards; at the deadline the next step is the last."""
    slow = Paced(model, delay=0.02)
    body = {**EDIT, "remask_below": 0.99, "steps": MAX_STEPS, "strategy": QUALITY.strategy}
    with served(create_app(slow, max_seconds=0.5)) as url:
        answer = httpx.post(f"{url}/v1/edits", json=body, timeout=60)
        result = answer.json()
    assert answer.status_code == 200 and "\u2591" not in result["text"] and result["text"] != TEXT
    assert "reached its 0.5 s limit" in result["deadline"] and result["forwards"] < 200


def test_a_step_that_never_comes_stops_the_edit_at_twice_the_deadline(model):
    slow = Paced(model)
    slow.gate.clear()  # the forward never returns
    try:
        with served(create_app(slow, max_seconds=0.3)) as url:
            answer = httpx.post(f"{url}/v1/edits", json=EDIT, timeout=30)
            assert answer.json() == {"id": answer.headers["X-Edit-Id"], "error": (
                f"edit {answer.headers['X-Edit-Id']} was stopped: no step came within 0.6 s (twice --max-seconds)")}
            assert wait_until(lambda: httpx.get(f"{url}/health").json()["active"] == 0)
    finally:
        slow.gate.set()


def test_a_plain_request_sends_its_id_at_once_and_leaving_cancels_it_even_while_queued(model):
    slow = Paced(model)
    slow.gate.clear()
    long = {**EDIT, "spans": [[0, 66, 40]], "strategy": QUALITY.strategy}
    try:
        with served(create_app(slow, max_batch=1, max_queue=4)) as url, httpx.Client(timeout=30) as client:
            first = client.send(client.build_request("POST", f"{url}/v1/edits", json=long), stream=True)
            assert first.status_code == 200 and first.headers["X-Edit-Id"]  # before any forward ran
            assert wait_until(lambda: httpx.get(f"{url}/health").json()["active"] == 1)
            with httpx.Client(timeout=30) as other:
                queued = other.send(other.build_request("POST", f"{url}/v1/edits", json=long), stream=True)
                assert wait_until(lambda: httpx.get(f"{url}/health").json()["queued"] == 1)
                queued.close()
            assert wait_until(lambda: httpx.get(f"{url}/health").json()["queued"] == 0)
            assert httpx.delete(f"{url}/v1/edits/{first.headers['X-Edit-Id']}").status_code == 204
            assert json.loads(first.read())["error"].endswith("was cancelled")
            first.close()
    finally:
        slow.gate.set()
    assert slow.forwards <= 1
