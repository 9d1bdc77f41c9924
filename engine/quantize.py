"""Weight-only quantisation of a model's linear layers: int8 per output row, int4 in groups (CUDA).

Weight-only: activations stay in the model's float dtype and each output row is its input row times
the (dequantised) weights, so a row's result is its own. The scheduler packs several edits' rows
into one forward and promises each edit what it would get alone; torch.ao's dynamic int8 (one
activation scale per forward) broke that promise (docs/PERFORMANCE.md, "Quantised weights").

Kernels are PyTorch's own, as gpt-fast's quantize.py uses them: `_weight_int8pack_mm` (int8; on a
CPU only vectorised with AVX-512, elsewhere the weight is widened and a float matmul runs, which is
torchao's own eager path too) and tinygemm's `_weight_int4pack_mm` with `_convert_weight_to_int4pack`
(int4: bfloat16 activations on CUDA; the CPU twin serves the tests). The head and the embedding stay
in float: the head runs on the span's rows only, and its error would land on every logit.
"""
from __future__ import annotations

import logging

import torch
import torch.nn.functional as F
from torch import nn

log = logging.getLogger(__name__)

QUANTIZE = ("int8", "int4")
INT4_GROUPS = (128, 64, 32)   # input columns sharing one scale and zero: the largest that divides the width
INT4_LEVELS = 16


def parse_quantize(name: str | None, device: torch.device) -> str | None:
    """`name` (--quantize) if `device` runs it; None for no quantisation; else a one-line ValueError."""
    if name is None or name == "none":
        return None
    if name not in QUANTIZE:
        raise ValueError(f"unknown --quantize {name!r}: use {' or '.join(QUANTIZE)} (or none for float weights)")
    if name == "int4" and device.type != "cuda":
        raise ValueError(f"--quantize int4 runs on a CUDA GPU only, not on {device.type} (PyTorch's CPU int4 "
                         "kernel is far slower than float32: docs/PERFORMANCE.md); use --quantize int8 on a CPU")
    return name


def int8_packed_kernel(device: torch.device) -> bool:
    """Whether `_weight_int8pack_mm` is the fast path on `device`: on CUDA, and on CPUs whose PyTorch
    build runs its vectorised (AVX-512) kernel; on others (AVX2) its scalar loop is ~30x slower than
    float32 (docs/PERFORMANCE.md), so the weight is widened to float for the matmul instead."""
    return device.type == "cuda" or torch.backends.cpu.get_cpu_capability().startswith("AVX512")


class Int8Linear(nn.Module):
    """y = (x @ q.T) * scales + bias: q (out, in) int8, one scale per output row (symmetric:
    scale = the row's largest |w| / 127), so each weight moves by at most half a scale."""

    weight: torch.Tensor          # (out, in) int8
    scales: torch.Tensor          # (out,)
    bias: torch.Tensor | None

    def __init__(self, linear: nn.Linear, *, packed: bool | None = None):
        super().__init__()
        w = linear.weight.detach()                                               # (out, in)
        scales = w.abs().amax(dim=1).float().clamp(min=1e-12) / 127              # (out,)
        q = torch.round(w.float() / scales[:, None]).clamp(-127, 127).to(torch.int8)
        self.register_buffer("weight", q)
        self.register_buffer("scales", scales.to(w.dtype))
        self.register_buffer("bias", None if linear.bias is None else linear.bias.detach())
        self.packed = int8_packed_kernel(w.device) if packed is None else packed

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.reshape(-1, x.shape[-1])                                        # (N, in)
        if self.packed:
            y = torch.ops.aten._weight_int8pack_mm(rows, self.weight, self.scales.to(x.dtype))
        else:
            y = F.linear(rows, self.weight.to(x.dtype)) * self.scales.to(x.dtype)
        y = y.reshape(*x.shape[:-1], -1)                                         # (..., out)
        return y if self.bias is None else y + self.bias


def int4_group(width: int) -> int | None:
    """The group size for a layer `width` inputs wide, None where none divides it."""
    return next((g for g in INT4_GROUPS if width % g == 0), None)


def quantize_int4(w: torch.Tensor, group: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(out, in) float -> q (out, in) int32 in 0..15 and scales_and_zeros (in/group, out, 2) float32,
    tinygemm's layout: w ~ (q - 8) * scale + zero, each group's range split in 15 steps."""
    out, width = w.shape
    groups = w.float().reshape(out, width // group, group)                       # (out, G, group)
    low, high = groups.amin(-1, keepdim=True), groups.amax(-1, keepdim=True)
    scale = (high - low).clamp(min=1e-6) / (INT4_LEVELS - 1)                     # (out, G, 1)
    q = torch.round((groups - low) / scale).clamp(0, INT4_LEVELS - 1).to(torch.int32).reshape(out, width)
    zero = low + scale * (INT4_LEVELS // 2)
    return q, torch.cat([scale, zero], dim=-1).transpose(0, 1).contiguous()     # (G, out, 2)


def dequantize_int4(q: torch.Tensor, scales_and_zeros: torch.Tensor, group: int) -> torch.Tensor:
    """The float weights (out, in) that `quantize_int4`'s q and scales_and_zeros stand for."""
    out, width = q.shape
    scale, zero = scales_and_zeros.transpose(0, 1).unbind(-1)                    # (out, G) each
    groups = (q.reshape(out, width // group, group) - INT4_LEVELS // 2) * scale[..., None] + zero[..., None]
    return groups.reshape(out, width)


def pack_nibbles(q: torch.Tensor) -> torch.Tensor:
    """(out, in) values 0..15 -> (out, in/2) uint8, even columns in the high nibble: the layout CUDA's
    `_convert_weight_to_int4pack` reads (torch >= 2.5, as torchao packs it)."""
    return (q[:, ::2] << 4 | q[:, 1::2]).to(torch.uint8)


def inner_k_tiles(width: int) -> int:
    """tinygemm's inner K tiles: 8, 4 or 2, the largest whose 16-column tiles divide the width."""
    return next(t for t in (8, 4, 2) if width % (16 * t) == 0)


class Int4Linear(nn.Module):
    """Weights in 4 bits, `group` input columns per scale and zero, packed for tinygemm (CUDA: bf16
    activations; the CPU kernel checks the same packing in tests)."""

    weight: torch.Tensor          # tinygemm's tiles (CUDA) or the CPU kernel's layout
    scales_and_zeros: torch.Tensor  # (in/group, out, 2)
    bias: torch.Tensor | None

    def __init__(self, linear: nn.Linear, group: int):
        super().__init__()
        w = linear.weight.detach()
        q, scales_and_zeros = quantize_int4(w, group)
        tiles = inner_k_tiles(w.shape[1])
        if w.is_cuda:
            packed = torch.ops.aten._convert_weight_to_int4pack(pack_nibbles(q).contiguous(), tiles)
            scales_and_zeros = scales_and_zeros.to(torch.bfloat16)
        else:
            packed = torch.ops.aten._convert_weight_to_int4pack_for_cpu(q, tiles)
        self.register_buffer("weight", packed)
        self.register_buffer("scales_and_zeros", scales_and_zeros)
        self.register_buffer("bias", None if linear.bias is None else linear.bias.detach())
        self.group, self.out_features = group, w.shape[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.reshape(-1, x.shape[-1])                                        # (N, in)
        if rows.is_cuda:
            y = torch.ops.aten._weight_int4pack_mm(rows.to(torch.bfloat16), self.weight, self.group,
                                                  self.scales_and_zeros).to(x.dtype)
        else:
            y = torch.ops.aten._weight_int4pack_mm_for_cpu(rows, self.weight, self.group,
                                                          self.scales_and_zeros.to(x.dtype))
        y = y.reshape(*x.shape[:-1], self.out_features)
        return y if self.bias is None else y + self.bias


def fits_int4(linear: nn.Linear) -> bool:
    """tinygemm's shape rules: groups of 32+ inputs, 32-column tiles, outputs in multiples of 8."""
    return int4_group(linear.in_features) is not None and linear.out_features % 8 == 0


def quantize_net(net: nn.Module, mode: str, vocab: int) -> int:
    """Replace `net`'s nn.Linear layers by `mode` ones in place, except those `vocab` wide (heads);
    returns how many were replaced. Each float weight is freed as its layer is replaced."""
    targets = [(name, m) for name, m in net.named_modules()
               if type(m) is nn.Linear and m.out_features != vocab and (mode != "int4" or fits_int4(m))]
    for name, linear in targets:
        parent_name, _, child = name.rpartition(".")
        parent = net.get_submodule(parent_name) if parent_name else net
        group = int4_group(linear.in_features) or INT4_GROUPS[-1]  # int4 targets all have one
        setattr(parent, child, Int8Linear(linear) if mode == "int8" else Int4Linear(linear, group))
    return len(targets)


def quantized_params(layers: int, width: int, kv_width: int, ffn: int) -> int:
    """Weights a quantised Llama-layout net holds in its linear layers (attention and a dense
    feed-forward per layer; mixture-of-experts tables stay float), for the memory estimate."""
    return layers * (2 * width * width + 2 * width * kv_width + 3 * width * ffn)


def weight_bytes(params: int, linear: int, item: int, mode: str | None, width: int) -> int:
    """Bytes of `params` weights, `linear` of them quantised to `mode`, the rest `item` bytes each.
    int8 adds one float scale per output row (~`width` inputs); int4 a bfloat16 scale and zero per
    group of inputs."""
    if mode is None:
        return params * item
    linear = min(linear, params)
    if mode == "int8":
        per_weight = 1 + item / width
    else:
        per_weight = 0.5 + 2 * 2 / (int4_group(width) or INT4_GROUPS[-1])
    return int((params - linear) * item + linear * per_weight)


def quantize_model(model, mode: str | None) -> None:
    """`model.net`'s linear layers in `mode` (None: as they are); a model without a `net` module
    (a hosted model) or with nothing to quantise is a ValueError in one line."""
    if mode is None:
        return
    net = getattr(model, "net", None)
    if not isinstance(net, nn.Module):
        raise ValueError(f"--quantize {mode}: {model.label} has no local weights to quantise")
    replaced = quantize_net(net, mode, model.vocab_size)
    if replaced == 0:
        raise ValueError(f"--quantize {mode}: {model.label} has no linear layer that {mode} can hold")
    log.info("quantised %d linear layers to %s (the head and the embedding stay float)", replaced, mode)
