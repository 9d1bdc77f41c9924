"""Tensor and expert parallelism for the Llama-layout nets (LlamaNet, MoENet), sharded by hand as
gpt-fast's tp.py does: each rank keeps its slice of the weights and one all-reduce sums the
partial outputs after each attention and each feed-forward (docs/ARCHITECTURE.md, "Tensor parallel").

- attention: the query/key/value projections keep this rank's heads (rows, "column-wise"), the
  output projection the matching input columns ("row-wise"); its bias is added on rank 0 only.
- dense feed-forward (SwiGLU): gate and up keep a slice of the hidden width, down its columns.
- mixture of experts: every rank routes every token (the router is replicated) and runs only the
  experts it holds, a contiguous share of them; the shared expert is split like a dense one; one
  all-reduce sums both.
- embedding, norms and the head stay whole on every rank: their output is needed whole anyway.
"""
from __future__ import annotations

from collections.abc import Iterable
from typing import Any, cast

import torch
from torch import nn

from ..ranks import reduce_sum
from .llama_net import MLP, Attention, Block, LlamaNet, LlamaShape
from .moe import SparseMoE
from .moe_net import MoEBlock, MoENet, MoEShape, NormedAttention


def check_split(shape: LlamaShape | MoEShape, size: int) -> None:
    """A ValueError naming the widths `size` ranks cannot split evenly, and the --tp values that can."""
    widths = split_widths(shape)
    if all(n % size == 0 for n in widths.values()):
        return
    fits = [str(n) for n in range(1, shape.kv_heads + 1) if all(w % n == 0 for w in widths.values())]
    have = ", ".join(f"{n} {what}" for what, n in widths.items())
    raise ValueError(f"--tp {size} does not divide this model's widths ({have}); it runs with --tp "
                     f"{' or '.join(fits)}")


def split_widths(shape: LlamaShape | MoEShape) -> dict[str, int]:
    """The widths tensor parallelism splits; each must be a multiple of the ranks."""
    if isinstance(shape, LlamaShape):
        ffn = {"feed-forward width": shape.ffn}
    else:
        ffn = {"dense feed-forward width": shape.dense_ffn, "shared expert width": shape.shared_ffn}
    return {"attention heads": shape.heads, "key/value heads": shape.kv_heads,
            **{what: n for what, n in ffn.items() if n}}


def shard_net(net: LlamaNet | MoENet, rank: int, size: int) -> None:
    """Keep rank `rank`'s part of `net`'s weights (of `size` ranks), in place, and hook the sums."""
    check_split(net.shape, size)
    for block in cast(Iterable[Block | MoEBlock], net.blocks):
        shard_attention(block.attn, rank, size)
        block.attn.o.register_forward_hook(sum_output)
        if isinstance(block.mlp, SparseMoE):
            shard_experts(block.mlp, rank, size)
        else:
            shard_mlp(cast(MLP, block.mlp), rank, size)
        block.mlp.register_forward_hook(sum_output)


def shard_attention(attn: Attention | NormedAttention, rank: int, size: int) -> None:
    attn.heads, attn.kv_heads = attn.heads // size, attn.kv_heads // size
    q_rows, kv_rows = attn.heads * attn.head_dim, attn.kv_heads * attn.head_dim
    keep_outputs(attn.q, rank, q_rows)
    keep_outputs(attn.k, rank, kv_rows)
    keep_outputs(attn.v, rank, kv_rows)
    keep_inputs(attn.o, rank, q_rows)


def shard_mlp(mlp: MLP, rank: int, size: int) -> None:
    hidden = mlp.gate.out_features // size
    keep_outputs(mlp.gate, rank, hidden)
    keep_outputs(mlp.up, rank, hidden)
    keep_inputs(mlp.down, rank, hidden)


def shard_experts(moe: SparseMoE, rank: int, size: int) -> None:
    """Experts [first, last) of the router's numbering stay on this rank (any count: ranks may hold
    one more than others, or none)."""
    total = len(moe.experts)
    first, last = rank * total // size, (rank + 1) * total // size
    moe.experts = nn.ModuleList(moe.experts[first:last])
    moe.first = first
    if moe.shared is not None:
        shard_mlp(moe.shared, rank, size)


def keep_outputs(linear: nn.Linear, rank: int, rows: int) -> None:
    """Output features [rank * rows, (rank + 1) * rows) of `linear` (and of its bias)."""
    part = slice(rank * rows, (rank + 1) * rows)
    linear.weight = nn.Parameter(linear.weight[part].clone(), requires_grad=False)   # (rows, in)
    if linear.bias is not None:
        linear.bias = nn.Parameter(linear.bias[part].clone(), requires_grad=False)
    linear.out_features = rows


def keep_inputs(linear: nn.Linear, rank: int, columns: int) -> None:
    """Input features [rank * columns, ...) of `linear`; the bias stays on rank 0 only, as the ranks'
    outputs are summed."""
    part = slice(rank * columns, (rank + 1) * columns)
    linear.weight = nn.Parameter(linear.weight[:, part].clone(), requires_grad=False)  # (out, columns)
    if linear.bias is not None and rank:
        linear.register_parameter("bias", None)
    linear.in_features = columns


def sum_output(module: nn.Module, inputs: Any, output: torch.Tensor) -> None:
    """Forward hook: this rank's partial output, summed over the ranks in place."""
    reduce_sum(output)
