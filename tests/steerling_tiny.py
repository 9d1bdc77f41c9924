"""A tiny random Steerling checkpoint in the published layout (flat config.json with model_type
"steerling", the package's tensor names, the LM head tied to the embedding), a word-level
tokenizer.json and a concept_labels.csv; rebuilt from a seed, as tests/parity.py does for the
other families. tests/steerling_fixtures.py runs the steerling package on it.

The layout is written from the package's modules (steerling/models/), not from Sharpen's name
table, so a wrong entry in the table shows as a mismatch with the reference."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import torch

from tests.parity import SEED, TinyFamily, fingerprint, tiny_tokenizer

D, HEADS, KV, LAYERS, FFN, WORDS = 64, 4, 2, 2, 96, 200
BLOCK = 16                              # diff_block_size: the inputs cross several blocks
KNOWN, UNKNOWN, RANK = 40, 100, 16      # padded to 48 and 112 rows (pad_multiple 16)
SPECIALS = {"eos": "<|endoftext|>", "pad": "<|pad|>", "bos": "<|bos|>", "endofchunk": "<|endofchunk|>",
            "mask": "<|mask|>"}
IDS = {role: WORDS + i for i, role in enumerate(SPECIALS)}
CONCEPT_NAMES = [f"concept {i}" for i in range(KNOWN)] + [f"unknown {i}" for i in range(UNKNOWN)]

CONFIG = {
    "model_type": "steerling", "architectures": ["SteerlingForCausalLM"], "vocab_size": WORDS + len(SPECIALS),
    "n_layers": LAYERS, "n_head": HEADS, "n_embd": D, "n_kv_heads": KV, "block_size": 256,
    "diff_block_size": BLOCK, "use_rms_norm": True, "norm_eps": 1e-5, "norm_order": "post", "use_qk_norm": True,
    "use_rope": True, "rope_base": 500000.0, "rope_full_precision": True, "clip_qkv": 2.0, "mlp_type": "swiglu",
    "activation": "gelu", "mlp_ratio": 4, "intermediate_size": FFN, "use_bias": False, "weight_sharing": True,
    "pad_token_id": IDS["pad"], "bos_token_id": IDS["bos"], "eos_token_id": IDS["eos"],
    "mask_token_id": IDS["mask"], "endofchunk_token_id": IDS["endofchunk"],
    "n_concepts": KNOWN, "n_unknown_concepts": UNKNOWN, "concept_dim": D, "use_attention_known": False,
    "use_attention_unknown": False, "topk_known": 4, "topk_known_features": 8, "unknown_topk": 12,
    "use_unknown": True, "apply_topk_to_unknown": True, "topk_on_logits": False, "factorize_unknown": True,
    "factorize_rank": RANK, "use_epsilon_correction": True, "concept_block_size": 4096, "pad_multiple": 16,
    "store_unknown_weights": False, "inject_layer": 1, "inject_alpha": 1.0, "torch_dtype": "float32"}


def pad(n: int) -> int:
    return -(-n // 16) * 16


def layout() -> dict[str, tuple[tuple[int, ...], float]]:
    """Every tensor name -> (shape, scale of its normal draw; 0: a norm weight, drawn around 1)."""
    hd = D // HEADS
    out: dict[str, tuple[tuple[int, ...], float]] = {
        "transformer.tok_emb.weight": ((CONFIG["vocab_size"], D), 1.0), "transformer.ln_f.weight": ((D,), 0.0),
        "known_head.concept_embedding.weight": ((pad(KNOWN), D), 0.5),
        "known_head.concept_predictor.weight": ((pad(KNOWN), D), D ** -0.5),
        "unknown_head.embedding_coef.weight": ((pad(UNKNOWN), RANK), 1.0),
        "unknown_head.embedding_basis.weight": ((D, RANK), RANK ** -0.5),
        "unknown_head.predictor_down.weight": ((RANK, D), D ** -0.5),
        "unknown_head.predictor_up.weight": ((pad(UNKNOWN), RANK), RANK ** -0.5)}
    for i in range(LAYERS):
        b = f"transformer.blocks.{i}."
        out |= {b + "attn.c_attn.weight": ((D + 2 * KV * hd, D), D ** -0.5),
                b + "attn.c_proj.weight": ((D, D), D ** -0.5),
                b + "attn.q_norm.weight": ((hd,), 0.0), b + "attn.k_norm.weight": ((hd,), 0.0),
                b + "ln_1.weight": ((D,), 0.0), b + "ln_2.weight": ((D,), 0.0),
                b + "mlp.c_fc.weight": ((2 * FFN, D), D ** -0.5), b + "mlp.c_proj.weight": ((D, FFN), FFN ** -0.5)}
    return out


def tiny_weights(seed: int = SEED) -> dict[str, torch.Tensor]:
    """float32 tensors drawn in name order from one seeded generator."""
    g = torch.Generator().manual_seed(seed)
    return {name: (1.0 + 0.1 * torch.randn(shape, generator=g)) if scale == 0.0
            else torch.randn(shape, generator=g) * scale for name, (shape, scale) in sorted(layout().items())}


def family() -> TinyFamily:
    """The tokenizer's view of the checkpoint (tests.parity's word-level tokenizer, Steerling's specials)."""
    tok_config = {"tokenizer_class": "PreTrainedTokenizerFast", "bos_token": SPECIALS["bos"],
                  "eos_token": SPECIALS["eos"], "pad_token": SPECIALS["pad"], "mask_token": SPECIALS["mask"],
                  "additional_special_tokens": [SPECIALS["endofchunk"]]}
    return TinyFamily("steerling", CONFIG, {}, WORDS, SPECIALS, tok_config)


def write_tiny_steerling(folder: Path, seed: int = SEED) -> str:
    """The folder as a user has it; returns the weights' fingerprint."""
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    state = tiny_weights(seed)
    save_file(state, str(folder / "model.safetensors"), metadata={"format": "pt"})
    (folder / "config.json").write_text(json.dumps(CONFIG, indent=1))
    tiny_tokenizer(family()).save_pretrained(folder)
    with (folder / "concept_labels.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["concept_id", "concept_name", "concept_description", "head"])
        for i, name in enumerate(CONCEPT_NAMES):
            head, cid = ("known", i) if i < KNOWN else ("unknown", i - KNOWN)
            writer.writerow([cid, name, f"the {name} of the tiny checkpoint", head])
    return fingerprint(state)
