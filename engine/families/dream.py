"""Dream checkpoints (model_type "Dream", Dream-org/Dream-v0-*): a Qwen2 body with a shifted head."""
from __future__ import annotations

from pathlib import Path

import torch

from ..model import UnsupportedModel
from .llama import HF_LLAMA_NAMES, LlamaDiffusionLM, LlamaShape, from_checkpoint, read_safetensors


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
    return from_checkpoint(folder, config, shape, state, HF_LLAMA_NAMES.ours, device=device, dtype=dtype,
                           family="Dream", mask_names=["<|mask|>"], mask_fallback=None, shifted=True)
