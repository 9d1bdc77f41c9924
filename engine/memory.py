"""Will a model fit? Weights + context cache + activations against the device's free memory, at load.

The estimate is made before any weight is read (parameter counts come from the safetensors headers,
cache and activation sizes from config.json), so a model that cannot fit is refused with the figures
instead of failing minutes later with an out-of-memory error halfway through reading 16 GB.
"""
from __future__ import annotations

import json
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .quantize import quantized_params, weight_bytes
from .settings import knobs

GB = 1e9
SPAN_ROWS = 256  # the widest span estimated for (LLaDA's own answers are 256 tokens)
LOGIT_COPIES = 3  # float32 copies of a span's logits the loop holds at once: upcast, softmax, draws
# The canvas planned for at load: the model's context, up to this. A released config's context
# (32k-40k tokens for Qwen3) x the dial's most candidates would refuse a 0.6B model on a laptop that
# edits 256-token canvases in 3 GB; an editor's canvas is a document's window, far below that.
PLANNED_TOKENS = 4096


def dial_candidates() -> int:
    """The most candidates the page's dial offers: each one is a row of the batch."""
    slider = next(k for k in knobs() if k.name == "candidates").slider
    assert slider is not None
    return int(slider[1])


class ModelTooLarge(ValueError):
    """The estimate does not fit the device; the message names the figures and what to change."""


@dataclass(frozen=True)
class ModelSize:
    """What fixes a model's memory: its parameter count and the widths its cache and activations have."""

    params: int
    layers: int
    width: int
    kv_width: int        # key/value heads x head width: one position's keys (or values) in one layer
    ffn: int
    vocab: int
    max_length: int
    stored: torch.dtype  # the checkpoint's own dtype

    @classmethod
    def of_net(cls, net: torch.nn.Module) -> ModelSize:
        """From a built net with a `shape` (a LlamaNet or MoENet, engine/families; possibly on the
        meta device: nothing is allocated). An MoE net's activations are estimated at its dense
        layers' feed-forward width."""
        shape: Any = net.shape
        ffn = shape.ffn if hasattr(shape, "ffn") else shape.dense_ffn
        first = next(net.parameters())
        return cls(params=sum(p.numel() for p in net.parameters()), layers=shape.layers, width=shape.width,
                   kv_width=shape.kv_heads * shape.head_dim, ffn=ffn, vocab=shape.vocab,
                   max_length=shape.max_length, stored=first.dtype)

    @classmethod
    def of_folder(cls, folder: Path, config: dict) -> ModelSize:
        """From a model folder's safetensors headers and config.json, without reading a weight."""
        params, stored = safetensors_params(sorted(folder.glob("*.safetensors")))
        c = {**config, **(config.get("text_config") or {})}  # DiffusionGemma nests its text model

        def first(*keys: str, default: int = 0) -> int:
            return int(next((c[k] for k in keys if c.get(k)), default))

        width = first("hidden_size", "d_model", "n_embd")               # n_embd, n_head: Steerling
        heads = first("num_attention_heads", "n_heads", "n_head", default=1)
        head_dim = first("head_dim", default=width // heads)
        return cls(params=params, layers=first("num_hidden_layers", "n_layers"), width=width,
                   kv_width=first("num_key_value_heads", "n_kv_heads", default=heads) * head_dim,
                   ffn=first("intermediate_size", "mlp_hidden_size", default=4 * width),
                   vocab=first("embedding_size", "vocab_size"),
                   max_length=first("max_sequence_length", "max_position_embeddings", default=4096),
                   stored=stored)


SAFETENSORS_DTYPES = {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
                      "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8,
                      "U8": torch.uint8, "BOOL": torch.bool}


def safetensors_params(files: Iterable[Path]) -> tuple[int, torch.dtype]:
    """Elements in every tensor of `files` and the most common floating dtype, from their headers
    (8 bytes of header length, then a JSON table of dtype and shape per tensor)."""
    params, counts = 0, dict[torch.dtype, int]()
    for path in files:
        with open(path, "rb") as f:
            (size,) = struct.unpack("<Q", f.read(8))
            header = json.loads(f.read(size))
        for name, info in header.items():
            if name == "__metadata__":
                continue
            n = 1
            for dim in info["shape"]:
                n *= dim
            params += n
            dtype = SAFETENSORS_DTYPES.get(info["dtype"], torch.float32)
            counts[dtype] = counts.get(dtype, 0) + n
    floating = {d: n for d, n in counts.items() if d.is_floating_point} or {torch.float32: 0}
    return params, max(floating, key=floating.__getitem__)


@dataclass(frozen=True)
class MemoryPlan:
    """Bytes a model needs on `device` at `tokens` x `batch`, and what the device has free."""

    weights: int
    cache: int
    activations: int
    free: int | None     # None: unknown (the plan is printed, nothing is refused)
    dtype: torch.dtype
    tokens: int
    batch: int
    device: str
    quantize: str | None = None  # the linear layers' weights (--quantize), else all in `dtype`

    @property
    def total(self) -> int:
        return self.weights + self.cache + self.activations

    @property
    def fits(self) -> bool:
        return self.free is None or self.total <= self.free

    def __str__(self) -> str:
        free = "unknown free memory" if self.free is None else f"{self.free / GB:.1f} GB free"
        held = str(self.dtype).removeprefix("torch.") + (f" ({self.quantize} linear layers)" if self.quantize else "")
        return (f"model {self.weights / GB:.1f} GB {held} + cache "
                f"{self.cache / GB:.1f} GB at {self.tokens} tokens x {self.batch} + activations "
                f"{self.activations / GB:.1f} GB = {self.total / GB:.1f} GB of {free} on {self.device}")

    def refusal(self) -> str:
        return (f"the model will not fit: {self} (an estimate). Use --dtype bfloat16 (half of float32), "
                "a device with more free memory, or a smaller model.")


def plan(size: ModelSize, dtype: torch.dtype, device: torch.device, *, tokens: int | None = None,
         batch: int | None = None, span: int = SPAN_ROWS, quantize: str | None = None) -> MemoryPlan:
    """The estimate for the longest canvas (`tokens`, default the model's context up to PLANNED_TOKENS) in a batch of
    `batch` candidates: weights; every layer's keys and values of that canvas (DualCache's context);
    one layer's activations at a time (inference keeps no others) plus a span's logits in float32.
    `batch` defaults to the most candidates the dial offers; `span`: the widest span's tokens;
    `quantize`: the linear layers' weights in int8 or int4 (engine/quantize.py)."""
    tokens, batch = tokens or min(size.max_length, PLANNED_TOKENS), batch or dial_candidates()
    item = torch.empty((), dtype=dtype).element_size()
    rows = batch * tokens
    cache = size.layers * 2 * size.kv_width * rows * item
    # residual, its norm, queries, attention output, keys, values; MLP gate, up and their product
    layer = rows * (4 * size.width + 2 * size.kv_width + 3 * size.ffn) * item
    logits = batch * min(tokens, span) * size.vocab * (item + 4 * LOGIT_COPIES)
    linear = quantized_params(size.layers, size.width, size.kv_width, size.ffn)
    return MemoryPlan(weights=weight_bytes(size.params, linear, item, quantize, size.width), cache=cache,
                      activations=layer + logits, free=free_memory(device), dtype=dtype, tokens=tokens,
                      batch=batch, device=str(device), quantize=quantize)


def free_memory(device: torch.device) -> int | None:
    """Free bytes on `device`: the GPU's own count, or the RAM Linux says is available."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def check(memory: MemoryPlan) -> MemoryPlan:
    """`memory` if it fits, else ModelTooLarge saying by how much it does not."""
    if not memory.fits:
        raise ModelTooLarge(memory.refusal())
    return memory
