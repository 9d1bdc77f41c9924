"""The benchmark's JSON rows carry the keys the issue names, measured through the real loop."""
import json

import pytest

from engine.tools import bench
from tests.tiny import tiny_llama


def test_bench_rows_compare_configs_on_the_same_edits(monkeypatch, capsys):
    model = tiny_llama(True, True)
    monkeypatch.setattr("engine.load.load_model", lambda *a, **k: model)
    monkeypatch.setattr(bench, "plan", lambda m, sizes, spans, generate, edits: {
        "code/span-6": bench.span_edits(m.codec, "code", "def add(a, b):\n    return a + b\n" * 6, 6, edits),
        "prose/span-6": bench.span_edits(m.codec, "prose", "It was the best of times, it was the worst. " * 6, 6,
                                         edits)})
    assert bench.main(["--quick", "--json", "--configs", "dual_cache,reference,fast",
                       "--variant", "all:tokens_per_step=6,correct_rounds=0"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["config"] for r in rows] == ["reference", "dual_cache", "fast", "fast+all"] * 2
    assert rows[3]["forwards"] == 1  # six slots, six per forward
    for row in rows:
        for key in ("config", "workload", "forwards", "tokens_per_forward", "ms_per_forward", "p50_ms",
                    "p90_ms", "tokens_per_s", "exact_match", "speedup_vs_reference", "device",
                    "fluency_nll", "parse_rate", "agreement", "fluency_nll_original", "cpu_p50_ms"):
            assert key in row
        assert row["edits"] == 2 and 1 <= row["forwards"] <= 6 * 3 and row["p90_ms"] >= row["p50_ms"]
        assert row["fluency_nll"] > 0 and 0 <= row["agreement"] <= 1
        assert (row["parse_rate"] is None) == row["workload"].startswith("prose")  # parse: code only
        assert 0 <= row["defect_rate"] <= 1  # code: blocks that do not parse; prose: editor.defects
        if row["parse_rate"] is not None:
            assert row["defect_rate"] == pytest.approx(1 - row["parse_rate"])
    ref, dual = rows[0], rows[1]
    assert ref["forwards"] == 6 and ref["agreement"] == 1.0 and ref["fluency_vs_reference"] == 0.0
    assert dual["forwards"] == 6  # same commit rule, cheaper forwards
    assert 0 <= rows[0]["parse_rate"] <= 1


def test_quick_runs_the_reference_beside_the_page_default(monkeypatch, capsys):
    model = tiny_llama(True, True)
    monkeypatch.setattr("engine.load.load_model", lambda *a, **k: model)
    monkeypatch.setattr(bench, "plan", lambda m, sizes, spans, generate, edits: {
        "prose/span-4": bench.span_edits(m.codec, "prose", "The quick brown fox jumps over the lazy dog. " * 4, 4, 1)})
    assert bench.main(["--quick", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["config"] for r in rows] == ["reference", "default"]
    assert bench.CONFIGS["default"] == bench.PRESETS[bench.DEFAULT_PRESET]
    assert isinstance(rows[1]["within_quality_budget"], bool) and rows[1]["parse_rate"] is None


def test_documents_come_from_the_files_the_corpus_holds_out():
    model = tiny_llama(True, True)
    code = bench.documents(model.codec, 3000)["code"]
    source = "".join((bench.corpus.stdlib_root() / name).read_text() for name in bench.corpus.BENCH_FILES)
    definitions = code.split("\n\n\n")[:-1]
    assert definitions and all(d in source for d in definitions)
    assert bench.quality.parses(code)  # whole definitions: a broken edit shows


def test_bench_refuses_a_run_without_the_reference():
    with pytest.raises(SystemExit):
        bench.main(["--configs", "fast"])


def test_variants_change_the_fast_preset_and_bad_ones_are_refused():
    name, settings = bench.parse_variant("w64:context_window=64,cache=none,threshold=0.8", "fast")
    assert name == "fast+w64"
    assert (settings.context_window, settings.cache, settings.threshold) == (64, "none", 0.8)
    assert settings.tokens_per_step == bench.PRESETS["fast"].tokens_per_step
    for bad, message in (("w64", "NAME:KEY=VALUE"), ("x:context_window", "not KEY=VALUE"),
                         ("x:windows=3", "unknown setting"), ("x:context_window=0", "context_window")):
        with pytest.raises(ValueError, match=message):
            bench.parse_variant(bad, "fast")


@pytest.mark.parametrize("flag", ["--sizes", "--spans"])
@pytest.mark.parametrize("value", ["", "0", "8,x", "-3"])
def test_bench_refuses_bad_sizes_and_spans(flag, value):
    with pytest.raises(SystemExit):
        bench.main(["--quick", flag, value])
