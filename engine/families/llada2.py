"""LLaDA 2.x checkpoints (model_type "llada2_moe": inclusionAI/LLaDA2.0-mini and kin): BailingMoE-V2
blocks trained as a block-diffusion model.

What differs from LLaDA-8B and LLaDA-MoE (read in inclusionAI/dFactory@c29d72cc5bdf,
models/llada2_moe/{configuration,modeling}_llada2_moe.py and configs/model_configs/llada2_mini/
config.json; inclusionAI/dInfer@fce4e32804103baa, python/dinfer/model/):
- weights: model.word_embeddings, one fused attention.query_key_value (query heads, then key,
  then value heads; split here at load), attention.dense (the output), attention.query_layernorm /
  key_layernorm (RMSNorm per head, always applied), mlp.gate (router) with mlp.gate.expert_bias,
  mlp.experts.E.*, mlp.shared_experts.*; layers below first_k_dense_replace are dense (intermediate_size).
- RoPE on the first partial_rotary_factor (0.5 in mini: 64 of 128) dims of each head.
- router (DeepSeek-V3 style): sigmoid score per expert; expert_bias added for choosing only;
  experts in n_group groups, a group scored by its two best, the topk_group best groups eligible;
  top num_experts_per_tok of those; weights = the unbiased sigmoids renormalised (when k > 1),
  times routed_scaling_factor (2.5). Shared expert width = moe_intermediate_size * num_shared_experts.
- attention: block-diffusion. Their generate builds a block-causal mask (tokens see their own
  block and every earlier block, blocks of block_length=32 from the sequence start) and decodes
  block after block, semi-autoregressively, committing by confidence threshold inside the block.
  Sharpen runs the same mask (ATTENTION_BLOCK tokens per block, counted from the first token the
  model sees), so a span's slots do not see text more than one block after them; the order of
  commits is Sharpen's own `block_length` setting (32 reproduces their schedule's shape). The
  context cache (DualCache) is not offered: it assumes bidirectional attention. Head: not shifted.
Refused: score_function other than sigmoid, norm_head, use_sliding_window, rope_scaling,
hidden_act other than silu, num_nextn_predict_layers (multi-token-prediction layers) above 0.
"""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch

from .llada_moe import DOCUMENTED_MASK_ID, MASK_NAMES, refuse, rope_theta, rotary_dim
from .llama import LlamaDiffusionLM, from_checkpoint, read_safetensors
from .moe import Routing
from .moe_net import MoENet, MoEShape
from .names import NameTable, per_block

ATTENTION_BLOCK = 32  # LLaDA 2's generate default block_length, the block size it was trained at
FAMILY = "LLaDA2"

LLADA2_NAMES = NameTable(FAMILY, {
    "model.word_embeddings.weight": "embed.weight", "model.norm.weight": "norm.weight",
    "lm_head.weight": "head.weight",
    "model.layers.{}.mlp.gate.expert_bias": "blocks.{}.mlp.router.bias",
    **per_block("model.layers.{}", {
        "input_layernorm": "attn_norm", "post_attention_layernorm": "mlp_norm",
        # attention.query/key/value are the rows of query_key_value, split by `split_fused_qkv`
        "attention.query": "attn.q", "attention.key": "attn.k", "attention.value": "attn.v",
        "attention.dense": "attn.o", "attention.query_layernorm": "attn.q_norm",
        "attention.key_layernorm": "attn.k_norm", "mlp.gate": "mlp.router",
        "mlp.experts.{}.gate_proj": "mlp.experts.{}.gate", "mlp.experts.{}.up_proj": "mlp.experts.{}.up",
        "mlp.experts.{}.down_proj": "mlp.experts.{}.down", "mlp.shared_experts.gate_proj": "mlp.shared.gate",
        "mlp.shared_experts.up_proj": "mlp.shared.up", "mlp.shared_experts.down_proj": "mlp.shared.down",
        "mlp.gate_proj": "mlp.gate", "mlp.up_proj": "mlp.up", "mlp.down_proj": "mlp.down"}),
}, drop_containing=("rotary_emb",))

FUSED = ".attention.query_key_value."


def split_fused_qkv(state: Mapping[str, torch.Tensor], shape: MoEShape) -> dict[str, torch.Tensor]:
    """`state` with each fused query_key_value weight (and bias) split into attention.query, .key
    and .value rows: heads * head_dim query rows, then kv_heads * head_dim each for keys and values."""
    q, kv = shape.heads * shape.head_dim, shape.kv_heads * shape.head_dim
    out: dict[str, torch.Tensor] = {}
    for name, tensor in state.items():
        if FUSED not in name:
            out[name] = tensor
            continue
        prefix, leaf = name.split(FUSED)
        for part, rows in zip(("query", "key", "value"), tensor.split([q, kv, kv])):
            out[f"{prefix}.attention.{part}.{leaf}"] = rows
    return out


def check_supported(config: dict) -> None:
    """UnsupportedModel naming the first config key whose value Sharpen cannot run."""
    wants = {"score_function": "sigmoid", "norm_head": False, "use_sliding_window": False,
             "hidden_act": "silu", "num_nextn_predict_layers": 0}
    for key, want in wants.items():
        if config.get(key, want) not in (want, None):
            raise refuse(FAMILY, key, config[key], f"Sharpen runs only {key}={want!r}")


def llada2_shape(config: dict) -> MoEShape:
    check_supported(config)
    width, heads = int(config["hidden_size"]), int(config["num_attention_heads"])
    head_dim = int(config.get("head_dim") or width // heads)
    rotary = rotary_dim(head_dim, config, FAMILY)
    if config.get("rotary_dim") not in (None, rotary):
        raise refuse(FAMILY, "rotary_dim", config["rotary_dim"],
                     f"disagrees with partial_rotary_factor (head_dim {head_dim} -> {rotary})")
    experts, top_k = int(config["num_experts"]), int(config["num_experts_per_tok"])
    routing = Routing(experts=experts, top_k=top_k, score="sigmoid", bias="select",
                      groups=int(config.get("n_group") or 1), top_groups=int(config.get("topk_group") or 1),
                      renormalize=top_k > 1, scale=float(config.get("routed_scaling_factor", 1.0)))
    moe_ffn = int(config["moe_intermediate_size"])
    return MoEShape(
        vocab=int(config["vocab_size"]), width=width, layers=int(config["num_hidden_layers"]), heads=heads,
        kv_heads=int(config.get("num_key_value_heads") or heads), head_dim=head_dim, rotary_dim=rotary,
        dense_ffn=int(config.get("intermediate_size") or 0), expert_ffn=moe_ffn,
        shared_ffn=moe_ffn * int(config.get("num_shared_experts") or 0),
        dense_layers=frozenset(range(int(config.get("first_k_dense_replace") or 0))), routing=routing,
        rope_theta=rope_theta(config, FAMILY), norm_eps=float(config.get("rms_norm_eps", 1e-6)),
        qkv_bias=bool(config.get("use_qkv_bias", False)), out_bias=bool(config.get("use_bias", False)),
        tie_embeddings=bool(config.get("tie_word_embeddings", False)),
        max_length=int(config.get("max_position_embeddings", 4096)), attention_block=ATTENTION_BLOCK)


def load(folder: Path, config: dict, device: torch.device, dtype: torch.dtype | None) -> LlamaDiffusionLM:
    """A LLaDA 2.x folder as a mask-noise DiffusionLM with block-causal attention, no context cache."""
    shape = llada2_shape(config)
    state = split_fused_qkv(read_safetensors(folder, device), shape)
    model = from_checkpoint(folder, config, shape, state, LLADA2_NAMES.ours, device=device, dtype=dtype,
                            family=FAMILY, mask_names=MASK_NAMES, mask_fallback=DOCUMENTED_MASK_ID,
                            shifted=False, make=MoENet)
    model.supports_cache = False
    model.attention_block = ATTENTION_BLOCK
    return model
