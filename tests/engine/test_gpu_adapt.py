"""The GPU adaptation run's steps (scripts/gpu-adapt.sh): transport of the GGUF in parts, and the
whole sequence at toy size on CPU, each step seeing only what its device call would carry."""
import importlib.util
import json
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location("gpu_adapt", REPO / "scripts" / "gpu_adapt.py")
gpu_adapt = importlib.util.module_from_spec(spec)
spec.loader.exec_module(gpu_adapt)


def test_parts_join_back_to_the_file_and_a_bad_part_is_refused(tmp_path):
    original = tmp_path / "model.gguf"
    original.write_bytes(bytes(range(256)) * 41)
    record = gpu_adapt.split_file(original, tmp_path / "a", "part-", 4000)
    assert [p["bytes"] for p in record["parts"]] == [4000, 4000, 2496]
    (tmp_path / "b").mkdir()
    (tmp_path / "a" / "part-3").rename(tmp_path / "b" / "part-3")   # one part stashed elsewhere
    joined = gpu_adapt.join_parts(record, [tmp_path / "a", tmp_path / "b"], tmp_path / "c" / "x.gguf")
    assert joined.read_bytes() == original.read_bytes()
    (tmp_path / "b" / "part-3").write_bytes(b"\0" * 2496)
    with pytest.raises(SystemExit, match="part-3 is corrupt"):
        gpu_adapt.join_parts(record, [tmp_path / "a", tmp_path / "b"], tmp_path / "c" / "x.gguf")


def test_pack_cuts_as_few_parts_as_fit_a_call_beside_the_tree(tmp_path, monkeypatch):
    gguf = tmp_path / "model.gguf"
    gguf.write_bytes(b"x" * 100_000)
    monkeypatch.setattr(gpu_adapt, "travelling_bytes", lambda: 20_000)
    monkeypatch.setattr(gpu_adapt, "MARGIN", 0)
    monkeypatch.setattr(gpu_adapt, "CALL_LIMIT", 20_000 + 45_000 + 200_000 + 1_300_000)  # + riders
    manifest = gpu_adapt.pack(gguf, tmp_path / "pack", parts=None)
    riders = sum((tmp_path / "pack" / n).stat().st_size for n in gpu_adapt.RIDERS)
    room = gpu_adapt.CALL_LIMIT - 20_000 - riders
    parts = manifest["gguf"]["parts"]
    assert all(p["bytes"] <= room for p in parts)
    assert (len(parts) - 1) * room < 100_000   # one part fewer would not fit


@pytest.mark.slow
def test_toy_run_goes_through_every_step_without_what_the_gpu_machine_lacks(tmp_path):
    done = subprocess.run(["bash", str(REPO / "scripts" / "gpu-adapt.sh"), "toy", str(tmp_path)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    assert sorted(p.name for p in (tmp_path / "call1").iterdir()) == \
        ["gguf.zip", "heldout.json", "manifest.json", "part-1", "prose.json.gz"]
    assert sorted(p.name for p in (tmp_path / "call2").iterdir()) == \
        ["gguf.zip", "heldout.json", "manifest.json", "part-2", "prose.json.gz"]
    report = json.loads((tmp_path / "out" / "run.json").read_text())
    # What the run step's own process had imported (its sys.modules), and where gguf came from.
    assert not set(report["imported"]) & set(gpu_adapt.FORBIDDEN)
    assert report["gguf_from"].startswith(str(tmp_path / "call2" / "gguf.zip"))
    assert report["bf16"] and 1 <= report["history"][-1]["step"] <= 4
    assert all(row["licence"] != "?" for row in report["corpus"]["by_source"])
    assert all(f.stat().st_size <= gpu_adapt.RETURN_LIMIT for f in (tmp_path / "out").iterdir())
    from safetensors import safe_open
    with safe_open(str(tmp_path / "adapter.safetensors"), framework="pt") as f:
        assert float(f.metadata()["lora_scale"]) == 2.0
        assert len(list(f.keys())) == 2 * 7 * 2 + 1   # 2 toy blocks x 7 LoRA targets x (A, B) + mask row
