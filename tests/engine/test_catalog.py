"""engine.catalog: the models on this machine (hub cache built by a pull from the fake hub, --models DIRs)."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from engine import load_model
from engine.catalog import BUNDLED, local_models
from engine.pull import pull

from .fake_hub import FakeHub, serving

TINY = Path(__file__).resolve().parents[1] / "fixtures" / "tiny-dream"
CPU = torch.device("cpu")


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    """A hub cache holding org/tiny-dream, as `python -m engine pull` leaves it."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    hub = FakeHub()
    hub.add_folder("org/tiny-dream", TINY)
    with serving(hub) as url:
        pull("org/tiny-dream", cache_dir=tmp_path / "hub", endpoint=url, device=CPU, say=lambda _: None)
    return tmp_path / "hub"


@pytest.fixture
def models_dir(tmp_path) -> Path:
    """--models DIR: a copy of the tiny model, a folder of an unsupported family, a plain folder."""
    root = tmp_path / "models"
    shutil.copytree(TINY, root / "mine")
    (root / "gpt2").mkdir(parents=True)
    (root / "gpt2" / "config.json").write_text('{"model_type": "gpt2", "architectures": ["GPT2LMHeadModel"]}')
    shutil.copy(TINY / "model.safetensors", root / "gpt2")
    (root / "notes").mkdir()
    return root


def test_the_catalog_lists_pulled_models_and_model_folders_that_load(cache, models_dir):
    entries = {e.name: e for e in local_models([models_dir], cache_dir=cache, device=CPU)}
    assert [n for n in entries if n != BUNDLED] == ["org/tiny-dream", str(models_dir / "mine")]
    tiny = entries["org/tiny-dream"]
    loaded = load_model(models_dir / "mine", device="cpu")
    assert tiny.family == "dream" and tiny.params == sum(p.numel() for p in loaded.net.parameters())
    assert tiny.memory is not None and tiny.memory.total == loaded.memory.total  # load_model's own estimate
    assert tiny.weights == (TINY / "model.safetensors").stat().st_size
    line = tiny.describe()
    assert line.startswith("org/tiny-dream · dream · 1.1 M params · 2 MB · needs 0.1 GB")


def test_a_dir_that_is_a_model_folder_is_one_entry_and_repeats_are_listed_once(tmp_path, models_dir):
    mine = models_dir / "mine"
    entries = local_models([mine, models_dir, mine], cache_dir=tmp_path / "no-cache", device=CPU)
    assert [e.name for e in entries if e.name != BUNDLED] == [str(mine)]


def test_a_revision_other_than_main_is_listed_by_its_folder(cache):
    refs = cache / "models--org--tiny-dream" / "refs"
    (refs / "main").rename(refs / "v1")
    [entry] = [e for e in local_models(cache_dir=cache, device=CPU) if e.name != BUNDLED]
    assert entry.name.endswith("/snapshots/0123456789abcdef0123456789abcdef01234567")
    assert Path(entry.name).is_dir()


def test_the_catalog_estimates_models_as_quantize_loads_them(models_dir):
    """The picker's figures are the ones `--quantize int8` will load (weights a quarter of float32's
    linear layers), as load_model's own estimate is."""
    [plain] = [e for e in local_models([models_dir / "mine"], cache_dir=models_dir / "none", device=CPU)
               if e.name != BUNDLED]
    [int8] = [e for e in local_models([models_dir / "mine"], cache_dir=models_dir / "none", device=CPU,
                                      quantize="int8") if e.name != BUNDLED]
    loaded = load_model(models_dir / "mine", device="cpu", quantize="int8")
    assert int8.memory is not None and plain.memory is not None
    assert int8.memory.weights < plain.memory.weights and int8.memory.total == loaded.memory.total
