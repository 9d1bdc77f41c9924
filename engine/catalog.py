"""The models on this machine: the bundled one, the hub cache's (what `pull` fetched) and the model
folders under `--models DIR`, each with its family, size and memory estimate, read without loading a
weight (config.json and the safetensors headers). The page's picker and the service's /v1/models list these.
"""
from __future__ import annotations

import importlib
import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import torch

from . import memory
from .load import BUNDLED as BUNDLED_MODULE
from .load import BUNDLED_FAMILY, default_device, estimate, family_module
from .model import DiffusionLM, UnsupportedModel

log = logging.getLogger(__name__)
BUNDLED = "bundled"  # the bundled model's name wherever models are listed (its --model is none)


@dataclass(frozen=True)
class Entry:
    """One model: `name` is what --model takes (a hub id or a folder; BUNDLED: leave --model out).
    `params` 0 and `memory` None: not known before its first load (the bundled model's first start)."""

    name: str
    family: str
    params: int
    weights: int  # bytes of weights: the safetensors files of a folder, in memory for a loaded model
    memory: memory.MemoryPlan | None

    @property
    def source(self) -> str | None:
        """What load_model takes for it."""
        return None if self.name == BUNDLED else self.name

    @property
    def short(self) -> str:
        """The name as a person reads it: a folder's last part, a hub id whole."""
        return Path(self.name).name if self.name.startswith(("/", ".", "~")) else self.name

    def describe(self) -> str:
        """One line: short name, family, parameters, size of its weights, the memory it needs."""
        if self.memory is None:
            return f"{self.short} · {self.family} · figures after its first load"
        need = f"needs {self.memory.total / memory.GB:.1f} GB"
        if self.memory.free is not None:
            need += f" of {self.memory.free / memory.GB:.1f} GB free" + ("" if self.memory.fits else ": will not fit")
        return f"{self.short} · {self.family} · {millions(self.params)} params · {self.weights / 1e6:,.0f} MB · {need}"

    def as_json(self) -> dict:
        return {"family": self.family, "parameters": self.params, "weights_bytes": self.weights,
                "memory_bytes": None if self.memory is None else self.memory.total,
                "fits": None if self.memory is None else self.memory.fits}


def millions(n: int) -> str:
    return f"{n / 1e9:.1f} B" if n >= 1e9 else f"{n / 1e6:.1f} M"


def local_models(dirs: Iterable[Path] = (), *, cache_dir: Path | None = None,
                 device: torch.device | None = None, quantize: str | None = None) -> list[Entry]:
    """The bundled model (when its package is installed), then the hub cache's models, then the folders
    under each of `dirs` (a DIR that is itself a model folder counts as one). Folders Sharpen cannot
    load (another family, no safetensors) are left out. Estimates are for the models as `--quantize`
    (`quantize`) loads them."""
    device = device or default_device()
    entries = [bundled_entry(device, quantize)] if bundled_installed() else []
    seen = set()
    for name, folder in [*hub_folders(cache_dir), *model_folders(dirs)]:
        if folder.resolve() in seen:  # a folder given twice, or a DIR inside the hub cache
            continue
        seen.add(folder.resolve())
        try:
            entries.append(folder_entry(name, folder, device, quantize))
        except (OSError, ValueError) as err:  # UnsupportedModel, unreadable config or headers
            log.debug("not listed: %s (%s)", folder, err)
    return entries


def folder_entry(name: str, folder: Path, device: torch.device, quantize: str | None = None) -> Entry:
    """The entry for a model folder, from config.json and the safetensors headers; UnsupportedModel
    for a family Sharpen cannot load."""
    config = json.loads((folder / "config.json").read_text())
    family = family_module(config).rsplit(".", 1)[-1]
    weights = sorted(folder.glob("*.safetensors"))
    if not weights:
        raise UnsupportedModel(f"{folder}: no .safetensors weights")
    size = memory.ModelSize.of_folder(folder, config)
    weight_bytes = sum(p.stat().st_size for p in weights)
    return Entry(name, family, size.params, weight_bytes, estimate(size, device, quantize=quantize))


def loaded_entry(name: str, model: DiffusionLM, family: str) -> Entry:
    """The entry of a model already loaded: its estimate is the one made at its load."""
    net = getattr(model, "net", None)
    params = sum(p.numel() for p in net.parameters()) if isinstance(net, torch.nn.Module) else 0
    plan = model.memory
    return Entry(name, family, params, 0 if plan is None else plan.weights, plan)


def bundled_installed() -> bool:
    return bool(importlib.import_module(BUNDLED_MODULE).installed())


def bundled_entry(device: torch.device, quantize: str | None = None) -> Entry:
    """The bundled model's figures (float32, its whole context, as load_model estimates it); before
    its first start has built its weights cache, none."""
    size = importlib.import_module(BUNDLED_MODULE).cached_size()
    if size is None:
        return Entry(BUNDLED, BUNDLED_FAMILY, 0, 0, None)
    plan = memory.plan(size, torch.float32, device, tokens=size.max_length, quantize=quantize)
    return Entry(BUNDLED, BUNDLED_FAMILY, size.params, plan.weights, plan)


def hub_folders(cache_dir: Path | None = None) -> list[tuple[str, Path]]:
    """(name, snapshot folder) of each model in the hub cache: the hub id for the snapshot its `main`
    points to (what `--model ID` loads), the folder itself for other revisions."""
    from huggingface_hub import scan_cache_dir
    from huggingface_hub.errors import CacheNotFound

    try:
        cache = scan_cache_dir(cache_dir)
    except CacheNotFound:
        return []
    found = []
    for repo in sorted(cache.repos, key=lambda r: r.repo_id):
        if repo.repo_type != "model":
            continue
        for revision in sorted(repo.revisions, key=lambda r: r.commit_hash):
            if (revision.snapshot_path / "config.json").is_file():
                name = repo.repo_id if "main" in revision.refs else str(revision.snapshot_path)
                found.append((name, revision.snapshot_path))
    return found


def model_folders(dirs: Iterable[Path]) -> list[tuple[str, Path]]:
    """(path, folder) for each model folder in `dirs`: DIR itself when it holds config.json, else
    its subfolders that do."""
    found = []
    for root in dirs:
        root = Path(root).expanduser()
        candidates = [root] if (root / "config.json").is_file() else sorted(p for p in root.glob("*") if p.is_dir())
        found += [(str(p), p) for p in candidates if (p / "config.json").is_file()]
    return found
