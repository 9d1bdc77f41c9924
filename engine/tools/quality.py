"""Quality of an edit: the base model's fluency over the edited window, whether edited code still
parses, and agreement with a reference result (engine.tools.bench and engine.tools.eval use them)."""
from __future__ import annotations

import ast
import bisect
import itertools
import textwrap
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import torch
import torch.nn.functional as F

from ..codec import TextCodec
from ..families.llama import LlamaDiffusionLM

SIDE = 64  # tokens of unchanged text either side of the span in the scored window


class Fluency:
    """Per-token NLL of text under a causal LM: the net of `model` read causally, with the LoRA
    deltas that `adapter` merged into it taken out again on the fly (each adapted Linear's output
    minus scale * B(A(x)), forward hooks), so the base net is scored without a second copy of
    the weights. `adapter=None` scores the net as it is (a model that was never adapted)."""

    def __init__(self, model: LlamaDiffusionLM, adapter: Path | None = None):
        if not model.shifted:
            raise ValueError(f"{model.label}: fluency needs a causal (shifted-head) net")
        self.model = model
        self.deltas = lora_factors(adapter, model) if adapter is not None else {}

    @torch.inference_mode()
    def nll(self, text: str) -> float:
        """Mean NLL (nats) of `text`'s tokens, each given the ones before it."""
        ids = torch.tensor([self.model.codec.encode(text)], device=self.model.device)    # (1, L)
        with self.base_net():
            logits = self.model.logits(ids, causal=True)[0].float()                       # (L, V)
        first = 0 if self.model.start_id is not None else 1  # no start token: token 0 has no score
        return F.cross_entropy(logits[first:], ids[0, first:]).item()

    def window_nll(self, document: str, start: int, end: int, side: int = SIDE) -> float:
        """`nll` of document[start:end] with `side` tokens of the document either side."""
        return self.nll(window(self.model.codec, document, start, end, side))

    @contextmanager
    def base_net(self) -> Iterator[None]:
        modules = dict(self.model.net.named_modules())
        hooks = [modules[name].register_forward_hook(minus_delta(a, b, scale))
                 for name, (a, b, scale) in self.deltas.items()]
        try:
            yield
        finally:
            for hook in hooks:
                hook.remove()


def fluency_for(model) -> Fluency | None:
    """The scorer for `model`'s edits: the bundled model's base net (its adapter taken out), any
    other shifted-head Llama net read causally as it is; None for families without a causal view."""
    from ..families.bundled import ADAPTER, DefaultModel

    if isinstance(model, DefaultModel) and model.adapted:
        return Fluency(model, ADAPTER)
    if isinstance(model, LlamaDiffusionLM) and model.shifted:
        return Fluency(model)
    return None


def minus_delta(a: torch.Tensor, b: torch.Tensor, scale: float):
    """A forward hook that turns an adapted Linear (W + scale * b @ a) back into W."""
    def hook(module: torch.nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> torch.Tensor:
        return output - scale * F.linear(F.linear(inputs[0], a), b)             # (..., r) -> (..., out)
    return hook


def lora_factors(adapter: Path, model: LlamaDiffusionLM) -> dict[str, tuple[torch.Tensor, torch.Tensor, float]]:
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
    like = model.net.embed.weight
    return {k.removesuffix(".weight.lora_a"): (v.to(like), tensors[k.replace(".lora_a", ".lora_b")].to(like), scale)
            for k, v in tensors.items() if k.endswith(".weight.lora_a")}


def window(codec: TextCodec, document: str, start: int, end: int, side: int = SIDE) -> str:
    """document[start:end] with `side` tokens of the text before and after it."""
    before, after = codec.encode(document[:start]), codec.encode(document[end:])
    return codec.decode(before[-side:]) + document[start:end] + codec.decode(after[:side])


# ---- code: does the edit break parsing? ----------------------------------------------------------

def parses(text: str) -> bool:
    try:
        ast.parse(text)
        return True
    except (SyntaxError, ValueError):  # ValueError: a NUL byte
        return False


def code_block(text: str, start: int, end: int) -> tuple[int, int] | None:
    """Character range of whole lines around text[start:end] that parses on its own once dedented:
    the span's lines with their enclosing header (def, if, ...) and its body, widened header by
    header up to the whole text, each ended early where its tail was cut off; None when no such
    block parses.
    Starting from the header keeps a span's indentation meaningful: a dedented lone line would
    parse with an extra leading space."""
    lines = text.splitlines(keepends=True)
    if not lines:
        return None
    offsets = list(itertools.accumulate((len(x) for x in lines), initial=0))
    first = min(bisect.bisect_right(offsets, start) - 1, len(lines) - 1)
    last = min(max(first, bisect.bisect_left(offsets, end) - 1), len(lines) - 1)
    if min_indent(lines[first:last + 1]) > 0:
        first, last = widen(lines, first, last)
    span_last = last
    while True:
        for end_line in range(last, span_last - 1, -1):  # a block cut off by the document's end
            a, b = offsets[first], offsets[end_line + 1]  # parses without its unfinished tail
            if parses(textwrap.dedent(text[a:b])):
                return a, b
        if (first, last) == (0, len(lines) - 1):
            return None
        first, last = widen(lines, first, last)


def widen(lines: Sequence[str], first: int, last: int) -> tuple[int, int]:
    """The next enclosing block: up to the nearest line indented less than the range, down to the
    end of that header's body; the whole text when there is no such header."""
    depth = min_indent(lines[first:last + 1])
    header = next((i for i in range(first - 1, -1, -1) if lines[i].strip() and indent(lines[i]) < depth), None)
    if header is None:
        return 0, len(lines) - 1
    end = last
    while end + 1 < len(lines) and (not lines[end + 1].strip() or indent(lines[end + 1]) > indent(lines[header])):
        end += 1
    return header, end


def indent(line: str) -> int:
    return len(line) - len(line.lstrip(" \t"))


def min_indent(lines: Sequence[str]) -> int:
    return min((indent(x) for x in lines if x.strip()), default=0)


def edit_parses(original: str, edited: str, start: int, end: int) -> bool | None:
    """Whether the block of `original` around [start, end) still parses in `edited`, which is
    `original` with only [start, end) rewritten; None when that block did not parse before."""
    block = code_block(original, start, end)
    if block is None:
        return None
    a, b = block
    return parses(textwrap.dedent(edited[a:b + len(edited) - len(original)]))


def agreement(ids: Sequence[Sequence[int]], reference: Sequence[Sequence[int]]) -> float:
    """Share of span tokens equal to the reference's token at the same place (over all spans)."""
    same = sum(sum(p == q for p, q in zip(x, y)) for x, y in zip(ids, reference))
    total = sum(max(len(x), len(y)) for x, y in zip(ids, reference))
    return same / total if total else 1.0  # two empty results agree
