"""load_model: find a model on this machine (folder or cached hub id) and pick its family's loader."""
from __future__ import annotations

import argparse
import importlib
import json
import logging
from collections.abc import Callable
from pathlib import Path

import torch

from . import memory
from .model import DiffusionLM, ModelNotFound, UnsupportedModel
from .quantize import QUANTIZE, parse_quantize, quantize_model

log = logging.getLogger(__name__)

# config.json "model_type" -> module whose `load(folder, config, device, dtype)` builds the model.
# Anything else whose architectures end in "ForMaskedLM" goes to hf_masked.
FAMILIES: dict[str, str] = {
    "llada": "engine.families.llada",
    "lladamoe": "engine.families.llada_moe",
    "llada2_moe": "engine.families.llada2",
    "dream": "engine.families.dream",  # also DreamOn, Dream-Coder and DiffuCoder
    "diffusion_gemma": "engine.families.diffusion_gemma",
    "steerling": "engine.families.steerling",
    "a2d-qwen2": "engine.families.qwen",  # dllm's MDLM/BD3LM conversions of Qwen2.5
    "a2d-qwen3": "engine.families.qwen",  # ... and of Qwen3
    "sdar": "engine.families.qwen",
    "open-dcoder": "engine.families.open_dcoder",  # config says "qwen2"; told by its auto_map
}
# config.json auto_map["AutoModelForCausalLM"] -> family, where model_type is a plain architecture's:
# Open-dCoder's upload script names its own modelling file (a plain Qwen2 has no auto_map).
AUTO_MAPS: dict[str, str] = {"modeling_qwen2.Qwen2ForCausalLM": "open-dcoder"}
MASKED_LM = "engine.families.hf_masked"
BUNDLED = "engine.families.bundled"  # `load_default(device, dtype)`: the model `source=None` loads
BUNDLED_FAMILY = "smollm2"  # the bundled model's family name (model.family, the picker)
# The core names families by module only (here): engine/*.py imports none of them (tests/test_imports.py).


# --dtype names -> torch dtypes; float16/bfloat16 logits are upcast to float32 before the softmax.
DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}
COMPILE_MODES = ("off", "default", "reduce-overhead", "max-autotune")  # off, or torch.compile's mode


def load_model(source: str | Path | None = None, *, device: str | torch.device | None = None,
               dtype: torch.dtype | str | None = None, compile: str = "off",
               quantize: str | None = None) -> DiffusionLM:
    """Load `source` (a local folder or a hub id already in the local cache); None = bundled model.

    Never downloads: a model that is not on this machine raises ModelNotFound saying how to get it.
    `dtype` (a torch dtype or a DTYPES name; None: float32 on CPU, the checkpoint's own on a GPU).
    The memory estimate (engine/memory.py) is logged before any weight is read, kept as
    `model.memory`, and a model that will not fit raises ModelTooLarge with the figures.
    `compile`: a torch.compile mode for the forwards, in static length buckets (`DiffusionLM.compile`).
    `quantize`: int8 or int4 weights for the linear layers (engine/quantize.py); the estimate counts
    them so, and the float weights are read first (the peak while loading).
    """
    device, dtype = pick_device(device), parse_dtype(dtype)
    if compile not in COMPILE_MODES:
        raise ValueError(f"unknown compile mode {compile!r}: use one of {', '.join(COMPILE_MODES)}")
    quantize = parse_quantize(quantize, device)
    model = load_weights(source, device, dtype, quantize)
    quantize_model(model, quantize)
    if compile != "off":
        model.compile(compile)
    return model


def load_weights(source: str | Path | None, device: torch.device, dtype: torch.dtype | None,
                 quantize: str | None = None) -> DiffusionLM:
    """The model on `device`, its memory estimate checked first (the bundled model's, ~0.5 GB, after)."""
    if source is None:
        bundled = importlib.import_module(BUNDLED).load_default(device=device, dtype=dtype)
        size = memory.ModelSize.of_net(bundled.net)
        bundled.memory = memory.check(memory.plan(size, size.stored, device, tokens=bundled.max_length,
                                                  quantize=quantize))
        bundled.family = BUNDLED_FAMILY
        log.info("memory: %s", bundled.memory)
        return bundled
    folder = resolve_folder(str(source))
    config = json.loads((folder / "config.json").read_text())
    family = family_module(config)
    loader = importlib.import_module(family).load
    size = memory.ModelSize.of_folder(folder, config)
    plan = memory.check(estimate(size, device, dtype, quantize))
    log.info("memory: %s", plan)
    model = loader(folder, config, device, dtype)
    model.memory, model.family = plan, family.rsplit(".", 1)[-1]
    return model


def estimate(size: memory.ModelSize, device: torch.device, dtype: torch.dtype | None = None,
             quantize: str | None = None) -> memory.MemoryPlan:
    """The estimate `load_model` makes for a model folder of `size` on `device` (at `dtype`, default the
    one it would pick; `quantize`: as `--quantize` loads it): also what `pull` and the picker show."""
    return memory.plan(size, pick_dtype(device, dtype, size.stored), device, quantize=quantize)


def pick_dtype(device: torch.device, dtype: torch.dtype | None, stored: torch.dtype) -> torch.dtype:
    """The caller's dtype; else float32 on CPU (bf16 matmuls are slow without AVX-512) and the
    checkpoint's own floating dtype on an accelerator."""
    if dtype is not None:
        return dtype
    return torch.float32 if device.type == "cpu" else stored


def stored_dtype(source: str | Path | None) -> torch.dtype:
    """The floating dtype a model's checkpoint holds, from its headers (the bundled one: float32)."""
    if source is None:
        return torch.float32
    return memory.safetensors_params(sorted(resolve_folder(str(source)).glob("*.safetensors")))[1]


def parse_dtype(dtype: torch.dtype | str | None) -> torch.dtype | None:
    """A dtype given by name (--dtype) or as itself; anything else is a ValueError saying the names."""
    if dtype is None or isinstance(dtype, torch.dtype):
        return dtype
    if dtype not in DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}: use one of {', '.join(DTYPES)}")
    return DTYPES[dtype]


def add_model_flag(parser: argparse.ArgumentParser, several: bool = False) -> None:
    """--model, for every entry point that loads a model (`load_model`'s `source`); `several`: repeatable
    (`serve`: each served under its last path part, the first the default)."""
    if several:
        parser.add_argument("--model", action="append", help="model folder or cached hub id (default: the "
                            "bundled model); repeatable: each is served under its last path part, a request's "
                            "\"model\" picks one")
    else:
        parser.add_argument("--model", help="model folder or cached hub id (default: the bundled model)")


def add_device_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", help="cpu or cuda (default: cuda when present)")


def add_load_flags(parser: argparse.ArgumentParser, several: bool = False) -> None:
    """--model, --device, --dtype, --compile and --quantize, for every entry point that loads a model
    with all of `load_model`'s options (CLI, page, benchmarks); `several`: --model repeatable."""
    add_model_flag(parser, several)
    add_device_flag(parser)
    parser.add_argument("--dtype", choices=sorted(DTYPES),
                        help="weights and activations (default: float32 on CPU, the checkpoint's own on a GPU)")
    parser.add_argument("--compile", choices=COMPILE_MODES, default="off",
                        help="torch.compile the model's forwards in static length buckets with this mode "
                             "(default: off; first use of each bucket compiles, GPU only pays off)")
    parser.add_argument("--quantize", choices=QUANTIZE,
                        help="weight-only int8 (CPU or GPU) or int4 (CUDA) linear layers; the head and the "
                             "embedding stay float (default: float weights; on an AVX2 CPU int8 saves memory, "
                             "not time: docs/PERFORMANCE.md)")


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
    if not looks_like_repo_id(source):
        raise ModelNotFound(f"No model at {source!r}: no such folder. Sharpen never downloads at run time: pass "
                            "a model folder, or a hub id got with `python -m engine pull OWNER/NAME`.")
    cached = _cached_snapshot(source)
    if cached is not None:
        return cached
    raise ModelNotFound(
        f"No model at {source!r}: not a folder here and not in the local Hugging Face cache. "
        "Sharpen never downloads at run time: get it first with "
        f"`python -m engine pull {source}` (or copy its folder here and pass --model DIR).")


def looks_like_repo_id(source: str) -> bool:
    """OWNER/NAME, as the hub names a repository (not a relative or absolute path)."""
    return source.count("/") == 1 and not source.startswith((".", "/", "~")) and "" not in source.split("/")


def _cached_snapshot(repo_id: str) -> Path | None:
    """The cached snapshot `main` points to, found by its config.json. (Not snapshot_download with
    local_files_only: it refuses a snapshot that lacks any file of the repository, and `pull`
    fetches only the files a loader reads.)"""
    try:
        from huggingface_hub import try_to_load_from_cache
        config = try_to_load_from_cache(repo_id, "config.json")
    except Exception:  # hub library missing, or a name it refuses: the caller explains
        return None
    return Path(config).parent if isinstance(config, str) else None


def family_loader(config: dict) -> Callable[..., DiffusionLM]:
    return importlib.import_module(family_module(config)).load


def family_module(config: dict) -> str:
    """The module of the family that loads a model with this config.json; UnsupportedModel if none."""
    model_type = str(config.get("model_type", "")).lower()
    architectures = config.get("architectures") or []
    if model_type == "llada" and "num_experts" in config:  # LLaDA-MoE ships model_type "llada"
        model_type = "lladamoe"
    own_code = (config.get("auto_map") or {}).get("AutoModelForCausalLM")
    if model_type == "qwen2" and own_code in AUTO_MAPS:
        model_type = AUTO_MAPS[own_code]
    if model_type in FAMILIES:
        return FAMILIES[model_type]
    if any(str(a).endswith("ForMaskedLM") for a in architectures):
        return MASKED_LM
    raise UnsupportedModel(
        f"model_type={model_type or '?'!r} (architectures={architectures}) is not a family "
        f"Sharpen loads. Supported: {', '.join(sorted(FAMILIES))} and any *ForMaskedLM model.")
