"""How a LlamaDiffusionLM runs its net (EagerRows: as it is; engine/families/compiled.py pads the same
calls for torch.compile), the cached keys/values its forwards attend to (Context) and its DualCache
(SpanCache)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from .llama_net import KV

if TYPE_CHECKING:
    from .llama_net import LlamaNet
    from .moe_net import MoENet


@dataclass(frozen=True)
class SpanCache:
    """Keys/values of the positions that stay fixed while the span slots denoise."""

    context: Context         # per block: (B, Hkv, L - A, D) keys and values (padded when compiled)
    active: torch.Tensor     # (A,) net rows recomputed every step (slots and their scorers)
    query: torch.Tensor      # (P,) index into `active` of the row that scores each slot


@dataclass(frozen=True)
class Context:
    """Keys/values of other positions for every block to attend to, and which of them are real."""

    kv: list[KV]                         # per block: (B, Hkv, Lc, D) keys and values
    mask: torch.Tensor | None = None     # (Lc,) bool, False on padding; None: all real


class EagerRows:
    """How a LlamaDiffusionLM runs its net: as it is. engine/families/compiled.py's BucketedRows pads the
    same calls to static shapes for torch.compile."""

    def __init__(self, net: LlamaNet | MoENet):
        self.net = net

    def __call__(self, x: torch.Tensor, positions: torch.Tensor | None, rows: torch.Tensor,
                 context: Context | None = None, want_kv: bool = False) -> tuple[torch.Tensor, list[KV]]:
        """(B, L) ids at (L,) positions (None: 0..L-1) -> (B, R, V) logits of `rows` (R,), and
        every block's keys/values of x when `want_kv` (else [])."""
        kvs: list[KV] = []
        h = self.net.hidden(x, positions, contexts=None if context is None else context.kv,
                            kv_out=kvs if want_kv else None)
        return self.net.project(h[:, rows]), kvs

    def context(self, kvs: list[KV], keep: torch.Tensor) -> Context:
        """The `keep` (L,) positions of each block's keys/values, as later forwards attend to them."""
        return Context([(k[:, :, keep], v[:, :, keep]) for k, v in kvs])
