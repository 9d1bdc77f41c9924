"""Concurrent requests share the model's forwards through the scheduler, and each gets the text it
would get alone."""
import threading

import httpx

from engine import DEFAULT_PRESET, PRESETS, Span, build_canvas, run
from engine.correct import corrected
from engine.serve.app import create_app
from tests.engine.serve.conftest import TEXT, Paced, served, wait_until
from tests.engine.serve.test_metrics import scrape

EDITS = [([[19, 31, 6]], 1), ([[42, 51, 5]], 2), ([[19, 31, 8], [42, 51]], 3), ([[0, 14]], 4)]


def test_concurrent_edits_share_forwards_and_each_gets_its_own_result(model):
    paced = Paced(model)
    paced.gate.clear()  # hold the first forward until every edit is in the batch
    results: dict[int, dict] = {}

    def post(url, i, spans, seed):
        body = {"text": TEXT, "spans": spans, "seed": seed, "temperature": 0.7}
        results[i] = httpx.post(f"{url}/v1/edits", json=body, timeout=120).json()

    with served(create_app(paced, max_batch=4)) as url:
        threads = [threading.Thread(target=post, args=(url, i, *edit)) for i, edit in enumerate(EDITS)]
        for thread in threads:
            thread.start()
        def submitted():
            health = httpx.get(f"{url}/health").json()
            return health["active"] + health["queued"] == len(EDITS)
        assert wait_until(submitted, seconds=30)  # (jobs join the batch between forwards)
        paced.gate.set()
        for thread in threads:
            thread.join(120)
        metrics = scrape(url)
    for i, (spans, seed) in enumerate(EDITS):
        canvas = build_canvas(model.codec, TEXT, [Span(*s) for s in spans], model.max_length)
        alone = run(corrected(model, canvas, PRESETS[DEFAULT_PRESET].replace(seed=seed, temperature=0.7)))
        assert results[i]["text"] == alone.texts[0], i
    # some forward carried more than two edits: fewer forwards than the edits' own in total
    assert metrics['sharpen_batch_size_bucket{le=2.0}'] < metrics["sharpen_batch_size_count"]
    assert metrics["sharpen_forwards_total"] < sum(r["forwards"] for r in results.values())
