"""torch.compile of a model's forwards with static shapes: every forward padded up to a length bucket.

A compiled graph is specialised to its input shapes, and the loop's forwards change shape with every
document, span and cache refresh: compiled as they come, they would recompile without end. Here the
canvas, the cached context and the rows read out are padded up to the next power of two (at least
LENGTH_FLOOR / ROW_FLOOR), so one graph serves every forward of a bucket and the number of graphs
is bounded (a few lengths x batch sizes). Padded keys are masked out of attention, so real positions
see exactly what they would see unpadded; padded rows are dropped from the outputs.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from ..model import DiffusionLM
from .llama_net import KV, LlamaNet
from .rows import Context, EagerRows

if TYPE_CHECKING:
    from .moe_net import MoENet

LENGTH_FLOOR = 64   # shortest padded canvas or context: below it a GPU forward costs the same
ROW_FLOOR = 16      # fewest padded rows read out
# Graphs one compiled function may hold: lengths up to 8192 (8 buckets) x context buckets x batch
# sizes; past torch's default limit (8) it would silently fall back to eager.
RECOMPILE_LIMIT = 256


def bucket(n: int, floor: int) -> int:
    """The padded size of `n`: the smallest power of two >= n, at least `floor`."""
    return max(floor, 1 << max(0, n - 1).bit_length())


def pad_to(t: torch.Tensor, size: int, dim: int, value: float = 0) -> torch.Tensor:
    """`t` padded with `value` at the end of `dim` to `size`."""
    return F.pad(t, [0, 0] * (t.dim() - 1 - dim) + [0, size - t.shape[dim]], value=value)


class BucketedRows(EagerRows):
    """EagerRows' calls padded to buckets and run through one torch.compile'd function."""

    net: LlamaNet  # only dense nets take the padding mask

    def __init__(self, net: LlamaNet, mode: str = "default", backend: str = "inductor"):
        super().__init__(net)
        torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, RECOMPILE_LIMIT)
        self.mode = mode
        self.compiled = torch.compile(self.padded, dynamic=False, backend=backend,
                                      mode=None if mode == "default" or backend != "inductor" else mode)

    def __call__(self, x: torch.Tensor, positions: torch.Tensor | None, rows: torch.Tensor,
                 context: Context | None = None, want_kv: bool = False) -> tuple[torch.Tensor, list[KV]]:
        L, R = x.shape[1], rows.shape[0]
        size = bucket(L, LENGTH_FLOOR)
        if positions is None:
            positions = torch.arange(L, device=x.device)
        own = torch.arange(size, device=x.device) < L                          # (Lb,) real keys
        mask = own if context is None or context.mask is None else torch.cat([context.mask, own])
        if self.mode == "reduce-overhead":  # CUDA graphs: this forward's outputs may replace the last's
            torch.compiler.cudagraph_mark_step_begin()
        out, kvs = self.compiled(pad_to(x, size, 1), pad_to(positions, size, 0),
                                 pad_to(rows, bucket(R, ROW_FLOOR), 0),
                                 None if context is None else context.kv, mask.view(1, 1, 1, -1), want_kv)
        out = out[:, :R]
        if self.mode == "reduce-overhead":  # the graph's output buffer is reused by its next replay
            out = out.clone()
        return out, [(k[:, :, :L], v[:, :, :L]) for k, v in kvs]

    def context(self, kvs: list[KV], keep: torch.Tensor) -> Context:
        """The kept keys/values padded once, at the cache's making, to their own length bucket."""
        kept = int(keep.sum())
        size = bucket(kept, LENGTH_FLOOR)
        padded = [(pad_to(k[:, :, keep], size, 2), pad_to(v[:, :, keep], size, 2)) for k, v in kvs]
        return Context(padded, torch.arange(size, device=keep.device) < kept)

    def padded(self, x: torch.Tensor, positions: torch.Tensor, rows: torch.Tensor, contexts: list[KV] | None,
               mask: torch.Tensor, want_kv: bool) -> tuple[torch.Tensor, list[KV]]:
        """The function torch.compile sees: every argument has a bucket's shape."""
        kvs: list[KV] = []
        h = self.net.hidden(x, positions, contexts=contexts, kv_out=kvs if want_kv else None, mask=mask)
        return self.net.project(h[:, rows]), kvs


def compile_model(model: DiffusionLM, mode: str = "default", backend: str = "inductor") -> DiffusionLM:
    """Run `model`'s forwards compiled in length buckets from now on (`DiffusionLM.compile`: the
    Llama-family models, LLaDA, Dream, the bundled model). Each bucket compiles on its first forward."""
    model.compile(mode, backend)
    return model


def bucketed_rows(net: LlamaNet | MoENet, label: str, mode: str, backend: str) -> BucketedRows:
    """`LlamaDiffusionLM.compile`'s runner for `net` (the model `label`): the bucketed one."""
    if not isinstance(net, LlamaNet):  # the MoE nets take no padding mask: they run eager
        raise ValueError(f"--compile works on dense Llama-layout nets, not on {label}'s mixture of experts")
    return BucketedRows(net, mode, backend)
