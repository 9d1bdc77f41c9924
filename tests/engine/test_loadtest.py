"""The load test's workload and its response checks (engine.tools.loadtest), and its quick run
against real services on the tests' tiny model."""
import json
from pathlib import Path

import pytest
from tokenizers import Tokenizer

from engine.tools import loadtest
from engine.tools.service import Reply, metric_samples

TINY = Path(__file__).resolve().parents[1] / "fixtures" / "tiny-dream"


@pytest.fixture(scope="module")
def tokenizer():
    return Tokenizer.from_file(str(TINY / "tokenizer.json"))  # what GET /v1/tokenizer serves for it


@pytest.fixture(scope="module")
def docs(tokenizer):
    return loadtest.documents(tokenizer, loadtest.source_text(), 8, 128)


def edited(edit: loadtest.Edit, new: str) -> Reply:
    """The reply a correct service gives when the span's new text is `new`."""
    text = edit.text[:edit.start] + new + edit.text[edit.end:]
    return Reply(200, {"text": text, "spans": [[edit.start, edit.start + len(new)]], "forwards": 3, "ms": 9.0}, {})


def test_documents_are_distinct_and_about_the_asked_size(tokenizer, docs):
    assert len(set(docs)) == len(docs) == 8
    sizes = [len(tokenizer.encode(d, add_special_tokens=False).ids) for d in docs]
    assert all(96 <= n <= 160 for n in sizes), sizes


def test_documents_refuse_a_source_too_short_for_the_clients(tokenizer):
    with pytest.raises(ValueError, match="2 needed"):
        loadtest.documents(tokenizer, "one short line\n", 2, 128)


def test_edits_cover_span_tokens_on_token_edges_in_the_middle(tokenizer, docs):
    edits = loadtest.client_edits(tokenizer, docs[2], client=2, requests=4, span_tokens=8)
    assert len({(e.start, e.end) for e in edits}) == 4          # different spans of one document
    for e in edits:
        ids = tokenizer.encode(e.text, add_special_tokens=False)
        first = next(i for i, (s, _) in enumerate(ids.offsets) if s == e.start)
        assert ids.offsets[first + 7][1] == e.end               # exactly 8 tokens
        assert 0.2 * len(e.text) < e.start < e.end < 0.85 * len(e.text)
        assert e.payload() == {"text": e.text, "spans": [[e.start, e.end, 8]], "seed": e.seed}


def test_check_passes_a_reply_that_kept_the_outside_text(tokenizer, docs):
    edit = loadtest.client_edits(tokenizer, docs[0], 0, 1, 8)[0]
    assert loadtest.check(edit, edited(edit, " anything the model wrote ")) is None
    assert loadtest.check(edit, edited(edit, "")) is None       # a span may come back empty


def test_check_fails_a_reply_meant_for_another_client(tokenizer, docs):
    mine, theirs = (loadtest.client_edits(tokenizer, docs[c], c, 1, 8)[0] for c in (0, 1))
    crossed = edited(theirs, "new")
    assert loadtest.check(mine, crossed) is not None
    assert loadtest.check_text(mine, crossed.body["text"]) is not None


@pytest.mark.parametrize("damage, expected", [
    (lambda t, s, e: t[:s - 1] + "#" + t[s:], "before the span changed"),
    (lambda t, s, e: t[:e] + t[e + 1:], "after the span changed"),
], ids=["before", "after"])
def test_check_fails_a_reply_that_touched_one_byte_outside_the_span(tokenizer, docs, damage, expected):
    edit = loadtest.client_edits(tokenizer, docs[0], 0, 1, 8)[0]
    text = edit.text[:edit.start] + "new" + edit.text[edit.end:]
    damaged = damage(text, edit.start, edit.start + 3)
    assert len(damaged) != len(text) or damaged != text
    moved = [edit.start, len(damaged) - (len(edit.text) - edit.end)]
    assert expected in loadtest.check(edit, Reply(200, {"text": damaged, "spans": [moved]}, {}))


def test_check_reports_errors_and_wrong_span_claims(tokenizer, docs):
    edit = loadtest.client_edits(tokenizer, docs[0], 0, 1, 8)[0]
    assert loadtest.check(edit, Reply(503, {"error": "queue full"}, {"Retry-After": "2"})) == "HTTP 503: queue full"
    good = edited(edit, "new").body
    assert "one span" in loadtest.check(edit, Reply(200, {**good, "spans": []}, {}))
    shifted = [[edit.start + 1, edit.start + 4]]
    assert "not where the new text lies" in loadtest.check(edit, Reply(200, {**good, "spans": shifted}, {}))


def test_percentile_is_nearest_rank():
    values = [float(v) for v in range(1, 101)]
    assert loadtest.percentile(values, 0.5) == 50 and loadtest.percentile(values, 0.99) == 99
    assert loadtest.percentile([7.0], 0.99) == 7.0


def test_mean_batch_is_edits_per_forward_between_two_scrapes():
    def scrape(total: float, count: float) -> dict[str, float]:
        return metric_samples(f"# TYPE {loadtest.BATCH_METRIC} histogram\n"
                              f"{loadtest.BATCH_METRIC}_bucket{{le=\"+Inf\"}} {count}\n"
                              f"{loadtest.BATCH_METRIC}_sum {total}\n{loadtest.BATCH_METRIC}_count {count}\n")
    assert loadtest.mean_batch(scrape(10, 10), scrape(70, 25)) == 4.0
    assert loadtest.mean_batch(scrape(10, 10), scrape(10, 10)) is None


def test_verdict_applies_the_issue_targets():
    def row(mode, eps, p50=1000.0, p99=2000.0, errors=0):
        return loadtest.Row(mode, 16, 32, errors, eps, eps * 32, p50, p99, None, None)
    assert loadtest.verdict([row("one-at-a-time", 1.0), row("batched", 1.6)]).endswith("MET")
    assert loadtest.verdict([row("one-at-a-time", 1.0), row("batched", 1.4)]).endswith("MISSED")
    assert loadtest.verdict([row("one-at-a-time", 1.0), row("batched", 2.0, p99=3500.0)]).endswith("MISSED")
    assert loadtest.verdict([row("one-at-a-time", 1.0), row("batched", 2.0, errors=1)]).endswith("MISSED")
    assert "not measured" in loadtest.verdict([row("batched", 2.0)])


def test_verdict_gives_the_cpu_ratio_beside_the_wall_clock_one():
    single = loadtest.Row("one-at-a-time", 16, 16, 0, 1.0, 32.0, 1000.0, 1200.0, 1.0, 8.0)
    batched = loadtest.Row("batched", 16, 16, 0, 1.2, 38.4, 1100.0, 1200.0, 14.0, 5.0)
    assert loadtest.verdict([single, batched]).endswith("MISSED; its CPU seconds per edit 1.60x fewer")


@pytest.mark.slow
def test_quick_run_against_two_real_services_checks_every_edit(capsys):
    """The load test end to end on the tiny model: both services, every level, no errors; the
    one-at-a-time service never batches and the batched one does."""
    status = loadtest.main(["--quick", "--model", str(TINY), "--clients", "1,3", "--json"])
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert status == 0
    assert [(r["clients"], r["mode"]) for r in rows] == [
        (1, "one-at-a-time"), (1, "batched"), (3, "one-at-a-time"), (3, "batched")]
    assert all(r["errors"] == 0 and r["edits"] == 2 * r["clients"] and r["edits_per_s"] > 0 for r in rows)
    assert all(r["p50_ms"] <= r["p99_ms"] and r["cpu_s_per_edit"] > 0 for r in rows)
    assert [r["mean_batch"] for r in rows if r["mode"] == "one-at-a-time"] == [1.0, 1.0]
    assert rows[-1]["mean_batch"] > 1.0, "three clients at once share forwards in the batched service"
