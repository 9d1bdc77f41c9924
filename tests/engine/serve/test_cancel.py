"""A full queue is 503 with Retry-After; DELETE or a client that leaves stops its run within one
step and frees its slot."""
import json
import time

import httpx
import pytest

from engine.serve.app import create_app
from tests.engine.serve.conftest import QUALITY, TEXT, Paced, served, wait_until

LONG = {"text": TEXT, "spans": [[0, 66, 40]], **{"strategy": QUALITY.strategy, "cache": QUALITY.cache}}  # 40 steps


def health(url):
    return httpx.get(f"{url}/health").json()


def metric(url, name):
    for line in httpx.get(f"{url}/metrics").text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} is not in /metrics")


@pytest.fixture
def paced(model):
    slow = Paced(model, delay=0.05)
    with served(create_app(slow, max_batch=1, max_queue=1)) as url:
        yield slow, url
        slow.gate.set()


def test_a_full_queue_is_503_with_retry_after_and_nothing_is_lost(paced):
    slow, url = paced
    slow.gate.clear()  # the first run holds the one slot, the second waits
    with httpx.Client(timeout=60) as client:
        first = client.build_request("POST", f"{url}/v1/edits", json={**LONG, "stream": True})
        running = client.send(first, stream=True)
        assert wait_until(lambda: health(url)["active"] == 1)
        second = client.build_request("POST", f"{url}/v1/edits", json={**LONG, "stream": True})
        with httpx.Client(timeout=60) as other:
            waiting = other.send(second, stream=True)
            assert wait_until(lambda: health(url)["queued"] == 1)
            full = httpx.post(f"{url}/v1/edits", json=LONG, timeout=60)
            assert full.status_code == 503
            assert int(full.headers["Retry-After"]) >= 1 and "the engine is busy" in full.json()["error"]
            slow.gate.set()
            for response in (running, waiting):  # both admitted runs finish
                assert json.loads(list(response.iter_lines())[-1])["done"] is True
                response.close()
    assert health(url) == {**health(url), "queued": 0, "active": 0}


def test_delete_cancels_a_stream_within_a_step_and_frees_its_slot(paced):
    slow, url = paced
    with httpx.stream("POST", f"{url}/v1/edits", json={**LONG, "stream": True}, timeout=60) as response:
        edit_id = response.headers["X-Edit-Id"]
        lines = response.iter_lines()
        assert json.loads(next(lines))["id"] == edit_id
        assert httpx.delete(f"{url}/v1/edits/{edit_id}").status_code == 204
        rest = [json.loads(line) for line in lines]
    assert rest[-1] == {"id": edit_id, "cancelled": True} and len(rest) <= 3  # within a step or two
    assert health(url)["active"] == 0 and slow.forwards < 40
    assert metric(url, "sharpen_edits_cancelled_total") == 1
    assert httpx.delete(f"{url}/v1/edits/{edit_id}").status_code == 404  # over: nothing to cancel


def test_a_stream_whose_client_leaves_is_cancelled(paced):
    slow, url = paced
    with httpx.stream("POST", f"{url}/v1/edits", json={**LONG, "stream": True}, timeout=60) as response:
        next(response.iter_lines())
    assert_stops(slow, url)


def test_a_plain_request_whose_client_leaves_is_cancelled(paced):
    slow, url = paced
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(f"{url}/v1/edits", json=LONG, timeout=httpx.Timeout(10, read=0.3))
    assert_stops(slow, url)


def assert_stops(slow, url):
    """The run ends within a step of the client leaving: its slot frees, the forwards stop."""
    assert wait_until(lambda: health(url)["active"] == 0, seconds=2)
    forwards = slow.forwards
    time.sleep(0.3)  # six steps' time at 0.05 s a forward
    assert slow.forwards <= forwards + 1 and slow.forwards < 40
    assert metric(url, "sharpen_edits_cancelled_total") == 1
