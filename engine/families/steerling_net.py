"""Steerling's decoder and concept heads (Guide Labs' block-causal diffusion LM), in Sharpen's names.

The decoder: grouped-query attention from one fused projection (queries, then keys, then values),
every q/k/v value clipped to +-clip_qkv, RMSNorm per query and key head, RoPE over the whole head
(rotate-half layout), block-causal attention (a token sees its own block of `block` tokens and
every earlier one), a SwiGLU whose fused input projection holds the up rows before the gate rows,
and post-norm residuals (x + norm(attn(x)), x + norm(mlp(x))) unless the checkpoint says "pre".

The concept heads read the final-normed hidden state h of a row. Known head: a linear predictor,
sigmoid weights of its top-k concepts (k = topk_features), features = weights @ embeddings. Unknown
head: the same through a rank-r factorisation (logits = up(down(h)), embeddings = coef @ basis).
Logits are lm_head(unknown + epsilon + known) with epsilon = h - (unknown + known), i.e. lm_head(h),
while no known concept is steered; steering sets concepts' weights (the package's steer_known /
steer_unknown) and then drops epsilon. A head with more than LARGE concepts (the released unknown
head) applies a steer as a correction on its top-k features, the others by overriding the dense
weights after their top-`topk` cut, as the reference does.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from . import llama_net
from .moe_net import block_causal_mask

CLAMP = 15.0     # concept logits are clamped to +-15 before the sigmoid (the reference's bound)
LARGE = 50_000   # heads with more concepts never materialise (rows, concepts) weights


@dataclass(frozen=True)
class SteerlingShape:
    """Everything that fixes the size and wiring of a Steerling decoder."""

    block: int                   # diff_block_size: the block-causal attention's block
    vocab: int
    width: int
    layers: int
    heads: int
    kv_heads: int
    ffn: int
    rope_theta: float
    norm_eps: float
    clip_qkv: float | None
    post_norm: bool
    tie_embeddings: bool
    max_length: int

    @property
    def head_dim(self) -> int:
        return self.width // self.heads


@dataclass(frozen=True)
class ConceptShape:
    known: int                   # concepts of the known head (rows padded to pad_multiple)
    unknown: int                 # of the unknown head (0: none)
    padded_known: int
    padded_unknown: int
    known_topk: int              # topk_known: the weights a steered known head keeps
    known_features: int          # topk_known_features: the weights an unsteered one sums
    unknown_topk: int
    rank: int                    # the unknown head's factorisation rank
    epsilon: bool                # use_epsilon_correction


class RMSNorm(llama_net.RMSNorm):
    """llama's RMS norm with the weight applied before casting back (the reference's order)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x32 = x.float()
        return (self.weight * (x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps))).to(x.dtype)


def rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """RoPE (rotate-half) on (B, H, L, D) in float32."""
    a, b = x.float().chunk(2, dim=-1)
    return (x.float() * cos + torch.cat([-b, a], dim=-1) * sin).to(x.dtype)


class Attention(nn.Module):
    def __init__(self, s: SteerlingShape):
        super().__init__()
        self.s = s
        self.qkv = nn.Linear(s.width, s.width + 2 * s.kv_heads * s.head_dim, bias=False)
        self.o = nn.Linear(s.width, s.width, bias=False)
        self.q_norm = RMSNorm(s.head_dim, s.norm_eps)
        self.k_norm = RMSNorm(s.head_dim, s.norm_eps)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        s, (B, L, _) = self.s, x.shape
        qkv = self.qkv(x)
        if s.clip_qkv is not None:
            qkv = qkv.clamp(-s.clip_qkv, s.clip_qkv)
        kv = s.kv_heads * s.head_dim
        q, k, v = qkv.split([s.width, kv, kv], dim=-1)
        q = self.q_norm(q.view(B, L, s.heads, s.head_dim).transpose(1, 2))       # (B, H, L, D)
        k = self.k_norm(k.view(B, L, s.kv_heads, s.head_dim).transpose(1, 2))    # (B, Hkv, L, D)
        v = v.view(B, L, s.kv_heads, s.head_dim).transpose(1, 2)
        q, k = rotate(q, cos, sin), rotate(k, cos, sin)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=s.heads != s.kv_heads)
        return self.o(out.transpose(1, 2).reshape(B, L, s.width))


class SwiGLU(nn.Module):
    def __init__(self, s: SteerlingShape):
        super().__init__()
        self.up_gate = nn.Linear(s.width, 2 * s.ffn, bias=False)   # up rows first, then gate rows
        self.down = nn.Linear(s.ffn, s.width, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        up, gate = self.up_gate(x).chunk(2, dim=-1)
        return self.down(F.silu(gate) * up)


class Block(nn.Module):
    def __init__(self, s: SteerlingShape):
        super().__init__()
        self.post_norm = s.post_norm
        self.attn, self.mlp = Attention(s), SwiGLU(s)
        self.attn_norm, self.mlp_norm = RMSNorm(s.width, s.norm_eps), RMSNorm(s.width, s.norm_eps)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if self.post_norm:
            x = x + self.attn_norm(self.attn(x, cos, sin, mask))
            return x + self.mlp_norm(self.mlp(x))
        x = x + self.attn(self.attn_norm(x), cos, sin, mask)
        return x + self.mlp(self.mlp_norm(x))


class KnownHead(nn.Module):
    def __init__(self, c: ConceptShape, width: int):
        super().__init__()
        self.c = c
        self.embed = nn.Parameter(torch.empty(c.padded_known, width))     # (C', D) concept embeddings
        self.predict = nn.Parameter(torch.empty(c.padded_known, width))   # (C', D) linear predictor

    def logits(self, h: torch.Tensor) -> torch.Tensor:
        """(N, D) -> (N, C) clamped float32 logits of every real (unpadded) concept."""
        return (h @ self.predict[: self.c.known].T).float().clamp(-CLAMP, CLAMP)

    def embeddings(self, ids: torch.Tensor) -> torch.Tensor:
        return self.embed[ids]


class UnknownHead(nn.Module):
    def __init__(self, c: ConceptShape, width: int):
        super().__init__()
        self.c = c
        self.coef = nn.Parameter(torch.empty(c.padded_unknown, c.rank))   # (U', r)
        self.basis = nn.Parameter(torch.empty(width, c.rank))             # (D, r)
        self.down = nn.Parameter(torch.empty(c.rank, width))              # (r, D)
        self.up = nn.Parameter(torch.empty(c.padded_unknown, c.rank))     # (U', r)

    def logits(self, h: torch.Tensor) -> torch.Tensor:
        return ((h @ self.down.T).float() @ self.up[: self.c.unknown].T.float()).clamp(-CLAMP, CLAMP)

    def embeddings(self, ids: torch.Tensor) -> torch.Tensor:
        return self.coef[ids] @ self.basis.T


Steer = Sequence[tuple[int, float]]   # (concept id, the weight it is set to)


def top_features(head: KnownHead | UnknownHead, h: torch.Tensor, k: int
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(N, D) rows -> features (N, D), the top-k concept ids (N, k) and their sigmoid weights (N, k).
    Ranked as the reference ranks them (by weight in the known head, by logit in the factorised
    unknown one): the same order but where float32 sigmoids tie near 1."""
    logits = head.logits(h)                                                    # (N, C)
    score = logits if isinstance(head, UnknownHead) else torch.sigmoid(logits)
    ids = score.topk(min(k, logits.shape[-1]), dim=-1).indices                 # (N, k)
    weights = torch.sigmoid(logits.gather(-1, ids))
    features = torch.einsum("nk,nkd->nd", weights.to(h.dtype), head.embeddings(ids).to(h.dtype))
    return features, ids, weights


def steered_features(head: KnownHead | UnknownHead, h: torch.Tensor, k: tuple[int, int],
                     steer: Steer) -> torch.Tensor:
    """(N, D) features with each steered concept's weight set to its value (the reference's
    interventions): a small head keeps its top-k weights, overrides the steered ones, and mixes all
    its embeddings; a LARGE one adds (value - current weight) x embedding to its top-k features.
    `k`: (the dense cut, the features' k)."""
    ids = torch.tensor([i for i, _ in steer], device=h.device)
    values = torch.tensor([v for _, v in steer], device=h.device, dtype=torch.float32)
    n = head.c.known if isinstance(head, KnownHead) else head.c.unknown
    if n > LARGE:
        features, _, _ = top_features(head, h, k[1])
        logits = torch.einsum("nd,kd->nk", h.float(), head_predictor(head, ids).float()).clamp(-CLAMP, CLAMP)
        delta = values - torch.sigmoid(logits)                                 # (N, S)
        return features + (delta.to(h.dtype) @ head.embeddings(ids).to(h.dtype))
    weights = torch.sigmoid(head.logits(h))                                    # (N, C)
    kept, top = weights.topk(min(k[0], n), dim=-1)
    weights = torch.zeros_like(weights).scatter_(-1, top, kept)
    weights[:, ids] = values
    every = head.embeddings(torch.arange(n, device=h.device))                  # (C, D)
    return (weights @ every.float()).to(h.dtype)


def head_predictor(head: KnownHead | UnknownHead, ids: torch.Tensor) -> torch.Tensor:
    """(S, D) predictor rows of concepts `ids` (the unknown head's from its factors)."""
    if isinstance(head, KnownHead):
        return head.predict[ids]
    return head.up[ids] @ head.down


class SteerlingNet(nn.Module):
    """Embedding, blocks, final norm, head (tied to the embedding where the checkpoint shares them),
    and the known and unknown concept heads."""

    def __init__(self, shape: SteerlingShape, concepts: ConceptShape):
        super().__init__()
        self.shape, self.concepts = shape, concepts
        self.embed = nn.Embedding(shape.vocab, shape.width)
        self.blocks = nn.ModuleList(Block(shape) for _ in range(shape.layers))
        self.norm = RMSNorm(shape.width, shape.norm_eps)
        self.head = None if shape.tie_embeddings else nn.Linear(shape.width, shape.vocab, bias=False)
        self.known = KnownHead(concepts, shape.width)
        self.unknown = UnknownHead(concepts, shape.width) if concepts.unknown else None

    def hidden(self, ids: torch.Tensor) -> torch.Tensor:
        """(B, L) ids -> (B, L, D) final-normed hidden states; positions and blocks count from 0."""
        B, L = ids.shape
        positions = torch.arange(L, device=ids.device)
        s = self.shape
        inv = 1.0 / s.rope_theta ** (torch.arange(0, s.head_dim, 2, device=ids.device).float() / s.head_dim)
        angles = positions.float()[:, None] * inv
        angles = torch.cat([angles, angles], dim=-1)                           # (L, hd)
        cos, sin = angles.cos(), angles.sin()
        mask = block_causal_mask(positions, s.block)                                # (L, L)
        x = self.embed(ids)
        for block in self.blocks:
            x = block(x, cos, sin, mask)
        return self.norm(x)

    def project(self, h: torch.Tensor) -> torch.Tensor:
        return F.linear(h, self.embed.weight if self.head is None else self.head.weight)

    def compose(self, h: torch.Tensor, known: Steer = (), unknown: Steer = ()) -> torch.Tensor:
        """(N, D) hidden rows -> the (N, D) features the head reads. Unsteered (no known concept
        set) that is h itself: known + unknown + epsilon, epsilon = h - (known + unknown)."""
        c = self.concepts
        if (not known and c.epsilon) or self.unknown is None:  # the unknown part is then h - known
            return h
        known_f = (steered_features(self.known, h, (c.known_topk, c.known_features), known) if known
                   else top_features(self.known, h, c.known_features)[0])
        unknown_f = (steered_features(self.unknown, h, (c.unknown_topk, c.unknown_topk), unknown) if unknown
                     else top_features(self.unknown, h, c.unknown_topk)[0])
        return unknown_f + known_f
