"""The benchmark's JSON rows carry the keys the issue names, measured through the real loop."""
import json

import pytest

from engine.tools import bench
from tests.tiny import tiny_llama


def test_bench_rows_compare_configs_on_the_same_edits(monkeypatch, capsys):
    model = tiny_llama(True, True)
    monkeypatch.setattr("engine.load.load_model", lambda *a, **k: model)
    monkeypatch.setattr(bench, "plan", lambda m, sizes, spans, generate, edits: {
        "code/span-6": bench.span_edits(m.codec, "code", "def add(a, b):\n    return a + b\n" * 6, 6, edits)})
    assert bench.main(["--quick", "--json", "--configs", "dual_cache,reference,fast",
                       "--variant", "all:tokens_per_step=6"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["config"] for r in rows] == ["reference", "dual_cache", "fast", "fast+all"]
    assert rows[-1]["forwards"] == 1  # six slots, six per forward
    for row in rows:
        for key in ("config", "workload", "forwards", "tokens_per_forward", "ms_per_forward", "p50_ms",
                    "p90_ms", "tokens_per_s", "exact_match", "speedup_vs_reference", "device"):
            assert key in row
        assert row["edits"] == 2 and 1 <= row["forwards"] <= 6 and row["p90_ms"] >= row["p50_ms"]
    ref, dual = rows[0], rows[1]
    assert ref["forwards"] == 6 and ref["agreement_with_reference"] == 1.0  # one token per forward
    assert dual["forwards"] == 6  # same commit rule, cheaper forwards


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
