"""LlamaFluency: a Llama-layout net's causal NLL of the document window around an edit (the page
ranks candidates by it, `DiffusionLM.fluency`; engine.tools.quality reports it beside speed), and
BaseView, the bundled model's adapted net seen as its base."""
from __future__ import annotations

import math
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import torch
import torch.nn.functional as F

from ..codec import SIDE, TextCodec, window
from .causal import CausalReader
from .llama_net import LlamaNet

if TYPE_CHECKING:
    from .moe_net import MoENet


class ShiftedModel(Protocol):
    """What LlamaFluency reads of its model (a LlamaDiffusionLM): the net, its tokenizer, and
    whether a start token is the net's row 0."""

    @property
    def net(self) -> LlamaNet | MoENet: ...
    @property
    def codec(self) -> TextCodec: ...
    @property
    def device(self) -> torch.device: ...
    @property
    def label(self) -> str: ...
    @property
    def shifted(self) -> bool: ...
    @property
    def start_id(self) -> int | None: ...


class LlamaFluency:
    """Per-token NLL of text under a causal LM: the net of `model` read causally, with the LoRA
    deltas that `adapter` merged into it taken out again on the fly (each adapted Linear's output
    minus scale * B(A(x)), forward hooks), so the base net is scored without a second copy of
    the weights. `adapter=None` scores the net as it is (a model that was never adapted); `base`:
    a BaseView the model already holds. `reader`: the causal reader to read through, whose
    remembered reads are then shared (the bundled model's guide: its read of the text before a
    span begins the scored window when the span is near the document's start); else its own.
    Windows around one span share the text before it, so they are read once (CausalReader.read)."""

    def __init__(self, model: ShiftedModel, adapter: Path | None = None, base: BaseView | None = None,
                 reader: CausalReader | None = None):
        if not model.shifted:
            raise ValueError(f"{model.label}: fluency needs a causal (shifted-head) net")
        if not isinstance(model.net, LlamaNet):
            raise ValueError(f"{model.label}: fluency reads dense Llama blocks, not {type(model.net).__name__}")
        self.model = model
        self.base = base or BaseView(model.net, lora_factors(adapter, model.net) if adapter is not None else {})
        self.reader = reader or CausalReader(model.net, self.base)

    @torch.inference_mode()
    def nll(self, text: str) -> float:
        """Mean NLL (nats) of `text`'s tokens, each given the ones before it."""
        ids = self.model.codec.encode(text)
        # the net's rows: the start token first where there is one, else token 0 has no score
        rows = ids if self.model.start_id is None else [self.model.start_id, *ids]
        if len(rows) < 2:
            return math.nan
        return self.reader.read(torch.tensor(rows, device=self.model.device), scored=True).nll.mean().item()

    def window_nll(self, document: str, start: int, end: int, side: int = SIDE) -> float:
        """`nll` of document[start:end] with `side` tokens of the document either side."""
        return self.nll(window(self.model.codec, document, start, end, side))


class BaseView:
    """An adapted net seen as its base: each adapted Linear's output minus its LoRA delta, by forward
    hooks, for the threads inside `active()` only. Other threads keep the adapted net: the
    scheduler's worker runs it while a job's thread scores or guides. The hooks exist while some
    thread is inside `active()`, so a net nobody reads as its base runs without them. `active(rows)`
    takes the deltas out of those rows of a packed (N, width) pass only: the guide's rows ride in
    the denoiser's forward (engine/families/packing.py) and the others stay adapted."""

    def __init__(self, net: torch.nn.Module, deltas: dict[str, tuple[torch.Tensor, torch.Tensor, float]]):
        self.net, self.deltas = net, deltas
        self.here = threading.local()
        self.lock = threading.Lock()
        self.users = 0
        self.hooks: list[torch.utils.hooks.RemovableHandle] = []

    @contextmanager
    def active(self, rows: torch.Tensor | None = None) -> Iterator[None]:
        with self.lock:
            if self.users == 0:
                modules = dict(self.net.named_modules())
                self.hooks = [modules[name].register_forward_hook(self.minus_delta(a, b, scale))
                              for name, (a, b, scale) in self.deltas.items()]
            self.users += 1
        self.here.on, self.here.rows = True, rows
        try:
            yield
        finally:
            self.here.on, self.here.rows = False, None
            with self.lock:
                self.users -= 1
                if self.users == 0:
                    for hook in self.hooks:
                        hook.remove()

    def minus_delta(self, a: torch.Tensor, b: torch.Tensor, scale: float):
        """A forward hook that turns an adapted Linear (W + scale * b @ a) back into W, in active threads."""
        def hook(module: torch.nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor
                 ) -> torch.Tensor | None:
            if not getattr(self.here, "on", False):
                return None
            x, rows = inputs[0], self.here.rows
            if rows is None:
                return output - scale * F.linear(F.linear(x, a), b)             # (..., r) -> (..., out)
            return output.index_add(0, rows, F.linear(F.linear(x[rows], a), b), alpha=-scale)  # (N, out)
        return hook


def lora_factors(adapter: Path, net: LlamaNet | MoENet) -> dict[str, tuple[torch.Tensor, torch.Tensor, float]]:
    """Module name -> (A (r, in), B (out, r), scale) for every LoRA pair of a Sharpen adapter file
    (format: engine.families.bundled). Whole-parameter replacements cannot be undone by a hook;
    the mask embedding can be ignored (scored text never holds the mask token)."""
    from safetensors import safe_open

    with safe_open(str(adapter), framework="pt") as f:
        scale = float((f.metadata() or {}).get("lora_scale", 1.0))
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    others = sorted(k for k in tensors if not k.endswith((".lora_a", ".lora_b")) and k != "mask_embedding")
    if others:
        raise ValueError(f"{adapter.name} replaces {others[:3]}: the base net cannot be recovered by hooks")
    like = net.embed.weight
    return {k.removesuffix(".weight.lora_a"): (v.to(like), tensors[k.replace(".lora_a", ".lora_b")].to(like), scale)
            for k, v in tensors.items() if k.endswith(".weight.lora_a")}
