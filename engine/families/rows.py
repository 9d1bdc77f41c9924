"""How a LlamaDiffusionLM runs its net (EagerRows: as it is; engine/families/compiled.py pads the same
calls for torch.compile), the cached keys/values its forwards attend to (Context) and its DualCache
(SpanCache), and the head that reads rows out (`project`)."""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import torch

from .llama_net import KV

HEAD_FLOOR = 4  # fewest rows the output head multiplies at once (see `project`)

if TYPE_CHECKING:
    from .llama_net import LlamaNet
    from .moe_net import MoENet


@dataclass(frozen=True)
class SpanCache:
    """Keys/values of the rows that stay fixed while the span slots denoise (DualCache), and of the
    rows run last step. Invariant: every row's keys/values held here were computed with the id
    `seen` has for it, so a row whose id moved is run again (`regroup`)."""

    context: Context         # per block: (B, Hkv, C, D) keys and values of the `held` rows (padded when compiled)
    held: torch.Tensor       # (C,) net rows whose keys/values `context` holds, in its order
    active: torch.Tensor     # (A,) net rows run every step, sorted
    seen: torch.Tensor       # (B, Ln) each net row's id when its keys/values were last computed
    freeze: bool = False     # rows no scored slot needs join `context` once run with their id (dKV-Cache)
    kv: tuple[KV, ...] = ()  # with freeze: per block (B, Hkv, A, D), the active rows' keys/values

    def regroup(self, x: torch.Tensor, wanted: torch.Tensor, runner: EagerRows) -> SpanCache:
        """The cache a step over (B, Ln) net input `x` runs with: `wanted` (W,) rows (the scored
        slots' own rows and the rows that score them) and every row whose id moved are active;
        with `freeze` the other rows that were active join the context (their keys/values from
        their last forward, whose id has not moved since), else active rows stay active."""
        run = (x != self.seen).any(0)                                           # (Ln,)
        run[wanted] = True
        was = torch.zeros_like(run)
        was[self.active] = True
        if not self.freeze:
            run |= was
        if torch.equal(run, was):
            return self
        C = len(self.held)
        kv = [(k[:, :, :C], v[:, :, :C]) for k, v in self.context.kv]
        rows = self.held
        if bool((was & ~run).any()):  # rows leave the active set: their last keys/values join the context
            kv = [(torch.cat([k, ak], 2), torch.cat([v, av], 2)) for (k, v), (ak, av) in zip(kv, self.kv)]
            rows = torch.cat([self.held, self.active])
        keep = ~run[rows]                                                       # (C',)
        return replace(self, context=runner.context(kv, keep), held=rows[keep],
                       active=run.nonzero().squeeze(-1), kv=())

    def computed(self, ran: torch.Tensor, kvs: list[KV]) -> SpanCache:
        """The cache after its active rows ran with ids `ran` (B, A), giving each block's `kvs`."""
        seen = self.seen.clone()
        seen[:, self.active] = ran
        return replace(self, seen=seen, kv=tuple(kvs) if self.freeze else ())


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
        return project(self.net, h[:, rows]), kvs

    def context(self, kvs: list[KV], keep: torch.Tensor) -> Context:
        """The `keep` (L,) positions of each block's keys/values, as later forwards attend to them."""
        return Context([(k[:, :, keep], v[:, :, keep]) for k, v in kvs])


def project(net: LlamaNet | MoENet, h: torch.Tensor) -> torch.Tensor:
    """(..., R, d) hidden rows -> (..., R, V) logits, each row's as it would be among more rows: BLAS
    takes another kernel below HEAD_FLOOR rows (a matrix-vector product sums in another order), so
    fewer rows go through the matrix product padded. On one thread a step that reads out only its
    undecided slots thus gives them bit-identical logits to one that reads every slot (with more
    threads MKL may split other row counts differently: the last bits may then differ)."""
    rows = h.reshape(-1, h.shape[-1])                                           # (N, d)
    short = HEAD_FLOOR - rows.shape[0]
    if short <= 0 or rows.shape[0] == 0:
        return net.project(h)
    padded = torch.cat([rows, rows[:1].expand(short, -1)])                     # (HEAD_FLOOR, d)
    return net.project(padded)[: rows.shape[0]].view(*h.shape[:-1], -1)
