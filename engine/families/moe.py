"""Mixture-of-experts feed-forward: a router picks each token's top-k experts, their SwiGLU
outputs are summed with the router's weights, plus an always-on shared expert where there is one.

The two LLaDA MoE families route differently; `Routing` names every difference so that one block
serves both (their loaders in llada_moe.py and llada2.py say which values each checkpoint uses):
- score: softmax over all experts (OLMoE style) or an independent sigmoid per expert (DeepSeek-V3 style);
- expert bias: none, added to the scores for choosing only ("select"), or added and kept in the
  weights too ("weights", what LLaDA-MoE's reference code does);
- group-limited choice: experts in `groups` groups, a group scored by the sum of its two best
  experts, only the `top_groups` best groups eligible;
- renormalise the chosen weights to sum 1, then multiply by `scale`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from .llama_net import MLP

Score = Literal["softmax", "sigmoid"]
ExpertBias = Literal["none", "select", "weights"]


@dataclass(frozen=True)
class Routing:
    """How a router turns a token's expert scores into its top-k experts and their weights."""

    experts: int
    top_k: int
    score: Score = "softmax"
    bias: ExpertBias = "none"
    groups: int = 1
    top_groups: int = 1
    renormalize: bool = False
    scale: float = 1.0

    def __post_init__(self) -> None:
        if not 0 < self.top_k <= self.experts:
            raise ValueError(f"top_k {self.top_k} must be in 1..{self.experts} (the number of experts)")
        if self.experts % self.groups or not 0 < self.top_groups <= self.groups:
            raise ValueError(f"{self.experts} experts do not split into {self.groups} groups of which "
                             f"{self.top_groups} are kept")
        if self.top_k > self.top_groups * (self.experts // self.groups):
            raise ValueError(f"top_k {self.top_k} is more than the {self.top_groups} kept groups hold")


class Router(nn.Module):
    """Token -> (top-k expert ids, their weights). Scores are computed in float32, as both
    references do, whatever the weights' dtype."""

    def __init__(self, width: int, routing: Routing):
        super().__init__()
        self.routing = routing
        self.weight = nn.Parameter(torch.empty(routing.experts, width))
        # A checkpoint's expert bias is a buffer there; a parameter here so that loading checks it.
        self.bias = None if routing.bias == "none" else nn.Parameter(torch.zeros(routing.experts))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(T, d) -> experts (T, k) long, weights (T, k) float32."""
        r = self.routing
        logits = F.linear(x.float(), self.weight.float())                       # (T, E)
        scores = logits.softmax(-1) if r.score == "softmax" else logits.sigmoid()
        ranked = scores if self.bias is None else scores + self.bias.float()
        chosen = group_limited(ranked, r.groups, r.top_groups).topk(r.top_k, dim=-1).indices  # (T, k)
        weights = (ranked if r.bias == "weights" else scores).gather(-1, chosen)
        if r.renormalize:
            weights = weights / (weights.sum(-1, keepdim=True) + 1e-20)
        return chosen, weights * r.scale


def group_limited(scores: torch.Tensor, groups: int, keep: int) -> torch.Tensor:
    """(T, E) scores with the experts outside each token's `keep` best groups set to -inf; a group's
    score is the sum of its two best experts (DeepSeek-V3's node-limited routing)."""
    if groups == 1 or keep == groups:
        return scores
    T, E = scores.shape
    grouped = scores.view(T, groups, E // groups)                               # (T, G, E/G)
    group_score = grouped.topk(min(2, E // groups), dim=-1).values.sum(-1)      # (T, G)
    kept = torch.zeros_like(group_score, dtype=torch.bool)
    kept.scatter_(1, group_score.topk(keep, dim=-1).indices, True)
    return grouped.masked_fill(~kept[..., None], float("-inf")).view(T, E)


class SparseMoE(nn.Module):
    """Routed experts (SwiGLU each) plus an optional shared expert that every token goes through."""

    def __init__(self, width: int, expert_ffn: int, routing: Routing, shared_ffn: int = 0):
        super().__init__()
        self.router = Router(width, routing)
        self.experts = nn.ModuleList(MLP(width, expert_ffn) for _ in range(routing.experts))
        self.shared = MLP(width, shared_ffn) if shared_ffn else None
        self.first = 0  # the router's number for experts[0]: an expert-parallel rank holds a share (shard.py)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, L, d) -> (B, L, d)."""
        flat = x.reshape(-1, x.shape[-1])                                       # (T, d)
        chosen, weights = self.router(flat)                                     # (T, k) each
        out = self.routed(flat, chosen, weights)
        if self.shared is not None:
            out = out + self.shared(flat)
        return out.view_as(x)

    def routed(self, x: torch.Tensor, chosen: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """Each expert runs once on the tokens routed to it. The tokens are sorted by expert and
        cut by count: one host sync per MoE layer (the counts), none per expert."""
        k = chosen.shape[1]
        flat_expert = chosen.flatten()                                          # (T*k,)
        order = flat_expert.argsort(stable=True)
        token = order // k                                                      # (T*k,) source row
        counts = torch.bincount(flat_expert, minlength=self.router.routing.experts).tolist()
        out = torch.zeros_like(x)
        start = sum(counts[:self.first])  # rows of the experts other ranks hold come first
        for expert, n in zip(self.experts, counts[self.first:]):
            if n:
                rows = token[start:start + n]
                w = weights.flatten()[order[start:start + n]].to(x.dtype)[:, None]
                out.index_add_(0, rows, expert(x[rows]) * w)
            start += n
        return out
