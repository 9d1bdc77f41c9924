"""A shifted-head Llama net read left to right with a key/value cache: the frontier guide's causal LM
(engine/guide.py) and the fluency scorer's (engine/families/score.py), sharing the reads they repeat."""
from __future__ import annotations

import threading
from collections import OrderedDict
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Protocol

import torch
import torch.nn.functional as F

from .llama_net import KV, LlamaNet

REMEMBERED_READS = 4  # reads kept: an "auto" regeneration's trial windows share one text before the span


@dataclass
class Read:
    """A causal read of `ids` from row 0: every row's keys/values and final hidden state, and the NLL
    of each row's next id as far as someone asked for it (the guide needs none: no 49k-wide head)."""

    ids: tuple[int, ...]  # (N,) the rows, row 0 first
    past: list[KV]        # per block (1, Hkv, N, D) keys and values
    hidden: torch.Tensor  # (N, width) final-normed hidden states
    nll: torch.Tensor     # (S,) float32, S <= N - 1: -log p(ids[j + 1] | ids[:j + 1]) for j < S


class Base(Protocol):
    """An adapted net read as its base while `active()` (engine.families.score.BaseView)."""

    def active(self, rows: torch.Tensor | None = None) -> AbstractContextManager[None]: ...


class RememberedReads:
    """The latest causal reads, newest last. A causal row depends only on the rows before it, so a read
    that begins with a remembered read's ids takes those rows from it exactly: the trials of an
    "auto" regeneration (the guide's read of the text before the span, the scorer's windows around
    it) and a repeated edit read their shared beginning once. Shared by threads (jobs and the page)."""

    def __init__(self, size: int = REMEMBERED_READS):
        self.size, self.reads = size, OrderedDict[tuple[int, ...], Read]()
        self.lock = threading.Lock()

    def longest(self, ids: tuple[int, ...]) -> tuple[Read | None, int]:
        """The remembered read sharing the most leading ids with `ids`, and how many it shares."""
        best, most = None, 0
        for read in self.reads.values():
            same = next((j for j, (a, b) in enumerate(zip(read.ids, ids)) if a != b), min(len(read.ids), len(ids)))
            if same > most:
                best, most = read, same
        if best is not None:
            self.reads.move_to_end(best.ids)
        return best, most

    def forget(self) -> None:
        """Remember nothing (a timing of fresh edits: scripts/page_timings.py)."""
        with self.lock:
            self.reads.clear()

    def add(self, read: Read) -> None:
        """Remember `read`, forgetting the reads it begins with (it holds their rows) and the oldest."""
        for ids in [ids for ids in self.reads if read.ids[:len(ids)] == ids]:
            del self.reads[ids]
        self.reads[read.ids] = read
        while len(self.reads) > self.size:
            self.reads.popitem(last=False)


class CausalReader:
    """`net` read causally with a key/value cache. With `base`, the adapter's deltas are taken out
    while it runs (the bundled model's base LM, no second copy of the weights), for the calling
    thread only: the scheduler's worker may be running the adapted net on another thread at the
    same time. `read` remembers whole reads (RememberedReads) for whoever reads the same rows again."""

    def __init__(self, net: LlamaNet, base: Base | None = None):
        self.net, self.base = net, base
        self.remembered = RememberedReads()

    @torch.inference_mode()
    def extend(self, ids: torch.Tensor, past: list[KV] | None) -> tuple[torch.Tensor, list[KV]]:
        """(B, N) ids after the `past` rows -> (B, N, V) next-token logits, and the past with them."""
        h, past = self.hidden(ids, past)
        return self.project(h), past                                               # (B, N, V)

    def hidden(self, ids: torch.Tensor, past: list[KV] | None) -> tuple[torch.Tensor, list[KV]]:
        """(B, N) ids after the `past` rows -> (B, N, width) final-normed hidden states, and the past."""
        B, N = ids.shape
        n = 0 if past is None else past[0][0].shape[2]
        own = torch.ones(N, N, dtype=torch.bool, device=ids.device).tril()
        mask = torch.cat([torch.ones(N, n, dtype=torch.bool, device=ids.device), own], 1)  # (N, n + N)
        positions = torch.arange(n, n + N, device=ids.device)
        kvs: list[KV] = []
        with self.base.active() if self.base is not None else torch.inference_mode():
            h = self.net.hidden(ids, positions, contexts=past, kv_out=kvs, mask=mask)
        if past is not None:
            kvs = [(torch.cat([pk, k], 2), torch.cat([pv, v], 2)) for (pk, pv), (k, v) in zip(past, kvs)]
        return h, kvs

    def project(self, h: torch.Tensor) -> torch.Tensor:
        """(..., width) -> (..., V) next-token logits (the head is read as it is: no hook sees it)."""
        return self.net.project(h)

    @torch.inference_mode()
    def read(self, ids: torch.Tensor, scored: bool = False) -> Read:
        """(N,) row ids -> their read (with every next id's NLL when `scored`), the rows it shares
        with a remembered read taken from it, this read remembered. The lock is held while reading,
        so trials that ask at once read their shared rows once."""
        key, N = tuple(ids.tolist()), len(ids)
        with self.remembered.lock:
            known, same = self.remembered.longest(key)
            past = None if known is None else self.cut(known.past, same)
            nll = ids.new_zeros(0, dtype=torch.float32) if known is None else known.nll[:same - 1]  # targets shared
            if known is not None and same == N:
                hidden = known.hidden[:N]                                          # (N, width)
            else:
                more, past = self.hidden(ids[None, same:], past)                   # (1, N - same, width)
                hidden = more[0] if known is None else torch.cat([known.hidden[:same], more[0]])
            if scored and len(nll) < N - 1:
                logits = self.project(hidden[len(nll):N - 1]).float()              # (N - 1 - S, V)
                nll = torch.cat([nll, F.cross_entropy(logits, ids[len(nll) + 1:], reduction="none")])
            assert past is not None  # a remembered read shares at least one row, else every row was read
            read = Read(key, past, hidden, nll)
            if known is not None and same == N < len(known.ids):  # inside a longer read: it keeps the scores
                known.nll = nll if len(nll) > len(known.nll) else known.nll
            else:
                self.remembered.add(read)
        return read

    def prefix(self, ids: torch.Tensor) -> list[KV]:
        """(N,) row ids -> their keys and values (batch 1), through `read`."""
        return self.read(ids).past

    def pick(self, past: list[KV] | None, index: torch.Tensor) -> list[KV] | None:
        """The batch rows `index` of every block's keys and values."""
        return None if past is None else [(k[index], v[index]) for k, v in past]

    def truncate(self, past: list[KV] | None, rows: int) -> list[KV] | None:
        """The first `rows` rows of every block's keys and values (None for none)."""
        if past is None or rows == 0:
            return None
        return self.cut(past, rows)

    @staticmethod
    def cut(past: list[KV], rows: int) -> list[KV]:
        return [(k[:, :, :rows], v[:, :, :rows]) for k, v in past]


class LlamaCausalView(CausalReader):
    """The frontier guide's causal LM: `net` read causally, row 0 is `start_id`, each later row sees
    the rows before it."""

    def __init__(self, net: LlamaNet, start_id: int, base: Base | None = None):
        super().__init__(net, base)
        self.start_id = start_id
