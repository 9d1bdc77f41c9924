"""`python -m engine pull`: against a local fake of the hub's HTTP API (tests/engine/fake_hub.py), so the
real huggingface_hub download code runs (cache layout, resume), and nothing leaves the machine."""
from __future__ import annotations

import errno
import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from engine import load_model
from engine.load import resolve_folder
from engine.pull import PullError, explain, pull

from .fake_hub import COMMIT, FakeHub, serving

TINY = Path(__file__).resolve().parents[1] / "fixtures" / "tiny-dream"
REPO = Path(__file__).resolve().parents[2]
GPT2 = b'{"model_type": "gpt2", "architectures": ["GPT2LMHeadModel"]}'


@pytest.fixture(autouse=True)
def online(monkeypatch):
    """The suite runs with HF_HUB_OFFLINE=1 (nothing may reach a real hub); these tests reach the fake one."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)


@pytest.fixture
def hub():
    hub = FakeHub()
    # Files a loader never reads: a pickled checkpoint and a subfolder's weights.
    hub.add_folder("org/tiny-dream", TINY, {"pytorch_model.bin": b"pickle", "onnx/model.safetensors": b"onnx",
                                            "README.md": b"# tiny"})
    hub.repos["org/gpt2"] = {"config.json": GPT2, "model.safetensors": (TINY / "model.safetensors").read_bytes()}
    hub.repos["org/bin-only"] = {"config.json": (TINY / "config.json").read_bytes(), "pytorch_model.bin": b"p"}
    with serving(hub) as url:
        hub.url = url  # type: ignore[attr-defined]
        yield hub


def pulling(hub, tmp_path, repo="org/tiny-dream", **kwargs):
    lines: list[str] = []
    pulled = pull(repo, cache_dir=tmp_path, endpoint=hub.url, device=torch.device("cpu"), say=lines.append, **kwargs)
    return pulled, lines


def weight_gets(hub) -> list[str]:
    return [path for method, path, _ in hub.requests if method == "GET" and path.endswith((".safetensors", ".bin"))]


def test_pull_fetches_the_config_first_then_only_the_files_a_loader_reads(hub, tmp_path, monkeypatch):
    pulled, lines = pulling(hub, tmp_path)
    assert sorted(p.name for p in pulled.folder.iterdir()) == ["config.json", "model.safetensors", "tokenizer.json",
                                                               "tokenizer_config.json"]
    assert pulled.folder == tmp_path / "models--org--tiny-dream" / "snapshots" / COMMIT  # the hub cache's layout
    gets = [path for method, path, _ in hub.requests if method == "GET" and "/resolve/" in path]
    assert gets[0].endswith("/config.json")
    assert weight_gets(hub) == [f"/org/tiny-dream/resolve/{COMMIT}/model.safetensors"]
    assert pulled.family == "engine.families.dream"
    assert lines[0].startswith("org/tiny-dream: family dream;") and lines[-1].startswith("memory: model ")
    # What it pulled loads by its hub id (the snapshot holds only the files pulled), and its estimate
    # is the one load_model makes.
    from huggingface_hub import constants
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    model = load_model("org/tiny-dream", device="cpu")
    assert model.memory.total == pulled.memory.total and str(pulled.folder) in model.label
    hub.requests.clear()
    again, _ = pulling(hub, tmp_path)  # everything cached: nothing is fetched again
    assert again.folder == pulled.folder and weight_gets(hub) == []


def test_an_unsupported_family_is_refused_before_any_weight_is_fetched(hub, tmp_path):
    with pytest.raises(PullError, match="model_type='gpt2'.*is not a family Sharpen loads.*Nothing was downloaded"):
        pulling(hub, tmp_path, "org/gpt2")
    assert weight_gets(hub) == [] and not list(tmp_path.rglob("*.safetensors"))


def test_a_repo_without_safetensors_weights_is_refused_before_downloading(hub, tmp_path):
    with pytest.raises(PullError, match="no .safetensors weights"):
        pulling(hub, tmp_path, "org/bin-only")
    assert weight_gets(hub) == []


@pytest.mark.parametrize(("repo", "expected"), [
    ("org/nothing", "no model org/nothing on the hub"),
    ("not-a-repo-id", "is not a hub id: give OWNER/NAME"),
])
def test_a_repo_that_does_not_exist_is_one_line(hub, tmp_path, repo, expected):
    with pytest.raises(PullError, match=expected) as err:
        pulling(hub, tmp_path, repo)
    assert "\n" not in str(err.value)


def test_a_revision_that_does_not_exist_is_one_line(hub, tmp_path):
    with pytest.raises(PullError) as err:
        pulling(hub, tmp_path, revision="v9")
    assert "\n" not in str(err.value) and "org/tiny-dream" in str(err.value)


def test_a_disk_without_room_is_refused_before_downloading(hub, tmp_path):
    size = (TINY / "model.safetensors").stat().st_size
    with pytest.raises(PullError, match=r"not enough disk space: the download needs [\d.]+ MB .* free"):
        pulling(hub, tmp_path, free_bytes=lambda folder: size // 2)
    assert weight_gets(hub) == []


def test_a_disk_that_fills_up_midway_and_an_unreachable_hub_are_one_line_each():
    full = explain(OSError(errno.ENOSPC, "No space left on device"), "org/m", None, None)
    assert full is not None and "disk filled up" in full and "`python -m engine pull org/m` again" in full
    assert explain(ValueError("a bug"), "org/m", None, None) is None  # not expected: its traceback stays


def test_an_unreachable_hub_is_one_line(tmp_path):
    with serving(FakeHub()) as url:
        pass  # the port is closed again: nothing answers there
    with pytest.raises(PullError, match="could not reach the hub at http://127.0.0.1"):
        pull("org/tiny-dream", cache_dir=tmp_path, endpoint=url, say=lambda _: None)


def test_model_repo_id_refuses_to_download_and_says_to_pull(tmp_path, monkeypatch):
    from huggingface_hub import constants
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="`python -m engine pull org/absent`"):
        resolve_folder("org/absent")


def pull_command(hub_url: str, home: Path, *args: str) -> subprocess.Popen:
    env = {**os.environ, "HF_ENDPOINT": hub_url, "HF_HOME": str(home), "HF_HUB_OFFLINE": "0",
           "HF_HUB_DISABLE_TELEMETRY": "1", "PYTHONPATH": str(REPO)}
    env.pop("HF_HUB_CACHE", None)
    return subprocess.Popen([sys.executable, "-m", "engine", "pull", *args], cwd=REPO, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def test_a_dropped_connection_resumes_where_it_stopped(hub, tmp_path):
    data = big_repo(hub, tmp_path)
    cut = len(data) * 3 // 4
    hub.drop["model-2.safetensors"] = cut
    pulled, _ = pulling(hub, tmp_path, "org/big")
    assert (pulled.folder / "model-2.safetensors").read_bytes() == data
    first, then = hub.ranges("model-2.safetensors")
    assert first is None and then is not None and 0 < int(then.removeprefix("bytes=").rstrip("-")) <= cut


def big_repo(hub, tmp_path) -> bytes:
    """org/big: the tiny model and a second 24 MiB weights file."""
    save_file({"extra": torch.arange(6 * 2**20, dtype=torch.float32)}, str(tmp_path / "big.safetensors"))
    data = (tmp_path / "big.safetensors").read_bytes()
    hub.repos["org/big"] = {**hub.repos["org/tiny-dream"], "model-2.safetensors": data}
    return data


@pytest.mark.slow
def test_an_interrupted_pull_says_so_in_one_line_and_the_next_one_completes(hub, tmp_path):
    data = big_repo(hub, tmp_path)
    hub.pace, hub.paced_over = 0.05, 4 << 20  # s per 256 KiB of the big file: ~5 s, so Ctrl+C lands midway
    home = tmp_path / "home"
    first = pull_command(hub.url, home, "org/big", "--device", "cpu")
    blobs = home / "hub" / "models--org--big" / "blobs"
    deadline = time.monotonic() + 120
    while not (blobs.is_dir() and any(p.stat().st_size for p in blobs.glob("*.incomplete"))):
        assert time.monotonic() < deadline and first.poll() is None, first.communicate()
        time.sleep(0.05)
    first.send_signal(signal.SIGINT)
    _, err = first.communicate(timeout=60)
    assert first.returncode == 130
    assert err.strip().splitlines()[-1] == ("error: interrupted: the files of org/big that were complete are kept; "
                                            "run `python -m engine pull org/big` again to finish")
    assert not list(blobs.glob("*.incomplete"))  # the cut file is not left behind
    kept = {p.name for p in (blobs.parent / "snapshots" / COMMIT).iterdir()}
    assert "model-2.safetensors" not in kept and "config.json" in kept

    hub.pace, hub.requests[:] = 0.0, []
    second = pull_command(hub.url, home, "org/big", "--device", "cpu")
    out, err = second.communicate(timeout=120)
    assert second.returncode == 0, err
    folder = Path(out.strip())
    assert hashlib.sha256((folder / "model-2.safetensors").read_bytes()).digest() == hashlib.sha256(data).digest()
    fetched = {path.rsplit("/", 1)[-1] for method, path, _ in hub.requests if method == "GET" and "/resolve/" in path}
    assert "model-2.safetensors" in fetched and not fetched & (kept - {"config.json"})  # kept files not fetched again
    assert "memory: model " in err and "run it: python app.py --model org/big" in err


def test_pull_with_hf_hub_offline_set_says_so_in_one_line(hub, tmp_path, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(PullError, match="^HF_HUB_OFFLINE is set: pulling needs the network"):
        pulling(hub, tmp_path)
    assert hub.requests == []
