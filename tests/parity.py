"""Tiny LLaDA, Dream, LLaDA-MoE and LLaDA 2 checkpoints in each family's own layout, rebuilt from
a seed, and the parity fixtures their reference code computed on them (tests/parity_fixtures.py).

The layouts below are written from the reference modelling files (LLaDA's OLMo-style names,
Dream's and LLaDA-MoE's Qwen2-style ones, LLaDA 2's BailingMoE ones), not from Sharpen's name
tables, so a wrong entry in those tables shows up as a logits mismatch instead of being written
and read back the same wrong way (the reference loads each checkpoint strictly).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

FIXTURES = Path(__file__).parent / "fixtures" / "parity"
SEED = 20261127
CONSTANT_CHANNEL = 0   # hidden channel that stays 1.0 in the residual stream (see `improbable`)
BANNED_LOGIT = -60.0   # head weight on that channel for ids no trained model predicts

Draw = Callable[[torch.Generator, tuple[int, ...]], torch.Tensor]


def _normal(scale: Callable[[tuple[int, ...]], float]) -> Draw:
    return lambda g, shape: torch.randn(shape, generator=g) * scale(shape)


DRAWS: dict[str, Draw] = {  # a tensor's role -> how it is drawn
    "embed": _normal(lambda s: 1.0),
    "norm": lambda g, shape: 1.0 + 0.1 * torch.randn(shape, generator=g),
    "matrix": _normal(lambda s: s[-1] ** -0.5),   # in_features ** -0.5: unit-scale outputs
    "writer": _normal(lambda s: s[-1] ** -0.5),   # writes into the residual stream
    "bias": _normal(lambda s: 0.1),
    "final_norm": lambda g, shape: 1.0 + 0.1 * torch.randn(shape, generator=g),
    "head": _normal(lambda s: 0.6),                  # logits ~N(0, 5): decisive predictions
}


@dataclass(frozen=True)
class TinyFamily:
    """One family's tiny checkpoint: its config.json, tensor layout and special tokens."""

    name: str
    config: dict
    layout: dict[str, tuple[tuple[int, ...], str]]  # their tensor name -> (shape, role)
    words: int                                      # ordinary tokens, ids 0..words-1
    specials: dict[str, str]                        # role -> token text, ids after the words
    tokenizer_config: dict
    generation_config: dict | None = None           # generation_config.json, where the family has one
    likely: tuple[tuple[str, float], ...] = ()      # special role -> its head weight on CONSTANT_CHANNEL

    def special_ids(self) -> dict[str, int]:
        return {role: self.words + i for i, role in enumerate(self.specials)}

    @property
    def vocab(self) -> int:
        return int(self.config.get("embedding_size") or self.config["vocab_size"])

    def improbable_ids(self) -> list[int]:
        """Every special token but the `likely` ones, and every embedding row past the tokenizer:
        ids a trained model gives ~0 probability and Sharpen bans outright, while the reference
        samplers do not."""
        likely = {role for role, _ in self.likely}
        specials = [i for role, i in self.special_ids().items() if role not in likely]
        return sorted(specials) + list(range(self.words + len(self.specials), self.vocab))


def llada_family() -> TinyFamily:
    """LLaDA-8B's config keys and OLMo-style names, scaled down: 2 layers, width 64, GQA 4/2
    heads, embedding rows padded past the tokenizer to a multiple of 128 as LLaDA's are."""
    d, ffn, layers, heads, kv, vocab = 64, 96, 2, 4, 2, 256
    words = 200
    specials = {"bos": "<|startoftext|>", "eos": "<|endoftext|>", "eot": "<|eot_id|>", "mask": "<|mdm_mask|>"}
    ids = {role: words + i for i, role in enumerate(specials)}
    config = {
        "model_type": "llada", "architectures": ["LLaDAModelLM"], "activation_type": "silu",
        "alibi": False, "alibi_bias_max": 8.0, "attention_dropout": 0.0, "attention_layer_norm": False,
        "attention_layer_norm_with_affine": True, "bias_for_layer_norm": False, "block_group_size": 1,
        "block_type": "llama", "d_model": d, "embedding_dropout": 0.0, "embedding_size": vocab,
        "eos_token_id": ids["eos"], "pad_token_id": ids["eos"], "mask_token_id": ids["mask"],
        "flash_attention": False, "include_bias": False, "include_qkv_bias": False, "init_device": "cpu",
        "init_fn": "mitchell", "init_std": 0.02, "input_emb_norm": False, "layer_norm_type": "rms",
        "layer_norm_with_affine": True, "max_sequence_length": 64, "mlp_hidden_size": ffn, "mlp_ratio": 4,
        "multi_query_attention": None, "n_heads": heads, "n_kv_heads": kv, "n_layers": layers,
        "residual_dropout": 0.0, "rms_norm_eps": 1e-5, "rope": True, "rope_full_precision": True,
        "rope_theta": 500000.0, "scale_logits": False, "use_cache": False, "vocab_size": vocab,
        "weight_tying": False}
    hd = d // heads
    layout = {"model.transformer.wte.weight": ((vocab, d), "embed"),
              "model.transformer.ln_f.weight": ((d,), "final_norm"),
              "model.transformer.ff_out.weight": ((vocab, d), "head")}
    for i in range(layers):
        b = f"model.transformer.blocks.{i}."
        layout |= {b + "attn_norm.weight": ((d,), "norm"), b + "ff_norm.weight": ((d,), "norm"),
                   b + "q_proj.weight": ((d, d), "matrix"), b + "k_proj.weight": ((kv * hd, d), "matrix"),
                   b + "v_proj.weight": ((kv * hd, d), "matrix"), b + "attn_out.weight": ((d, d), "writer"),
                   b + "ff_proj.weight": ((ffn, d), "matrix"), b + "up_proj.weight": ((ffn, d), "matrix"),
                   b + "ff_out.weight": ((d, ffn), "writer")}
    tok_config = {"tokenizer_class": "PreTrainedTokenizerFast", "bos_token": specials["bos"],
                  "eos_token": specials["eos"], "pad_token": specials["eos"], "mask_token": specials["mask"],
                  "additional_special_tokens": [specials["eot"]]}
    return TinyFamily("llada", config, layout, words, specials, tok_config)


def dream_family() -> TinyFamily:
    """Dream-v0's (Qwen2) config keys and names, scaled down; q/k/v carry biases as Dream's
    attention always does; the vocabulary is padded past the tokenizer as Dream-7B's is."""
    d, ffn, layers, heads, kv, vocab = 64, 96, 2, 4, 2, 256
    words = 200
    specials = {"eos": "<|endoftext|>", "bos": "<|beginoftext|>", "mask": "<|mask|>"}
    ids = {role: words + i for i, role in enumerate(specials)}
    config = {
        "model_type": "Dream", "architectures": ["DreamModel"], "attention_dropout": 0.0,
        "bos_token_id": ids["bos"], "eos_token_id": ids["eos"], "pad_token_id": ids["eos"],
        "mask_token_id": ids["mask"], "hidden_act": "silu", "hidden_size": d, "initializer_range": 0.02,
        "intermediate_size": ffn, "max_position_embeddings": 64, "max_window_layers": layers,
        "num_attention_heads": heads, "num_hidden_layers": layers, "num_key_value_heads": kv,
        "rms_norm_eps": 1e-6, "rope_scaling": None, "rope_theta": 1000000.0, "sliding_window": None,
        "tie_word_embeddings": False, "torch_dtype": "float32", "use_cache": False,
        "use_sliding_window": False, "vocab_size": vocab}
    hd = d // heads
    layout = ends("model.embed_tokens.weight", vocab, d)
    for i in range(layers):
        b = f"model.layers.{i}."
        layout |= {b + "input_layernorm.weight": ((d,), "norm"),
                   b + "post_attention_layernorm.weight": ((d,), "norm"),
                   b + "self_attn.q_proj.weight": ((d, d), "matrix"), b + "self_attn.q_proj.bias": ((d,), "bias"),
                   b + "self_attn.k_proj.weight": ((kv * hd, d), "matrix"),
                   b + "self_attn.k_proj.bias": ((kv * hd,), "bias"),
                   b + "self_attn.v_proj.weight": ((kv * hd, d), "matrix"),
                   b + "self_attn.v_proj.bias": ((kv * hd,), "bias"),
                   b + "self_attn.o_proj.weight": ((d, d), "writer"),
                   b + "mlp.gate_proj.weight": ((ffn, d), "matrix"), b + "mlp.up_proj.weight": ((ffn, d), "matrix"),
                   b + "mlp.down_proj.weight": ((d, ffn), "writer")}
    # Dream ships its own tokenizer class (remote code); its tokenizer.json is a plain fast one.
    tok_config = {"tokenizer_class": "DreamTokenizer",
                  "auto_map": {"AutoTokenizer": ["tokenization_dream.DreamTokenizer", None]},
                  "bos_token": specials["bos"], "eos_token": specials["eos"], "pad_token": specials["eos"],
                  "mask_token": specials["mask"]}
    return TinyFamily("dream", config, layout, words, specials, tok_config)


def swiglu(prefix: str, d: int, ffn: int) -> dict:
    """A Hugging Face-named SwiGLU feed-forward's tensors under `prefix`."""
    return {prefix + "gate_proj.weight": ((ffn, d), "matrix"), prefix + "up_proj.weight": ((ffn, d), "matrix"),
            prefix + "down_proj.weight": ((d, ffn), "writer")}


def moe_layer(prefix: str, d: int, ffn: int, experts: int, names: dict[str, str]) -> dict:
    """An MoE feed-forward's tensors: router, per-expert and shared SwiGLUs (`names` says where
    each family keeps them), and the router's expert bias."""
    layout = {prefix + names["router"]: ((experts, d), "matrix"), prefix + names["bias"]: ((experts,), "bias")}
    for e in range(experts):
        layout |= swiglu(f"{prefix}{names['experts']}.{e}.", d, ffn)
    return layout | swiglu(f"{prefix}{names['shared']}.", d, ffn)


def ends(embedding: str, vocab: int, d: int) -> dict:
    """The tensors around the blocks in Hugging Face names: embedding, final norm, head."""
    return {embedding: ((vocab, d), "embed"), "model.norm.weight": ((d,), "final_norm"),
            "lm_head.weight": ((vocab, d), "head")}


def fast_tokenizer_config(specials: dict[str, str]) -> dict:
    return {"tokenizer_class": "PreTrainedTokenizerFast", "bos_token": specials["bos"],
            "eos_token": specials["eos"], "pad_token": specials["eos"], "mask_token": specials["mask"]}


def layer_norms(prefix: str, d: int) -> dict:
    return {prefix + "input_layernorm.weight": ((d,), "norm"),
            prefix + "post_attention_layernorm.weight": ((d,), "norm")}


def llada_moe_family() -> TinyFamily:
    """LLaDA-MoE-7B-A1B's config keys (model_type "llada" with num_experts, as released) and
    names, scaled down: layer 0 dense, layer 1 four experts (top 2) plus a shared one, softmax
    router with expert bias, query/key norms, RoPE on half of each head."""
    d, ffn, expert_ffn, layers, heads, kv, experts, vocab = 64, 96, 32, 2, 4, 2, 4, 256
    words, hd = 200, d // heads
    specials = {"bos": "<|startoftext|>", "eos": "<|endoftext|>", "mask": "<|mask|>"}
    ids = {role: words + i for i, role in enumerate(specials)}
    config = {
        "model_type": "llada", "architectures": ["LLaDAMoEModelLM"], "vocab_size": vocab, "hidden_size": d,
        "dense_intermediate_size": ffn, "expert_intermediate_size": expert_ffn,
        "shared_expert_intermediate_size": expert_ffn, "num_hidden_layers": layers,
        "num_attention_heads": heads, "num_key_value_heads": kv, "hidden_act": "silu",
        "max_position_embeddings": 64, "rms_norm_eps": 1e-5, "use_cache": False, "tie_word_embeddings": False,
        "rope_theta": 50000.0, "partial_rotary_factor": 0.5, "rope_scaling": None, "attention_bias": False,
        "attention_dropout": 0.0, "clip_qkv": None, "num_experts_per_tok": 2, "num_experts": experts,
        "norm_topk_prob": False, "qk_layernorm": True, "moe_layer_freq": [0, 1],
        "moe_router_enable_expert_bias": True, "moe_router_score_function": "softmax",
        "routed_scaling_factor": 1, "bos_token_id": ids["bos"], "eos_token_id": ids["eos"],
        "pad_token_id": ids["eos"], "mask_token_id": ids["mask"]}
    layout = ends("model.embed_tokens.weight", vocab, d)
    for i in range(layers):
        b = f"model.layers.{i}."
        a = b + "self_attn."
        layout |= layer_norms(b, d) | {
            a + "q_proj.weight": ((d, d), "matrix"), a + "k_proj.weight": ((kv * hd, d), "matrix"),
            a + "v_proj.weight": ((kv * hd, d), "matrix"), a + "o_proj.weight": ((d, d), "writer"),
            a + "q_norm.weight": ((hd,), "norm"), a + "k_norm.weight": ((hd,), "norm")}
        if config["moe_layer_freq"][i] == 0:
            layout |= swiglu(b + "mlp.", d, ffn)
        else:
            layout |= moe_layer(b, d, expert_ffn, experts, {"router": "mlp.gate.weight", "bias": "mlp.expert_bias",
                                                            "experts": "mlp.experts", "shared": "shared_expert"})
    tok_config = fast_tokenizer_config(specials)
    return TinyFamily("llada_moe", config, layout, words, specials, tok_config)


def llada2_family() -> TinyFamily:
    """LLaDA2.0-mini's config keys (model_type "llada2_moe") and BailingMoE-V2 names, scaled
    down: layer 0 dense, layer 1 eight experts in 4 groups (top 2 groups, top 2 experts) plus a
    shared one, sigmoid router with expert bias and scaling 2.5, fused query_key_value."""
    d, ffn, expert_ffn, layers, heads, kv, experts, vocab = 64, 96, 32, 2, 4, 2, 8, 256
    words, hd = 200, d // heads
    specials = {"bos": "<|startoftext|>", "eos": "<|endoftext|>", "mask": "<|mask|>"}
    ids = {role: words + i for i, role in enumerate(specials)}
    config = {
        "model_type": "llada2_moe", "architectures": ["LLaDA2MoeModelLM"], "vocab_size": vocab,
        "hidden_size": d, "intermediate_size": ffn, "moe_intermediate_size": expert_ffn,
        "num_hidden_layers": layers, "num_attention_heads": heads, "num_key_value_heads": kv, "head_dim": hd,
        "hidden_act": "silu", "use_qkv_bias": False, "use_qk_norm": True, "use_bias": False,
        "rms_norm_eps": 1e-6, "norm_head": False, "tie_word_embeddings": False, "embedding_dropout": 0.0,
        "attention_dropout": 0.0, "output_dropout": 0.0, "max_position_embeddings": 128,
        "rope_theta": 600000.0, "rope_scaling": None, "use_cache": False, "use_sliding_window": False,
        "num_experts": experts, "num_shared_experts": 1, "num_experts_per_tok": 2, "n_group": 4,
        "topk_group": 2, "routed_scaling_factor": 2.5, "first_k_dense_replace": 1,
        "partial_rotary_factor": 0.5, "score_function": "sigmoid", "moe_router_enable_expert_bias": True,
        "num_nextn_predict_layers": 0, "bos_token_id": ids["bos"], "eos_token_id": ids["eos"],
        "pad_token_id": ids["eos"], "mask_token_id": ids["mask"]}
    layout = ends("model.word_embeddings.weight", vocab, d)
    for i in range(layers):
        b = f"model.layers.{i}."
        a = b + "attention."
        layout |= layer_norms(b, d) | {
            a + "query_key_value.weight": (((heads + 2 * kv) * hd, d), "matrix"),
            a + "dense.weight": ((d, d), "writer"), a + "query_layernorm.weight": ((hd,), "norm"),
            a + "key_layernorm.weight": ((hd,), "norm")}
        if i < config["first_k_dense_replace"]:
            layout |= swiglu(b + "mlp.", d, ffn)
        else:
            layout |= moe_layer(b, d, expert_ffn, experts, {"router": "mlp.gate.weight", "bias": "mlp.gate.expert_bias",
                                                            "experts": "mlp.experts", "shared": "mlp.shared_experts"})
    tok_config = fast_tokenizer_config(specials)
    return TinyFamily("llada2", config, layout, words, specials, tok_config)


def dreamon_family(expand_weight: float = 12.0, delete_weight: float = 10.0) -> TinyFamily:
    """DreamOn-v0: Dream's layout and config plus an <|expand|> token (generation_config.json's
    expand_token_id); it deletes with end-of-text, as its own generator does. Both are made likely
    enough (head weights on the constant channel) that a short run expands up to its cap and
    then deletes."""
    dream = dream_family()
    specials = dream.specials | {"expand": "<|expand|>"}
    ids = {role: dream.words + i for i, role in enumerate(specials)}
    generation = {"mask_token_id": ids["mask"], "expand_token_id": ids["expand"], "eos_token_id": ids["eos"],
                  "bos_token_id": ids["bos"], "pad_token_id": ids["eos"]}
    return dataclasses.replace(
        dream, name="dreamon", specials=specials, generation_config=generation,
        tokenizer_config=dream.tokenizer_config | {"additional_special_tokens": [specials["expand"]]},
        likely=(("expand", expand_weight), ("eos", delete_weight)))


FAMILIES: dict[str, Callable[[], TinyFamily]] = {"llada": llada_family, "dream": dream_family,
                                                 "llada_moe": llada_moe_family, "llada2": llada2_family,
                                                 "dreamon": dreamon_family}


def tiny_weights(family: TinyFamily, seed: int = SEED) -> dict[str, torch.Tensor]:
    """Random float32 tensors for every name of the family's layout, drawn in name order from one
    seeded generator, then `improbable` applied."""
    g = torch.Generator().manual_seed(seed)
    state = {name: DRAWS[role](g, shape).float() for name, (shape, role) in sorted(family.layout.items())}
    return improbable(family, state)


def improbable(family: TinyFamily, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Give the special and padding ids ~e^-20 probability, as trained LLaDA/Dream models do.

    Channel CONSTANT_CHANNEL of every embedding is 1 and no block writes to it, so it reaches
    the final norm as a positive constant; the head reads it with weight BANNED_LOGIT for those ids
    and 0 for the others. The reference samplers take an argmax over the whole vocabulary while
    Sharpen bans these ids; this keeps the two comparable (their probability mass is ~1e-9)."""
    c, roles = CONSTANT_CHANNEL, {name: role for name, (_, role) in family.layout.items()}
    for name, t in state.items():
        role = roles[name]
        if role == "embed":
            t[:, c] = 1.0
        elif role == "writer":
            t[c, :] = 0.0
        elif role == "final_norm":
            t[c] = 1.0   # keeps the constant channel's sign
        elif role == "head":
            t[:, c] = 0.0
            t[family.improbable_ids(), c] = BANNED_LOGIT
            for role, weight in family.likely:
                t[family.special_ids()[role], c] = weight
    return state


def fingerprint(state: dict[str, torch.Tensor]) -> str:
    """sha256 over the tensors' names and bytes: says whether a rebuilt checkpoint is the one the
    fixtures were computed on (torch's generator could in principle change between versions)."""
    h = hashlib.sha256()
    for name in sorted(state):
        h.update(name.encode())
        h.update(state[name].contiguous().numpy().tobytes())
    return h.hexdigest()


def tiny_tokenizer(family: TinyFamily):
    """A word-level fast tokenizer: ordinary tokens "t0".."tN", then the family's specials."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {f"t{i}": i for i in range(family.words)}
    vocab |= {text: family.words + i for i, text in enumerate(family.specials.values())}
    tok = Tokenizer(models.WordLevel(vocab, unk_token=family.specials["eos"]))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.decoder = decoders.WordPiece(prefix="##")   # joins tokens with spaces
    cfg = family.tokenizer_config
    extra = {k: cfg[k] for k in ("bos_token", "eos_token", "pad_token", "mask_token") if k in cfg}
    return PreTrainedTokenizerFast(tokenizer_object=tok, additional_special_tokens=cfg.get(
        "additional_special_tokens", []), **extra)


def write_tiny(family: TinyFamily, folder: Path, seed: int = SEED) -> str:
    """Write the family's folder as its users have it (config.json, model.safetensors,
    tokenizer files); returns the weights' fingerprint."""
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    state = tiny_weights(family, seed)
    save_file(state, str(folder / "model.safetensors"), metadata={"format": "pt"})
    (folder / "config.json").write_text(json.dumps(family.config, indent=1))
    tiny_tokenizer(family).save_pretrained(folder)
    tok_config = json.loads((folder / "tokenizer_config.json").read_text()) | family.tokenizer_config
    (folder / "tokenizer_config.json").write_text(json.dumps(tok_config, indent=1))
    if family.generation_config is not None:
        (folder / "generation_config.json").write_text(json.dumps(family.generation_config, indent=1))
    return fingerprint(state)


def fixture_paths(name: str) -> tuple[Path, Path]:
    """(metadata and sampler traces as JSON, logits as safetensors) of family `name`."""
    return FIXTURES / f"{name}.json", FIXTURES / f"{name}.logits.safetensors"
