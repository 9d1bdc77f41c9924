"""LLaDA checkpoints (model_type "llada", GSAI-ML/LLaDA-8B-*): OLMo-style names on a Llama body."""
from __future__ import annotations

from pathlib import Path

import torch

from ..model import UnsupportedModel
from .llama import LlamaDiffusionLM, from_checkpoint, read_safetensors
from .llama_net import LlamaShape
from .names import NameTable, per_block

# LLaDA's generate.py uses this id for <|mdm_mask|>; used only when neither config nor tokenizer
# name a mask token.
DOCUMENTED_MASK_ID = 126336

# LLaDA's OLMo-style tensor names ("llama" block type).
LLADA_NAMES = NameTable("LLaDA", {
    "model.transformer.wte.weight": "embed.weight", "model.transformer.ln_f.weight": "norm.weight",
    "model.transformer.ff_out.weight": "head.weight",
    **per_block("model.transformer.blocks.{}", {
        "attn_norm": "attn_norm", "ff_norm": "mlp_norm", "q_proj": "attn.q", "k_proj": "attn.k",
        "v_proj": "attn.v", "attn_out": "attn.o", "ff_proj": "mlp.gate", "up_proj": "mlp.up",
        "ff_out": "mlp.down"}),
}, drop_containing=("rotary",))


def llada_shape(config: dict) -> LlamaShape:
    """LlamaShape from LLaDA's config keys (d_model, n_layers, n_heads, n_kv_heads, ...)."""
    unsupported = {"block_type": "llama", "layer_norm_type": "rms", "activation_type": "silu",
                   "alibi": False, "rope": True, "input_emb_norm": False, "scale_logits": False,
                   "attention_layer_norm": False, "include_bias": False}
    for key, want in unsupported.items():
        if key in config and config[key] != want:
            raise UnsupportedModel(f"LLaDA config {key}={config[key]!r}: Sharpen reads only "
                                   f"{key}={want!r} (the released LLaDA-8B models)")
    width, heads = int(config["d_model"]), int(config["n_heads"])
    ffn = config.get("mlp_hidden_size") or int(config.get("mlp_ratio", 4) * width)
    return LlamaShape(
        vocab=int(config.get("embedding_size") or config["vocab_size"]),
        width=width, layers=int(config["n_layers"]), heads=heads,
        kv_heads=int(config.get("n_kv_heads") or heads), ffn=int(ffn),
        rope_theta=float(config.get("rope_theta", 10000.0)),
        norm_eps=float(config.get("rms_norm_eps", 1e-5)),
        qkv_bias=bool(config.get("include_qkv_bias", False)),
        tie_embeddings=bool(config.get("weight_tying", False)),
        max_length=int(config.get("max_sequence_length", 4096)))


def load(folder: Path, config: dict, device: torch.device, dtype: torch.dtype | None) -> LlamaDiffusionLM:
    """A LLaDA folder (config.json, *.safetensors, tokenizer files) as a mask-noise DiffusionLM."""
    shape = llada_shape(config)
    state = read_safetensors(folder, device)
    return from_checkpoint(folder, config, shape, state, LLADA_NAMES.ours, device=device, dtype=dtype,
                           family="LLaDA", mask_names=["<|mdm_mask|>"], mask_fallback=DOCUMENTED_MASK_ID,
                           shifted=False)
