"""/metrics: Prometheus text, every series named sharpen_*, moving as edits run; one registry per app."""
import httpx
from prometheus_client.parser import text_string_to_metric_families

from engine.serve.app import create_app
from engine.serve.metrics import Rate
from tests.engine.serve.conftest import TEXT, served

NAMES = {"sharpen_requests", "sharpen_request_seconds", "sharpen_first_step_seconds", "sharpen_forward_seconds",
         "sharpen_batch_size", "sharpen_forwards", "sharpen_tokens_committed", "sharpen_edits_cancelled",
         "sharpen_forwards_per_second", "sharpen_tokens_per_second", "sharpen_queue_depth",
         "sharpen_active_edits", "sharpen_last_batch_size"}


def families(url) -> set[str]:
    names = {family.name for family in text_string_to_metric_families(httpx.get(f"{url}/metrics").text)}
    return {name.removesuffix("_created") for name in names}  # prometheus-client's start times


def scrape(url) -> dict[str, float]:
    response = httpx.get(f"{url}/metrics")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(response.text):
        for s in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(s.labels.items()))
            samples[f"{s.name}{{{labels}}}" if labels else s.name] = s.value
    return samples


def test_metrics_are_named_and_move_with_each_edit(model):
    app = create_app(model)
    other = create_app(model)  # a second app in the same process: its own registry, no clash
    with served(app) as url, served(other) as quiet:
        assert families(url) == NAMES  # all of them, and nothing not named sharpen_*
        before = scrape(url)
        spans = [[19, 31]]
        response = httpx.post(f"{url}/v1/edits", json={"text": TEXT, "spans": spans, "seed": 1}, timeout=60)
        forwards = response.json()["forwards"]
        after = scrape(url)
        assert after["sharpen_forwards_total"] - before["sharpen_forwards_total"] == forwards
        assert after["sharpen_tokens_committed_total"] > before["sharpen_tokens_committed_total"]
        assert after["sharpen_batch_size_count"] - before["sharpen_batch_size_count"] == forwards
        assert after["sharpen_first_step_seconds_count"] == before["sharpen_first_step_seconds_count"] + 1
        assert after["sharpen_requests_total{route=/v1/edits,status=200}"] == 1
        assert after["sharpen_request_seconds_count{route=/v1/edits}"] == 1
        assert after["sharpen_forwards_per_second"] > 0 and after["sharpen_tokens_per_second"] > 0
        assert after["sharpen_last_batch_size"] == 1 and after["sharpen_queue_depth"] == 0
        assert scrape(quiet)["sharpen_forwards_total"] == 0


def test_a_rate_counts_only_its_window():
    now = [100.0]
    rate = Rate(window=10, clock=lambda: now[0])
    rate.add(5)
    now[0] = 105.0
    rate.add(15)
    assert rate.per_second() == 2.0
    now[0] = 112.0  # the first event has left the window
    assert rate.per_second() == 1.5
