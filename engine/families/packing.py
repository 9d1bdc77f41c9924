"""Packed forwards: several callers' canvases through one LlamaNet pass, with no padding.

The scheduler (engine/scheduler.py) hands the model one forward per active edit. Packing puts all
their rows in one (N, width) matrix, so every linear layer (nearly all of a forward's work) runs
once for the whole batch, while attention runs per canvas at that canvas's own shape, over its own
cached context. Nothing is padded, so documents of any lengths share a forward without wasted rows
or attention masks, and each canvas's attention is computed exactly as it would be alone; only the
matrix products see more rows. Full forwards, DualCache refreshes and cached steps mix freely: a
cached step simply contributes its active rows. So does the frontier guide's causal read (a
`CausalCall`): its rows attend causally to themselves and its cached past, and when its view is the
bundled model's base, the adapter's deltas are taken out of those rows alone (`BaseView.active`).
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, cast

import torch
import torch.nn.functional as F

from ..model import Call, CausalCall
from .llama_net import KV, Attention, Block, LlamaNet, apply_rope, rope_tables
from .rows import project

if TYPE_CHECKING:
    from .moe_net import MoENet
    from .rows import SpanCache
    from .score import BaseView


class PackedModel(Protocol):
    """What packing reads of its model (a LlamaDiffusionLM): the net, and how a call's canvas maps
    onto the net's rows and back into a cache."""

    @property
    def net(self) -> LlamaNet | MoENet: ...

    def net_input(self, ids: torch.Tensor) -> torch.Tensor: ...
    def query_rows(self, positions: torch.Tensor) -> torch.Tensor: ...
    def span_cache(self, x: torch.Tensor, positions: torch.Tensor, kvs: list[KV],
                   freeze: bool = False) -> SpanCache: ...
    def regrouped(self, x: torch.Tensor, positions: torch.Tensor,
                  cache: SpanCache) -> tuple[SpanCache, torch.Tensor]: ...


@dataclass(frozen=True)
class Piece:
    """One call's rows in the pack."""

    ids: torch.Tensor              # (B, R) net input ids of the rows this call runs
    positions: torch.Tensor        # (R,) their net positions (for RoPE)
    query: torch.Tensor            # (P,) rows (into R) whose hidden states score the call's slots
    contexts: list[KV] | None      # per block: the cached context these rows attend to as well
    keep_kv: bool                  # a cache refresh: the rows' keys/values become the new cache
    mask: torch.Tensor | None = None  # (R, context + R) which keys each row sees (None: all)
    base: BaseView | None = None   # the rows read the net as its base (the adapter taken out)
    cache: SpanCache | None = None  # a cached step: the cache its rows run with (regrouped)

    @property
    def size(self) -> int:
        return self.ids.numel()


def piece(model: PackedModel, call: Call) -> Piece:
    """What `call` runs alone (LlamaDiffusionLM.logits_at / cached_logits, LlamaCausalView.extend),
    as a piece of the pack."""
    if isinstance(call, CausalCall):
        B, N = call.ids.shape
        n = 0 if call.past is None else call.past[0][0].shape[2]
        rows = torch.arange(N, device=call.ids.device)
        own = torch.ones(N, N, dtype=torch.bool, device=call.ids.device).tril()
        mask = torch.cat([torch.ones(N, n, dtype=torch.bool, device=call.ids.device), own], 1)  # (N, n + N)
        return Piece(call.ids, rows + n, rows, call.past, True, mask, getattr(call.view, "base", None))
    x = model.net_input(call.ids)                                                # (B, Ln)
    if call.cached and call.cache is not None:
        cache, query = model.regrouped(x, call.positions, call.cache)
        return Piece(x[:, cache.active], cache.active, query, cache.context.kv, cache.freeze, cache=cache)
    rows = torch.arange(x.shape[1], device=x.device)
    return Piece(x, rows, model.query_rows(call.positions), None, call.cached)


def packs(model: PackedModel, calls: Sequence[Call]) -> bool:
    """Whether the calls can share one pass: causal reads of this net, all through one base view."""
    causal = [call.view for call in calls if isinstance(call, CausalCall)]
    bases = {id(base) for base in (getattr(view, "base", None) for view in causal) if base is not None}
    return all(getattr(view, "net", None) is model.net for view in causal) and len(bases) <= 1


@torch.inference_mode()
def forward_packed(model: PackedModel, calls: Sequence[Call]) -> list[Any]:
    """Each call's answer, as `LlamaDiffusionLM.forward_many` promises, from one packed pass."""
    if not isinstance(model.net, LlamaNet):
        raise TypeError(f"packing runs dense Llama blocks, not {type(model.net).__name__}")
    pieces = [piece(model, call) for call in calls]
    with base_rows(pieces):
        hidden, kvs = packed_hidden(model.net, pieces)                           # (N, d)
    width = hidden.shape[-1]
    query_rows, start = [], 0
    for p in pieces:
        h = hidden[start:start + p.size].view(*p.ids.shape, width)               # (B, R, d)
        query_rows.append(h[:, p.query].reshape(-1, width))                      # (B * P, d)
        start += p.size
    logits = project(model.net, torch.cat(query_rows))                           # (sum B * P, V)
    answers: list[Any] = []
    for call, p, rows, kv in zip(calls, pieces, logits.split([len(r) for r in query_rows]), kvs):
        out = rows.view(p.ids.shape[0], len(p.query), -1)                        # (B, P, V)
        if isinstance(call, CausalCall):
            assert kv is not None
            past = kv if p.contexts is None else [(torch.cat([pk, k], 2), torch.cat([pv, v], 2))
                                                  for (pk, pv), (k, v) in zip(p.contexts, kv)]
            answers.append((out, past))
        elif not call.cached:
            answers.append(out)
        elif p.cache is not None:
            answers.append((out, p.cache.computed(p.ids, kv or [])))
        else:
            answers.append((out, model.span_cache(p.ids, call.positions, kv or [], call.freeze)))
    return answers


def base_rows(pieces: Sequence[Piece]) -> Any:
    """The context in which the pieces that read the base net do so, in the packed rows they hold."""
    base = next((p.base for p in pieces if p.base is not None), None)
    if base is None:
        return nullcontext()
    sizes = torch.tensor([p.size for p in pieces])
    starts = sizes.cumsum(0) - sizes
    rows = [torch.arange(int(a), int(a) + p.size) for a, p in zip(starts, pieces) if p.base is not None]
    return base.active(torch.cat(rows).to(pieces[0].ids.device))


def packed_hidden(net: LlamaNet, pieces: Sequence[Piece]) -> tuple[torch.Tensor, list[list[KV] | None]]:
    """(N, width) final-normed hidden states of every piece's rows, and each refreshing piece's
    keys/values per block (None for the others). The blocks' own norms, MLP and projections."""
    x = net.embed(torch.cat([p.ids.reshape(-1) for p in pieces]))                # (N, d)
    ropes = [rope_tables(p.positions.expand(p.ids.shape), net.shape.head_dim, net.shape.rope_theta,
                         x.dtype) for p in pieces]
    kvs: list[list[KV] | None] = [[] if p.keep_kv else None for p in pieces]
    for layer, block in enumerate(cast(Iterable[Block], net.blocks)):
        x = x + attend_each(block.attn, block.attn_norm(x), pieces, ropes, layer, kvs)
        x = x + block.mlp(block.mlp_norm(x))
    return net.norm(x), kvs


def attend_each(attn: Attention, x: torch.Tensor, pieces: Sequence[Piece],
                ropes: list[tuple[torch.Tensor, torch.Tensor]], layer: int,
                kvs: list[list[KV] | None]) -> torch.Tensor:
    """(N, d) normed rows -> (N, d) attention output: projections over all rows at once, attention
    per piece over its own rows and cached context (as `Attention.forward` does for one canvas)."""
    q, k, v = attn.q(x), attn.k(x), attn.v(x)                                    # (N, H*D), (N, Hkv*D)
    outs, start = [], 0
    for p, (cos, sin), kv_out in zip(pieces, ropes, kvs):
        B, R = p.ids.shape
        rows = slice(start, start + p.size)
        qp = apply_rope(q[rows].view(B, R, attn.heads, -1).transpose(1, 2), cos, sin)    # (B, H, R, D)
        kp = apply_rope(k[rows].view(B, R, attn.kv_heads, -1).transpose(1, 2), cos, sin)  # (B, Hkv, R, D)
        vp = v[rows].view(B, R, attn.kv_heads, -1).transpose(1, 2)
        if kv_out is not None:
            kv_out.append((kp, vp))
        if p.contexts is not None:
            context = p.contexts[layer]
            kp, vp = torch.cat([context[0], kp], dim=2), torch.cat([context[1], vp], dim=2)
        out = F.scaled_dot_product_attention(qp, kp, vp, attn_mask=p.mask, enable_gqa=attn.heads != attn.kv_heads)
        outs.append(out.transpose(1, 2).reshape(p.size, -1))
        start += p.size
    return attn.o(torch.cat(outs))
