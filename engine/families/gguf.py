"""Reading a llama-architecture GGUF file (llama.cpp's format): weights and tokenizer.

Used by the bundled model (SmolLM2-135M ships as a GGUF). Why not transformers' GGUF loading
(`from_pretrained(..., gguf_file=...)`): it needs accelerate, is several times slower, and builds
transformers' own causal Llama class, whose weights would then be renamed for LlamaNet anyway (the
bidirectional net the sampler runs); this reader hands LlamaNet its own names directly, once, and
bundled.py caches the result as safetensors.
"""
from __future__ import annotations

import numpy as np
import torch

from .llama_net import LlamaShape
from .names import NameTable, per_block

# llama.cpp's tensor names; rope_freqs is a precomputed table we do not need.
GGUF_NAMES = NameTable("llama GGUF", {
    "token_embd.weight": "embed.weight", "output_norm.weight": "norm.weight",
    "output.weight": "head.weight", "rope_freqs.weight": None,
    **per_block("blk.{}", {
        "attn_norm": "attn_norm", "ffn_norm": "mlp_norm", "attn_q": "attn.q", "attn_k": "attn.k",
        "attn_v": "attn.v", "attn_output": "attn.o", "ffn_gate": "mlp.gate", "ffn_up": "mlp.up",
        "ffn_down": "mlp.down"}),
})


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


def gguf_chat_template(path) -> str | None:
    """The chat template in a GGUF file's metadata, None without one."""
    import gguf

    return _field(gguf.GGUFReader(path), "tokenizer.chat_template")


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
        name = GGUF_NAMES.ours(t.name)
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
    out = PreTrainedTokenizerFast(tokenizer_object=tok, additional_special_tokens=others,
                                  model_max_length=int(_field(reader, "llama.context_length", 4096)),
                                  **roles)
    out.chat_template = _field(reader, "tokenizer.chat_template")  # instruction edits (engine/instruct.py)
    return out
