"""The Llama/Qwen2 decoder in torch, run bidirectionally: its shape, norm, rotary tables, attention,
feed-forward, blocks and net. It imports no other family module; the model that wraps it
(LlamaDiffusionLM) lives in engine/families/llama.py."""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

KV = tuple[torch.Tensor, torch.Tensor]  # keys, values: (B, kv_heads, L, head_dim) each


@dataclass(frozen=True)
class LlamaShape:
    """Everything that fixes the size of a Llama-style decoder (LLaDA, Dream and SmolLM2 all are)."""

    vocab: int
    width: int
    layers: int
    heads: int
    kv_heads: int
    ffn: int
    rope_theta: float = 10000.0
    norm_eps: float = 1e-5
    qkv_bias: bool = False
    tie_embeddings: bool = False
    max_length: int = 4096

    def __post_init__(self) -> None:
        if self.width % self.heads or self.heads % self.kv_heads:
            raise ValueError(f"width {self.width} must split into {self.heads} heads, and the heads "
                             f"into {self.kv_heads} key/value groups")

    @property
    def head_dim(self) -> int:
        return self.width // self.heads


class RMSNorm(nn.Module):
    """Root-mean-square norm, computed in float32 like the reference implementations."""

    def __init__(self, width: int, eps: float):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(width))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x32 = x.float()
        x32 = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * x32.to(x.dtype)


def rope_tables(positions: torch.Tensor, head_dim: int, theta: float,
                dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """cos, sin (B, 1, L, head_dim) for (B, L) positions; halves layout (rotate_half), as in HF."""
    inv_freq = 1.0 / theta ** (torch.arange(0, head_dim, 2, device=positions.device).float() / head_dim)
    angles = positions.float()[..., None] * inv_freq                            # (B, L, D/2)
    angles = torch.cat([angles, angles], dim=-1)[:, None]                       # (B, 1, L, D)
    return angles.cos().to(dtype), angles.sin().to(dtype)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate (B, H, L, D) queries or keys by their positions."""
    a, b = x.chunk(2, dim=-1)
    return x * cos + torch.cat([-b, a], dim=-1) * sin


class Attention(nn.Module):
    """Grouped-query attention. Returns this chunk's keys/values so that a caller may later feed
    them back as `context` (precomputed keys/values of other positions, e.g. a frozen prefix)."""

    def __init__(self, shape: LlamaShape):
        super().__init__()
        d, hd = shape.width, shape.head_dim
        self.heads, self.kv_heads, self.head_dim = shape.heads, shape.kv_heads, hd
        self.q = nn.Linear(d, shape.heads * hd, bias=shape.qkv_bias)
        self.k = nn.Linear(d, shape.kv_heads * hd, bias=shape.qkv_bias)
        self.v = nn.Linear(d, shape.kv_heads * hd, bias=shape.qkv_bias)
        self.o = nn.Linear(shape.heads * hd, d, bias=False)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, *, causal: bool = False,
                context: KV | None = None, mask: torch.Tensor | None = None) -> tuple[torch.Tensor, KV]:
        """`mask`: bool, broadcastable to (B, H, L, Lc + L) over [context keys; own keys]; False
        keys are not attended to (the padding of a static-shape forward, engine/families/compiled.py)."""
        B, L, _ = x.shape
        q = self.q(x).view(B, L, self.heads, self.head_dim).transpose(1, 2)      # (B, H, L, D)
        k = self.k(x).view(B, L, self.kv_heads, self.head_dim).transpose(1, 2)   # (B, Hkv, L, D)
        v = self.v(x).view(B, L, self.kv_heads, self.head_dim).transpose(1, 2)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        kv = (k, v)
        if context is not None:
            if causal:
                raise ValueError("causal attention over context keys/values is not supported")
            k, v = torch.cat([context[0], k], dim=2), torch.cat([context[1], v], dim=2)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal,
                                             enable_gqa=self.heads != self.kv_heads)
        return self.o(out.transpose(1, 2).reshape(B, L, -1)), kv


class MLP(nn.Module):
    """SwiGLU feed-forward: down(silu(gate(x)) * up(x))."""

    def __init__(self, width: int, ffn: int):
        super().__init__()
        self.gate = nn.Linear(width, ffn, bias=False)
        self.up = nn.Linear(width, ffn, bias=False)
        self.down = nn.Linear(ffn, width, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(F.silu(self.gate(x)) * self.up(x))


class Block(nn.Module):
    def __init__(self, shape: LlamaShape):
        super().__init__()
        self.attn_norm = RMSNorm(shape.width, shape.norm_eps)
        self.attn = Attention(shape)
        self.mlp_norm = RMSNorm(shape.width, shape.norm_eps)
        self.mlp = MLP(shape.width, shape.ffn)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, *, causal: bool = False,
                context: KV | None = None, mask: torch.Tensor | None = None) -> tuple[torch.Tensor, KV]:
        a, kv = self.attn(self.attn_norm(x), cos, sin, causal=causal, context=context, mask=mask)
        x = x + a
        return x + self.mlp(self.mlp_norm(x)), kv


class LlamaNet(nn.Module):
    """Embedding, blocks, final norm, head. Bidirectional unless `causal=True` (used by tests to
    compare with Hugging Face's causal models, and by callers that want the AR view)."""

    def __init__(self, shape: LlamaShape):
        super().__init__()
        self.shape = shape
        self.embed = nn.Embedding(shape.vocab, shape.width)
        self.blocks = nn.ModuleList(Block(shape) for _ in range(shape.layers))
        self.norm = RMSNorm(shape.width, shape.norm_eps)
        self.head = None if shape.tie_embeddings else nn.Linear(shape.width, shape.vocab, bias=False)

    def forward(self, ids: torch.Tensor, positions: torch.Tensor | None = None, *,
                causal: bool = False) -> torch.Tensor:
        """(B, L) ids, optional (B, L) or (L,) position ids -> (B, L, V) raw logits."""
        return self.project(self.hidden(ids, positions, causal=causal))

    def hidden(self, ids: torch.Tensor, positions: torch.Tensor | None = None, *,
               causal: bool = False, contexts: list[KV] | None = None,
               kv_out: list[KV] | None = None, mask: torch.Tensor | None = None) -> torch.Tensor:
        """(B, L) ids -> (B, L, width) final-normed hidden states. `contexts`: one KV per block of
        other positions to attend to as well; `kv_out`: a list that receives each block's KV;
        `mask`: which of the Lc + L keys may be attended to, as Attention takes it (None: all)."""
        B, L = ids.shape
        if positions is None:
            positions = torch.arange(L, device=ids.device)
        positions = positions.expand(B, L)                                       # (B, L)
        x = self.embed(ids)                                                      # (B, L, d)
        cos, sin = rope_tables(positions, self.shape.head_dim, self.shape.rope_theta, x.dtype)
        for i, block in enumerate(self.blocks):
            x, kv = block(x, cos, sin, causal=causal, context=None if contexts is None else contexts[i],
                          mask=mask)
            if kv_out is not None:
                kv_out.append(kv)
        return self.norm(x)

    def project(self, h: torch.Tensor) -> torch.Tensor:
        weight = self.embed.weight if self.head is None else self.head.weight
        return F.linear(h, weight)
