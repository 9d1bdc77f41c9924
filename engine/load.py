"""load_model: find a model on this machine (folder or cached hub id) and pick its family's loader."""
from __future__ import annotations

import importlib
import json
from collections.abc import Callable
from pathlib import Path

import torch

from .model import DiffusionLM, ModelNotFound, UnsupportedModel

# config.json "model_type" -> module whose `load(folder, config, device, dtype)` builds the model.
# Anything else whose architectures end in "ForMaskedLM" goes to hf_masked.
FAMILIES: dict[str, str] = {
    "llada": "engine.families.llada",
    "lladamoe": "engine.families.llada_moe",
    "llada2_moe": "engine.families.llada2",
    "dream": "engine.families.dream",  # also DreamOn, Dream-Coder and DiffuCoder
    "diffusion_gemma": "engine.families.diffusion_gemma",
}
MASKED_LM = "engine.families.hf_masked"


def load_model(source: str | Path | None = None, *, device: str | torch.device | None = None,
               dtype: torch.dtype | None = None) -> DiffusionLM:
    """Load `source` (a local folder or a hub id already in the local cache); None = bundled model.

    Never downloads: a model that is not on this machine raises ModelNotFound saying how to get it.
    """
    device = pick_device(device)
    if source is None:
        from .families.bundled import load_default
        return load_default(device=device, dtype=dtype)
    folder = resolve_folder(str(source))
    config = json.loads((folder / "config.json").read_text())
    return family_loader(config)(folder, config, device, dtype)


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def pick_device(name: str | torch.device | None) -> torch.device:
    """`name` as a device this machine can use (None: the default), else a ValueError in one line."""
    if name is None:
        return default_device()
    try:
        device = torch.device(name)
    except RuntimeError:
        device = None
    if device is None or device.type not in ("cpu", "cuda"):
        raise ValueError(f"unknown device {str(name)!r}: use cpu or cuda (cuda:N for one GPU of several)")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {str(name)!r}: this machine has no CUDA GPU that torch {torch.__version__} "
                         "can use; use cpu")
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        raise ValueError(f"device {str(name)!r}: this machine has {torch.cuda.device_count()} CUDA GPU(s)")
    return device


def resolve_folder(source: str) -> Path:
    """A folder with config.json, from a path or from the local Hugging Face cache (offline)."""
    path = Path(source).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelNotFound(f"{path} has no config.json: it is not a model folder.")
        return path
    if path.exists():
        raise ModelNotFound(f"{path} is a file; --model wants the folder that holds config.json.")
    if source.count("/") == 1 and not source.startswith((".", "/", "~")):
        cached = _cached_snapshot(source)
        if cached is not None:
            return cached
    raise ModelNotFound(
        f"No model at {source!r}: not a folder here and not in the local Hugging Face cache. "
        "Sharpen never downloads at run time. On a machine with internet run "
        f"`huggingface-cli download {source} --local-dir DIR`, copy DIR here and pass --model DIR.")


def _cached_snapshot(repo_id: str) -> Path | None:
    try:
        from huggingface_hub import snapshot_download
        folder = Path(snapshot_download(repo_id, local_files_only=True))
    except Exception:  # not cached (or hub library missing): the caller explains
        return None
    return folder if (folder / "config.json").is_file() else None


def family_loader(config: dict) -> Callable[..., DiffusionLM]:
    model_type = str(config.get("model_type", "")).lower()
    architectures = config.get("architectures") or []
    if model_type == "llada" and "num_experts" in config:  # LLaDA-MoE ships model_type "llada"
        model_type = "lladamoe"
    if model_type in FAMILIES:
        module = FAMILIES[model_type]
    elif any(str(a).endswith("ForMaskedLM") for a in architectures):
        module = MASKED_LM
    else:
        raise UnsupportedModel(
            f"model_type={model_type or '?'!r} (architectures={architectures}) is not a family "
            f"Sharpen loads. Supported: {', '.join(sorted(FAMILIES))} and any *ForMaskedLM model.")
    return importlib.import_module(module).load
