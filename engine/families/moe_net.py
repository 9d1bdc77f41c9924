"""The decoder the LLaDA mixture-of-experts families share: Llama blocks whose feed-forward is a
mixture of experts (engine.families.moe) on most layers, with per-head query/key RMSNorm, rotary
embedding on part of each head, and optionally block-causal attention (LLaDA 2.x). The dense Qwen
conversions (engine/families/qwen.py) run on it too, with every layer dense.

It offers LlamaNet's interface (`hidden`, `project`, `embed`, `shape`), so LlamaDiffusionLM wraps
it unchanged; checkpoint names are mapped by each family's NameTable.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .llama_net import KV, MLP, RMSNorm, apply_rope, rope_tables
from .moe import Routing, SparseMoE


@dataclass(frozen=True)
class MoEShape:
    """Everything that fixes the size and wiring of a LLaDA MoE decoder."""

    vocab: int
    width: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    rotary_dim: int             # leading dims of each head that RoPE rotates (the rest pass through)
    dense_ffn: int              # feed-forward width of the dense layers
    expert_ffn: int             # of each routed expert
    shared_ffn: int             # of the shared expert (0: none)
    dense_layers: frozenset[int]  # layers with a plain SwiGLU instead of experts
    routing: Routing
    rope_theta: float = 10000.0
    norm_eps: float = 1e-5
    qkv_bias: bool = False
    out_bias: bool = False
    tie_embeddings: bool = False
    max_length: int = 4096
    attention_block: int | None = None  # block-causal attention over blocks of this many tokens
    qk_norm: bool = True                # RMSNorm on each query and key head (Qwen2's dense conversions: none)

    def __post_init__(self) -> None:
        if self.heads % self.kv_heads:
            raise ValueError(f"{self.heads} heads do not split into {self.kv_heads} key/value groups")
        if self.rotary_dim % 2 or not 0 < self.rotary_dim <= self.head_dim:
            raise ValueError(f"rotary dim {self.rotary_dim} must be even and at most head_dim {self.head_dim}")


class NormedAttention(nn.Module):
    """Grouped-query attention with RMSNorm on each query and key head before RoPE (where
    `shape.qk_norm`), RoPE on the first `rotary_dim` dims of a head. Returns this chunk's
    keys/values like llama_net.Attention."""

    def __init__(self, shape: MoEShape):
        super().__init__()
        hd = shape.head_dim
        self.heads, self.kv_heads, self.head_dim, self.rotary_dim = shape.heads, shape.kv_heads, hd, shape.rotary_dim
        self.q = nn.Linear(shape.width, shape.heads * hd, bias=shape.qkv_bias)
        self.k = nn.Linear(shape.width, shape.kv_heads * hd, bias=shape.qkv_bias)
        self.v = nn.Linear(shape.width, shape.kv_heads * hd, bias=shape.qkv_bias)
        self.o = nn.Linear(shape.heads * hd, shape.width, bias=shape.out_bias)
        self.q_norm: nn.Module = RMSNorm(hd, shape.norm_eps) if shape.qk_norm else nn.Identity()
        self.k_norm: nn.Module = RMSNorm(hd, shape.norm_eps) if shape.qk_norm else nn.Identity()

    def rotate(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        """RoPE on the leading rotary dims of (B, H, L, D) heads; the rest pass unchanged."""
        r = self.rotary_dim
        return torch.cat([apply_rope(x[..., :r], cos, sin), x[..., r:]], dim=-1)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, *,
                mask: torch.Tensor | None = None, context: KV | None = None) -> tuple[torch.Tensor, KV]:
        B, L, _ = x.shape
        q = self.q_norm(self.q(x).view(B, L, self.heads, self.head_dim)).transpose(1, 2)       # (B, H, L, D)
        k = self.k_norm(self.k(x).view(B, L, self.kv_heads, self.head_dim)).transpose(1, 2)    # (B, Hkv, L, D)
        v = self.v(x).view(B, L, self.kv_heads, self.head_dim).transpose(1, 2)
        q, k = self.rotate(q, cos, sin), self.rotate(k, cos, sin)
        kv = (k, v)
        if context is not None:
            k, v = torch.cat([context[0], k], dim=2), torch.cat([context[1], v], dim=2)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=self.heads != self.kv_heads)
        return self.o(out.transpose(1, 2).reshape(B, L, -1)), kv


class MoEBlock(nn.Module):
    def __init__(self, shape: MoEShape, dense: bool):
        super().__init__()
        self.attn_norm = RMSNorm(shape.width, shape.norm_eps)
        self.attn = NormedAttention(shape)
        self.mlp_norm = RMSNorm(shape.width, shape.norm_eps)
        self.mlp: nn.Module = (MLP(shape.width, shape.dense_ffn) if dense else
                               SparseMoE(shape.width, shape.expert_ffn, shape.routing, shape.shared_ffn))

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, *,
                mask: torch.Tensor | None = None, context: KV | None = None) -> tuple[torch.Tensor, KV]:
        a, kv = self.attn(self.attn_norm(x), cos, sin, mask=mask, context=context)
        x = x + a
        return x + self.mlp(self.mlp_norm(x)), kv


def block_causal_mask(positions: torch.Tensor, block: int) -> torch.Tensor:
    """(L, L) bool, True where query i may attend key j: j's block is not after i's (LLaDA 2.x's
    block-diffusion attention: bidirectional inside a block, causal across blocks)."""
    blocks = positions // block
    return blocks[None, :] <= blocks[:, None]


class MoENet(nn.Module):
    """Embedding, MoE blocks, final norm, head; bidirectional, or block-causal where the shape says."""

    def __init__(self, shape: MoEShape):
        super().__init__()
        self.shape = shape
        self.embed = nn.Embedding(shape.vocab, shape.width)
        self.blocks = nn.ModuleList(MoEBlock(shape, i in shape.dense_layers) for i in range(shape.layers))
        self.norm = RMSNorm(shape.width, shape.norm_eps)
        self.head = None if shape.tie_embeddings else nn.Linear(shape.width, shape.vocab, bias=False)

    def forward(self, ids: torch.Tensor, positions: torch.Tensor | None = None) -> torch.Tensor:
        """(B, L) ids -> (B, L, V) raw logits."""
        return self.project(self.hidden(ids, positions))

    def hidden(self, ids: torch.Tensor, positions: torch.Tensor | None = None, *, causal: bool = False,
               contexts: list[KV] | None = None, kv_out: list[KV] | None = None) -> torch.Tensor:
        """(B, L) ids -> (B, L, width) final-normed hidden states; arguments as LlamaNet.hidden.
        Block-causal nets take no `contexts` (their cache would need the mask across chunks)."""
        if causal:
            raise ValueError("the MoE families have no causal (autoregressive) view")
        if contexts is not None and self.shape.attention_block is not None:
            raise ValueError("block-causal attention over cached context is not supported")
        B, L = ids.shape
        if positions is None:
            positions = torch.arange(L, device=ids.device)
        mask = None
        if self.shape.attention_block is not None:
            mask = block_causal_mask(positions, self.shape.attention_block)     # (L, L)
        x = self.embed(ids)                                                      # (B, L, d)
        cos, sin = rope_tables(positions.expand(B, L), self.shape.rotary_dim, self.shape.rope_theta, x.dtype)
        for i, block in enumerate(self.blocks):
            x, kv = block(x, cos, sin, mask=mask, context=None if contexts is None else contexts[i])
            if kv_out is not None:
                kv_out.append(kv)
        return self.norm(x)

    def project(self, h: torch.Tensor) -> torch.Tensor:
        return F.linear(h, self.embed.weight if self.head is None else self.head.weight)
