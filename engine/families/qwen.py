"""Diffusion conversions of Qwen2/Qwen3: dllm's MDLM and BD3LM models, SDAR and Open-dCoder.

Read in ZHZisZZ/dllm@ca176752 (dllm/pipelines/a2d/models/qwen{2,3}/modeling_qwen{2,3}.py,
dllm/utils/models.py, dllm/core/samplers/{mdlm,bd3lm}.py), JetAstra/SDAR@cdb2e049
(training/model/SDAR-4B-Chat/: config.json, modeling_sdar.py; generate.py) and
pengzhangzhi/Open-dLLM@8b38787 (veomni/models/transformers/qwen2/, sample.py, scripts/upload/):
- dllm (dllm-hub/Qwen3-0.6B-diffusion-{mdlm,bd3lm}-v0.1, Qwen2.5-Coder-0.5B-Instruct-diffusion-*):
  model_type "a2d-qwen2" / "a2d-qwen3", the Qwen layout unchanged (Qwen2: q/k/v biases; Qwen3:
  q_norm/k_norm, head_dim of its own), the causal mask replaced by none; head not shifted
  (right_shift_logits False in its samplers); the mask token is `<|mask|>`, added to the Qwen
  tokenizer. MDLM attends bidirectionally. BD3LM was trained and is sampled block-causally over
  blocks of 32 (its sampler's block_size); its config does not say so, so a BD3LM folder is told
  by "bd3lm" in its path (the hub names it so) or by a block_size key in config.json.
- SDAR (JetLM/SDAR-{1.7B,4B,8B}-Chat): model_type "sdar", Qwen3's layout and names; its generate
  decodes blocks of config block_size (4) with a block-causal mask counted from the sequence
  start; head not shifted; mask_token_id in config (<|MASK|>).
- Open-dCoder (fredzzp/open-dcoder-0.5B): a Qwen2.5-Coder checkpoint trained as a masked
  diffusion model; its config says model_type "qwen2" with an auto_map to its own
  modeling_qwen2.Qwen2ForCausalLM (which a plain Qwen2 has not); head shifted like Dream's
  (its sampler: logits = cat(logits[:, :1], logits[:, :-1])); the mask token comes from its
  tokenizer. It is Dream's layout and sampler: engine/families/open_dcoder.py loads it as Dream.
Refused: hidden_act other than silu, rope scaling, sliding windows.
"""
from __future__ import annotations

from pathlib import Path

import torch

from ..model import UnsupportedModel
from .llama import HF_LLAMA_NAMES, LlamaDiffusionLM, from_checkpoint, read_safetensors
from .moe import Routing
from .moe_net import MoENet, MoEShape
from .names import NameTable, per_block

NO_EXPERTS = Routing(experts=1, top_k=1)  # never used: every layer of a dense Qwen is a plain SwiGLU
BD3LM_BLOCK = 32  # dllm's BD3LM trainer and sampler block_size (examples/a2d: --block_size 32)
QWEN3_TYPES = ("a2d-qwen3", "sdar")
FAMILY_NAMES = {"a2d-qwen2": "dllm Qwen2 diffusion", "a2d-qwen3": "dllm Qwen3 diffusion", "sdar": "SDAR"}

QWEN_NAMES = NameTable("Qwen2/Qwen3-layout", {
    **HF_LLAMA_NAMES.table,
    **per_block("model.layers.{}", {"self_attn.q_norm": "attn.q_norm", "self_attn.k_norm": "attn.k_norm"}),
}, drop_containing=("rotary_emb",))


def attention_block(folder: Path, config: dict) -> int | None:
    """Block-causal attention's block size: SDAR's config block_size, a dllm BD3LM's 32 (told by
    its path or a block_size key), else None (MDLM: bidirectional)."""
    if config.get("block_size") is not None:
        return int(config["block_size"])
    if config.get("model_type") == "sdar":
        raise UnsupportedModel("SDAR config has no block_size: its attention blocks are unknown")
    return BD3LM_BLOCK if "bd3lm" in model_name(folder).lower() else None


def model_name(folder: Path) -> str:
    """The folder's own name, or the repo's for a hub-cache snapshot (models--org--name/snapshots/rev)."""
    folder = folder.resolve()
    return folder.parents[1].name if folder.parent.name == "snapshots" else folder.name


def qwen_shape(config: dict, block: int | None) -> MoEShape:
    """The net's shape from a Qwen2/Qwen3 config: MoENet's, every layer dense, RoPE over the whole
    head, query/key norms for Qwen3 only. UnsupportedModel naming the first key it cannot run."""
    family = FAMILY_NAMES.get(str(config.get("model_type")), "Qwen")
    wants = {"hidden_act": "silu", "use_sliding_window": False}
    for key, want in wants.items():
        if config.get(key, want) != want:
            raise UnsupportedModel(f"{family} config {key}={config[key]!r}: Sharpen runs only {key}={want!r}")
    scaling = dict(config.get("rope_scaling") or {}) | dict(config.get("rope_parameters") or {})
    if scaling.get("rope_type", scaling.get("type", "default")) != "default":
        raise UnsupportedModel(f"{family} config rope_scaling={scaling!r}: Sharpen has plain RoPE only")
    qwen3 = config.get("model_type") in QWEN3_TYPES
    # Older configs say rope_theta; transformers 5 writes rope_parameters.
    theta = config.get("rope_theta") or (config.get("rope_parameters") or {}).get("rope_theta") or 10000.0
    width, heads = int(config["hidden_size"]), int(config["num_attention_heads"])
    bias = bool(config.get("attention_bias", False))
    layers, head_dim = int(config["num_hidden_layers"]), int(config.get("head_dim") or width // heads)
    return MoEShape(
        vocab=int(config["vocab_size"]), width=width, layers=layers, heads=heads,
        kv_heads=int(config.get("num_key_value_heads") or heads), head_dim=head_dim, rotary_dim=head_dim,
        dense_ffn=int(config["intermediate_size"]), expert_ffn=0, shared_ffn=0,
        dense_layers=frozenset(range(layers)), routing=NO_EXPERTS, qk_norm=qwen3,
        qkv_bias=bias if qwen3 else True, out_bias=bias if qwen3 else False,
        rope_theta=float(theta), norm_eps=float(config.get("rms_norm_eps", 1e-6)),
        tie_embeddings=bool(config.get("tie_word_embeddings", False)),
        max_length=int(config.get("max_position_embeddings", 4096)), attention_block=block)


def load(folder: Path, config: dict, device: torch.device, dtype: torch.dtype | None) -> LlamaDiffusionLM:
    """An a2d-qwen2/a2d-qwen3/SDAR folder as a mask-noise DiffusionLM (position-aligned head);
    block-causal ones run without the context cache (it assumes bidirectional attention)."""
    block = attention_block(folder, config)
    shape = qwen_shape(config, block)
    family = FAMILY_NAMES.get(str(config.get("model_type")), "Qwen")
    if block is not None and family != "SDAR":
        family += " (BD3LM)"
    model = from_checkpoint(folder, config, shape, read_safetensors(folder, device), QWEN_NAMES.ours,
                            device=device, dtype=dtype, family=family, mask_names=["<|mask|>", "<|MASK|>"],
                            mask_fallback=None, shifted=False, make=MoENet)
    model.supports_cache = block is None
    return model
