"""A shifted-head Llama net read left to right with a key/value cache: the frontier guide's causal LM
(engine/guide.py)."""
from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from .llama_net import KV, LlamaNet

if TYPE_CHECKING:
    from .score import BaseView


class LlamaCausalView:
    """`net` read causally: row 0 is `start_id`, each later row sees the rows before it. With `base`,
    the adapter's deltas are taken out while it runs (the bundled model's base LM, no second copy
    of the weights), for the calling thread only: the scheduler's worker may be running the
    adapted net on another thread at the same time."""

    def __init__(self, net: LlamaNet, start_id: int, base: BaseView | None = None):
        self.net, self.start_id, self.base = net, start_id, base

    @torch.inference_mode()
    def extend(self, ids: torch.Tensor, past: list[KV] | None) -> tuple[torch.Tensor, list[KV]]:
        """(B, N) ids after the `past` rows -> (B, N, V) next-token logits, and the past with them."""
        B, N = ids.shape
        n = 0 if past is None else past[0][0].shape[2]
        own = torch.ones(N, N, dtype=torch.bool, device=ids.device).tril()
        mask = torch.cat([torch.ones(N, n, dtype=torch.bool, device=ids.device), own], 1)  # (N, n + N)
        positions = torch.arange(n, n + N, device=ids.device)
        kvs: list[KV] = []
        with self.base.active() if self.base is not None else torch.inference_mode():
            h = self.net.hidden(ids, positions, contexts=past, kv_out=kvs, mask=mask)
            logits = self.net.project(h)                                           # (B, N, V)
        if past is not None:
            kvs = [(torch.cat([pk, k], 2), torch.cat([pv, v], 2)) for (pk, pv), (k, v) in zip(past, kvs)]
        return logits, kvs

    def pick(self, past: list[KV] | None, index: torch.Tensor) -> list[KV] | None:
        """The batch rows `index` of every block's keys and values."""
        return None if past is None else [(k[index], v[index]) for k, v in past]

    def truncate(self, past: list[KV] | None, rows: int) -> list[KV] | None:
        """The first `rows` rows of every block's keys and values (None for none)."""
        if past is None or rows == 0:
            return None
        return [(k[:, :, :rows], v[:, :, :rows]) for k, v in past]
