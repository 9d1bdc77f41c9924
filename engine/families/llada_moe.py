"""LLaDA-MoE checkpoints (inclusionAI/LLaDA-MoE-7B-A1B-*): OLMoE-style mixture-of-experts blocks.

What differs from LLaDA-8B (read in ZHZisZZ/dllm-trainer@25bfd3c1223f, dllm/pipelines/llada/models/
modeling_lladamoe.py + configuration_lladamoe.py, and inclusionAI/dInfer@fce4e32804103baa,
tools/configuration_lladamoe.py):
- config: Hugging Face keys (hidden_size, num_hidden_layers, num_experts, num_experts_per_tok,
  expert_intermediate_size, dense_intermediate_size, shared_expert_intermediate_size,
  moe_layer_freq, qk_layernorm, partial_rotary_factor, moe_router_enable_expert_bias); the
  released config says model_type "llada" (the dllm tools ask users to rename it "lladamoe"):
  load.py sends either here when the config has num_experts.
- weights: HF names (model.embed_tokens, model.layers.N.self_attn.q_proj, mlp.gate = the router,
  mlp.experts.E.gate_proj, shared_expert.* on the layer, mlp.expert_bias), not LLaDA's OLMo names.
- attention: bidirectional (is_causal False, no mask), RMSNorm on each query/key head
  (qk_layernorm), RoPE on the leading partial_rotary_factor of each head, optional biases
  (attention_bias, also on o_proj). Head: not shifted (position i scores token i), like LLaDA.
- router: softmax over all experts, top-k of (softmax + expert_bias) and those biased values are
  the weights, never renormalised (the reference hard-codes norm_topk_prob off and ignores
  moe_router_score_function, routed_scaling_factor and router_num_group; so does Sharpen).
- a layer whose moe_layer_freq entry is 0 has a dense SwiGLU (dense_intermediate_size) and no
  shared expert. Mask id: config mask_token_id, else <|mask|>, else 156895 (dInfer's
  benchmarks/benchmark.py uses mask 156895 and eos 156892 for LLaDA-MoE and LLaDA 2 alike).
Refused: hidden_act other than silu, rope_scaling, clip_qkv, qk_layernorm false.
"""
from __future__ import annotations

from pathlib import Path

import torch

from ..model import UnsupportedModel
from .llama import LlamaDiffusionLM, from_checkpoint, read_safetensors
from .moe import Routing
from .moe_net import MoENet, MoEShape
from .names import NameTable, per_block

MASK_NAMES = ["<|mask|>", "<|mdm_mask|>"]
DOCUMENTED_MASK_ID = 156895  # LLaDA 2 / LLaDA-MoE generate's default mask id

LLADA_MOE_NAMES = NameTable("LLaDA-MoE", {
    "model.embed_tokens.weight": "embed.weight", "model.norm.weight": "norm.weight",
    "lm_head.weight": "head.weight",
    "model.layers.{}.mlp.expert_bias": "blocks.{}.mlp.router.bias",
    **per_block("model.layers.{}", {
        "input_layernorm": "attn_norm", "post_attention_layernorm": "mlp_norm",
        "self_attn.q_proj": "attn.q", "self_attn.k_proj": "attn.k", "self_attn.v_proj": "attn.v",
        "self_attn.o_proj": "attn.o", "self_attn.q_norm": "attn.q_norm", "self_attn.k_norm": "attn.k_norm",
        "mlp.gate": "mlp.router", "mlp.experts.{}.gate_proj": "mlp.experts.{}.gate",
        "mlp.experts.{}.up_proj": "mlp.experts.{}.up", "mlp.experts.{}.down_proj": "mlp.experts.{}.down",
        "shared_expert.gate_proj": "mlp.shared.gate", "shared_expert.up_proj": "mlp.shared.up",
        "shared_expert.down_proj": "mlp.shared.down",
        "mlp.gate_proj": "mlp.gate", "mlp.up_proj": "mlp.up", "mlp.down_proj": "mlp.down"}),
}, drop_containing=("rotary_emb",))


def refuse(family: str, key: str, value: object, why: str) -> UnsupportedModel:
    return UnsupportedModel(f"{family} config {key}={value!r}: {why}")


def rope_theta(config: dict, family: str) -> float:
    """RoPE base; any rope_scaling other than the default is refused, naming it."""
    scaling = config.get("rope_scaling") or {}
    kind = scaling.get("rope_type", scaling.get("type", "default"))
    if kind != "default":
        raise refuse(family, "rope_scaling", config["rope_scaling"], "Sharpen has plain RoPE only")
    return float(config.get("rope_theta") or 10000.0)


def rotary_dim(head_dim: int, config: dict, family: str) -> int:
    factor = config.get("partial_rotary_factor")
    factor = 1.0 if factor in (None, -1) else float(factor)
    if not 0 < factor <= 1:
        raise refuse(family, "partial_rotary_factor", factor, "must be in (0, 1]")
    return int(head_dim * factor)


def llada_moe_shape(config: dict) -> MoEShape:
    family = "LLaDA-MoE"
    if config.get("hidden_act", "silu") != "silu":
        raise refuse(family, "hidden_act", config["hidden_act"], "Sharpen's experts are SwiGLU (silu)")
    if config.get("clip_qkv") is not None:
        raise refuse(family, "clip_qkv", config["clip_qkv"], "query/key/value clipping is not supported")
    if config.get("qk_layernorm") is False:
        raise refuse(family, "qk_layernorm", False, "Sharpen's MoE attention always norms queries and keys")
    width, heads = int(config["hidden_size"]), int(config["num_attention_heads"])
    layers, head_dim = int(config["num_hidden_layers"]), width // heads
    freq = list(config.get("moe_layer_freq") or [1] * layers)
    if len(freq) != layers:
        raise refuse(family, "moe_layer_freq", freq, f"needs one entry per layer ({layers})")
    routing = Routing(experts=int(config["num_experts"]), top_k=int(config["num_experts_per_tok"]),
                      score="softmax", bias="weights" if config.get("moe_router_enable_expert_bias") else "none")
    bias = bool(config.get("attention_bias", False))
    return MoEShape(
        vocab=int(config["vocab_size"]), width=width, layers=layers, heads=heads,
        kv_heads=int(config.get("num_key_value_heads") or heads), head_dim=head_dim,
        rotary_dim=rotary_dim(head_dim, config, family),
        dense_ffn=int(config.get("dense_intermediate_size") or 0),
        expert_ffn=int(config["expert_intermediate_size"]),
        shared_ffn=int(config.get("shared_expert_intermediate_size") or 0),
        dense_layers=frozenset(i for i, f in enumerate(freq) if f == 0), routing=routing,
        rope_theta=rope_theta(config, family), norm_eps=float(config.get("rms_norm_eps", 1e-5)),
        qkv_bias=bias, out_bias=bias, tie_embeddings=bool(config.get("tie_word_embeddings", False)),
        max_length=int(config.get("max_position_embeddings", 4096)))


def load(folder: Path, config: dict, device: torch.device, dtype: torch.dtype | None) -> LlamaDiffusionLM:
    """A LLaDA-MoE folder as a mask-noise DiffusionLM (bidirectional, position-aligned head)."""
    shape = llada_moe_shape(config)
    state = read_safetensors(folder, device)
    return from_checkpoint(folder, config, shape, state, LLADA_MOE_NAMES.ours, device=device, dtype=dtype,
                           family="LLaDA-MoE", mask_names=MASK_NAMES, mask_fallback=DOCUMENTED_MASK_ID,
                           shifted=False, make=MoENet)
