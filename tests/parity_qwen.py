"""Tiny checkpoints of the Qwen diffusion conversions in their own layouts (dllm's a2d-qwen2 /
a2d-qwen3 MDLM and BD3LM, SDAR, Open-dCoder), for the parity fixtures tests/parity_fixtures_qwen.py
computes with their reference code. Built like tests/parity.py's families (same seed, roles and
`improbable` channel), with names written from the reference modelling files.

The released models tie nothing but Qwen2.5-0.5B/Qwen3-0.6B (and so Open-dCoder and dllm's 0.6B)
tie the head to the embedding; these tiny ones keep a head of their own, because the channel that
makes special ids improbable needs head weights apart from the embedding (tests/parity.py).
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable

from tests.parity import TinyFamily, ends, layer_norms, swiglu

D, FFN, LAYERS, HEADS, KV, VOCAB, WORDS = 64, 96, 2, 4, 2, 256, 200
HEAD_DIM = 32  # Qwen3's head_dim is its own (0.6B: 16 heads x 128 over width 1024); here 4 x 32 over 64
SDAR_BLOCK = 4  # SDAR's config block_size
SPECIALS = {"eos": "<|endoftext|>", "start": "<|im_start|>", "end": "<|im_end|>", "mask": "<|mask|>"}


def qwen_tokenizer_config(specials: dict[str, str]) -> dict:
    """Qwen's tokenizer keys: no bos token, end-of-text pads, the chat markers are specials."""
    return {"tokenizer_class": "PreTrainedTokenizerFast", "bos_token": None, "eos_token": specials["eos"],
            "pad_token": specials["eos"], "mask_token": specials["mask"],
            "additional_special_tokens": [specials["start"], specials["end"]]}


def qwen_layout(qwen3: bool) -> dict:
    """Hugging Face Qwen2 (q/k/v biases) or Qwen3 (q_norm/k_norm, own head_dim) tensor layout."""
    hd = HEAD_DIM if qwen3 else D // HEADS
    layout = ends("model.embed_tokens.weight", VOCAB, D)
    for i in range(LAYERS):
        b = f"model.layers.{i}."
        a = b + "self_attn."
        layout |= layer_norms(b, D) | swiglu(b + "mlp.", D, FFN) | {
            a + "q_proj.weight": ((HEADS * hd, D), "matrix"), a + "k_proj.weight": ((KV * hd, D), "matrix"),
            a + "v_proj.weight": ((KV * hd, D), "matrix"), a + "o_proj.weight": ((D, HEADS * hd), "writer")}
        if qwen3:
            layout |= {a + "q_norm.weight": ((hd,), "norm"), a + "k_norm.weight": ((hd,), "norm")}
        else:
            layout |= {a + f"{p}_proj.bias": ((n * hd,), "bias") for p, n in (("q", HEADS), ("k", KV), ("v", KV))}
    return layout


def qwen_config(model_type: str, qwen3: bool) -> dict:
    """Qwen2Config / Qwen3Config keys as the conversions save them, scaled down."""
    ids = {role: WORDS + i for i, role in enumerate(SPECIALS)}
    config = {
        "model_type": model_type, "architectures": None, "vocab_size": VOCAB, "hidden_size": D,
        "intermediate_size": FFN, "num_hidden_layers": LAYERS, "num_attention_heads": HEADS,
        "num_key_value_heads": KV, "hidden_act": "silu", "max_position_embeddings": 64,
        "rms_norm_eps": 1e-6, "rope_theta": 1000000.0, "rope_scaling": None, "tie_word_embeddings": False,
        "use_sliding_window": False, "sliding_window": None, "max_window_layers": LAYERS,
        "attention_dropout": 0.0, "use_cache": False, "torch_dtype": "float32",
        "bos_token_id": ids["eos"], "eos_token_id": ids["eos"], "pad_token_id": ids["eos"]}
    if qwen3:
        config |= {"head_dim": HEAD_DIM, "attention_bias": False}
    return config


def a2d_family(name: str, model_type: str, qwen3: bool) -> TinyFamily:
    """dllm's A2D conversion: the Qwen config with model_type a2d-*, no architectures (its convert.py
    deletes them), the tokenizer with <|mask|> added (dllm.utils.get_tokenizer)."""
    return TinyFamily(name, qwen_config(model_type, qwen3), qwen_layout(qwen3), WORDS, SPECIALS,
                      qwen_tokenizer_config(SPECIALS))


def a2d_qwen3_family() -> TinyFamily:
    return a2d_family("a2d_qwen3", "a2d-qwen3", qwen3=True)


def a2d_qwen2_family() -> TinyFamily:
    return a2d_family("a2d_qwen2", "a2d-qwen2", qwen3=False)


def a2d_qwen3_bd3lm_family() -> TinyFamily:
    """The BD3LM conversion: the same files; the folder's name says bd3lm, as the hub's does."""
    return a2d_family("a2d_qwen3_bd3lm", "a2d-qwen3", qwen3=True)


def sdar_family() -> TinyFamily:
    """SDAR-*-Chat's config keys (model_type sdar, block_size, mask_token_id; Qwen3 layout)."""
    specials = SPECIALS | {"mask": "<|MASK|>"}
    config = qwen_config("sdar", qwen3=True) | {
        "architectures": ["SDARForCausalLM"], "block_size": SDAR_BLOCK,
        "mask_token_id": WORDS + list(specials).index("mask"), "fuse_cross_entropy": False,
        "attn_implementation": "sdpa", "debug": False, "micro_forward": False, "skip_checkpoint": False,
        "ep_size": 1, "use_deepep": False}
    return TinyFamily("sdar", config, qwen_layout(qwen3=True), WORDS, specials, qwen_tokenizer_config(specials))


def open_dcoder_family() -> TinyFamily:
    """Open-dCoder's config: model_type qwen2 with the auto_map its upload script writes."""
    config = qwen_config("qwen2", qwen3=False) | {
        "architectures": ["Qwen2ForCausalLM"], "trust_remote_code": True,
        "auto_map": {"AutoModelForCausalLM": "modeling_qwen2.Qwen2ForCausalLM"}}
    family = a2d_family("open_dcoder", "qwen2", qwen3=False)
    return dataclasses.replace(family, config=config)


FAMILIES: dict[str, Callable[[], TinyFamily]] = {
    "a2d_qwen3": a2d_qwen3_family, "a2d_qwen2": a2d_qwen2_family, "a2d_qwen3_bd3lm": a2d_qwen3_bd3lm_family,
    "sdar": sdar_family, "open_dcoder": open_dcoder_family}
SHIFTED = ("open_dcoder",)            # position i read from raw logits i-1 (Dream's shift)
BLOCKS = {"a2d_qwen3_bd3lm": 32, "sdar": SDAR_BLOCK}  # block-causal attention's block size
