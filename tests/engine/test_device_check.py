"""scripts/device-check.sh --dry-run: every step of the prepared GPU run, at toy size on CPU."""
import json
import os
import subprocess
from pathlib import Path

import pytest
import torch

from engine.tools import speed

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_dry_run_measures_every_config_and_imports_only_what_the_gpu_machine_has(tmp_path):
    env = {**os.environ, "OUT": str(tmp_path), "OMP_NUM_THREADS": "1"}
    done = subprocess.run(["bash", "scripts/device-check.sh", "--dry-run"], cwd=REPO, env=env, text=True,
                          capture_output=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert {p.name for p in tmp_path.iterdir()} == {"env.txt", "tests.log", "speed.log", "speed.json", "speed.md"}
    assert "skipped" in (tmp_path / "tests.log").read_text()  # the GPU tests were collected, and skip on CPU
    result = json.loads((tmp_path / "speed.json").read_text())
    rows = {(r["config"], r["batch"]): r for r in result["rows"]}
    assert set(rows) == {(c, b) for c in ("reference", "fast", "two_apart", "ar") for b in (1, 2)} | {
        (c, 1) for c in ("fast+compiled", "ar+compiled", "reference+compiled")}
    for row in rows.values():
        assert "skipped" not in row and row["ms_per_forward"] > 0
        assert row["forwards"] == (4 if row["config"] == "two_apart" else 8)  # 8-token span
        assert row["x_weight_read"] == pytest.approx(row["ms_per_forward"] / result["weight_read_ms"])
    assert rows[("reference", 1)]["rows_per_forward"] == 128  # the whole canvas every forward
    assert rows[("fast", 2)]["rows_per_forward"] < 2 * 128    # cached context: fewer rows
    assert "| fast+compiled | 1 | 8 |" in (tmp_path / "speed.md").read_text()


def test_bandwidth_comes_from_the_gpu_name_unless_given(monkeypatch):
    cuda = torch.device("cuda")
    for name, tbps in (("NVIDIA H100 80GB HBM3", 3.35), ("NVIDIA H100 PCIe", 2.0), ("NVIDIA H200", 4.8),
                       ("NVIDIA A10", None)):
        monkeypatch.setattr(torch.cuda, "get_device_name", lambda device, name=name: name)
        assert speed.lookup(speed.HBM_TBPS, cuda, None) == tbps
    assert speed.lookup(speed.HBM_TBPS, cuda, 2.5) == 2.5
    assert speed.lookup(speed.HBM_TBPS, torch.device("cpu"), None) is None

