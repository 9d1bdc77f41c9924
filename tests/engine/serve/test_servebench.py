"""The service benchmark runs end to end on the tiny model and reports what docs/PERFORMANCE.md quotes."""
import json

import pytest

from engine.tools import servebench
from tests.engine.serve.conftest import FIXTURE


@pytest.mark.slow
def test_the_service_benchmark_reports_overhead_and_batching(capsys):
    servebench.main(["--model", str(FIXTURE), "--tokens", "8", "--chars", "600", "--concurrent", "3",
                     "--repeats", "1", "--preset", "quality"])
    out = json.loads(capsys.readouterr().out)
    assert set(out["median_ms"]) == {"in process", "service, streamed", "service, plain"}
    assert out["forwards_per_edit"] == 8 and out["step_line_bytes"] > 0
    # (whether the three overlap depends on timing here; tests/engine/serve/test_batching.py pins sharing down)
    assert 1 <= out["mean_batch"] <= 3 and out["forwards_at_once"] <= 3 * 8
