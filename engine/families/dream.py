"""Dream checkpoints (model_type "Dream"): Dream-v0, Dream-Coder, DiffuCoder and DreamOn, a Qwen2
body with a shifted head.

The variants share Dream's config keys, tensor names, bidirectional attention and head shift
(logits of position i-1 score token i); what differs is in their special tokens (read in
HKUNLP/Dream, DreamLM/Dream-Coder@0e81a799d460 README, DreamLM/DreamOn@8a0a54918412 readme and
its dreamon generation code, apple/DiffuCoder-7B-* file lists and users' generate code):
- Dream-Coder (Dream-org/Dream-Coder-v0-*-7B): Qwen2.5-Coder tokenizer; nothing else differs.
- DiffuCoder (apple/DiffuCoder-7B-*): pads the unused end of its canvas with `<|dlm_pad|>` rather
  than end-of-text, so that token (a special one, decoded to nothing) may end a span early here.
- DreamOn (Dream-org/DreamOn-v0-7B): adds `<|expand|>` (generation_config's expand_token_id);
  its delete is end-of-text unless a delete_token_id / `<|delete|>` is given (`length_tokens`).
  An expand written at a masked slot makes it two masked slots, a delete removes it. Expand (and
  a dedicated delete token) are banned in fixed-length runs; engine/resize.py runs the
  variable-length infill that uses them.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import torch

from ..model import UnsupportedModel
from .llama import HF_LLAMA_NAMES, LlamaDiffusionLM, from_checkpoint, read_safetensors, token_id
from .llama_net import LlamaShape

PAD_ENDS_SPAN = "<|dlm_pad|>"  # DiffuCoder's padding token


def dream_shape(config: dict, qkv_bias: bool) -> LlamaShape:
    """LlamaShape from Dream's (Qwen2) config keys."""
    if config.get("use_sliding_window"):
        raise UnsupportedModel("Dream config use_sliding_window=true is not supported")
    # Older configs say rope_theta (+ rope_scaling); transformers 5 writes rope_parameters.
    rope = dict(config.get("rope_scaling") or {}) | dict(config.get("rope_parameters") or {})
    if rope.get("rope_type", rope.get("type", "default")) != "default":
        raise UnsupportedModel(f"Dream config rope scaling {rope!r} is not supported")
    theta = config.get("rope_theta") or rope.get("rope_theta") or 10000.0
    width, heads = int(config["hidden_size"]), int(config["num_attention_heads"])
    if config.get("head_dim") not in (None, width // heads):
        raise UnsupportedModel(f"Dream config head_dim={config['head_dim']} != hidden_size / heads")
    return LlamaShape(
        vocab=int(config["vocab_size"]), width=width, layers=int(config["num_hidden_layers"]),
        heads=heads, kv_heads=int(config.get("num_key_value_heads") or heads),
        ffn=int(config["intermediate_size"]), rope_theta=float(theta),
        norm_eps=float(config.get("rms_norm_eps", 1e-6)), qkv_bias=qkv_bias,
        tie_embeddings=bool(config.get("tie_word_embeddings", False)),
        max_length=int(config.get("max_position_embeddings", 4096)))


def dream_config(shape: LlamaShape, mask_id: int, eos_id: int | None) -> dict:
    """config.json of a Dream folder holding a LlamaNet of `shape` (what `dream_shape` reads)."""
    return {"model_type": "Dream", "architectures": ["DreamModel"], "hidden_size": shape.width,
            "num_hidden_layers": shape.layers, "num_attention_heads": shape.heads,
            "num_key_value_heads": shape.kv_heads, "intermediate_size": shape.ffn,
            "vocab_size": shape.vocab, "max_position_embeddings": shape.max_length,
            "rope_theta": shape.rope_theta, "rms_norm_eps": shape.norm_eps,
            "tie_word_embeddings": shape.tie_embeddings, "hidden_act": "silu",
            "mask_token_id": mask_id, "eos_token_id": eos_id}


def load(folder: Path, config: dict, device: torch.device, dtype: torch.dtype | None) -> LlamaDiffusionLM:
    """A Dream folder as a mask-noise DiffusionLM; position i-1 predicts token i (shifted)."""
    state = read_safetensors(folder, device)
    # Dream-7B has q/k/v biases (Qwen2); Llama-based Dream conversions set attention_bias=false.
    shape = dream_shape(config, qkv_bias=any(k.endswith("q_proj.bias") for k in state))
    model = from_checkpoint(folder, config, shape, state, HF_LLAMA_NAMES.ours, device=device, dtype=dtype,
                            family="Dream", mask_names=["<|mask|>"], mask_fallback=None, shifted=True)
    tokenizer = model.codec.tokenizer
    pad = token_id(tokenizer, PAD_ENDS_SPAN)
    if pad is not None and pad in model.codec.banned_ids:
        model.codec = dataclasses.replace(
            model.codec, banned_ids=tuple(i for i in model.codec.banned_ids if i != pad))
    lengths = length_tokens(folder, tokenizer)
    if lengths is not None:
        model.expand_id, model.delete_id = lengths
        model.label = f"DreamOn (local: {folder})"
    return model


def length_tokens(folder: Path, tokenizer) -> tuple[int, int] | None:
    """DreamOn's (expand, delete) ids: generation_config.json's expand_token_id / delete_token_id,
    else the tokenizer's <|expand|> / <|delete|>; None without an expand token.

    Without a delete token the delete is end-of-text, as in DreamOn's own code (DreamLM/DreamOn
    @8a0a5491: its training data pads a span with end-of-text, its generator removes an
    end-of-text written at a masked slot, `delete_eos_token`; its generation config reads
    delete_token_id from eos_token_id)."""
    path = folder / "generation_config.json"
    generation = json.loads(path.read_text()) if path.is_file() else {}
    expand = generation.get("expand_token_id", token_id(tokenizer, "<|expand|>"))
    delete = generation.get("delete_token_id", token_id(tokenizer, "<|delete|>"))
    if delete is None:
        eos = generation.get("eos_token_id", tokenizer.eos_token_id)
        delete = eos[0] if isinstance(eos, list) else eos
    return None if expand is None or delete is None else (int(expand), int(delete))
