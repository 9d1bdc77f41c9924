"""Instruction edits: the instruction laid out around the canvas, and classifier-free guidance.

The conditional canvas is the document with the instruction in front, in the model's chat template
where its tokenizer has one (the user's turn holds the instruction; the assistant's turn is the
document, span slots included: the part the model writes), else in a plain-text preamble. The
unconditional canvas is the same layout with the instruction left out (an empty user turn), so
that guidance contrasts the instruction alone, not the template: against the plain document, the
template's own tokens ("assistant", "user") were what guidance amplified (docs/MODEL.md). With
guidance w > 0, each forward runs both as one
`forward_many` (the Llama family packs them into one pass; under the scheduler they join the other
edits' rows), and the span logits become uncond + (1 + w) (cond - uncond) (Ho & Salimans 2022,
"Classifier-Free Diffusion Guidance"; LLaDA's `cfg_scale`, whose unconditional canvas masks the
prompt instead). Layouts per family and why: docs/MODEL.md, "Instruction edits".
"""
from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from typing import Any

import torch

from .canvas import Canvas, Prompt
from .codec import TextCodec
from .context import context_window
from .limits import OverLimit, check_instruction
from .model import Call, CausalCall, CausalView, Delegating, DiffusionLM, ForwardCall
from .settings import SamplerSettings

PREAMBLE = "### Instruction\n{instruction}\n\n### Text\n"  # base checkpoints: no chat template
_MARK = "\uE000SHARPEN-DOCUMENT\uE000"  # stands for the document while the template is rendered


def read_instruction(value: Any) -> str | None:
    """The instruction a request carries: None when absent or blank (an empty instruction is none);
    a ValueError naming the field for anything else that is not text, or past the limit."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError(f"instruction must be text, got {type(value).__name__}")
    if not value.strip():
        return None
    if "\x00" in value:
        raise ValueError("instruction: holds a NUL character")
    check_instruction(len(value))
    return value.strip()


def layout(codec: TextCodec, instruction: str) -> Prompt:
    """The ids around the document: the chat template's user turn and the assistant turn's opening
    in front, its closing after; a plain preamble where the tokenizer has no template. Ids the
    codec's frame already puts at either end (a BOS) are left to the frame. `bare`: the same head
    with an empty instruction."""
    head, tail, how = _around(codec, instruction)
    return Prompt(instruction, head, tail, how, _around(codec, "")[0])


def _around(codec: TextCodec, instruction: str) -> tuple[tuple[int, ...], tuple[int, ...], str]:
    template = getattr(codec.tokenizer, "chat_template", None)
    before, after, how = PREAMBLE.format(instruction=instruction), "", "preamble"
    if template:
        rendered = codec.tokenizer.apply_chat_template(
            [{"role": "user", "content": instruction}, {"role": "assistant", "content": _MARK}], tokenize=False)
        if isinstance(rendered, str) and rendered.count(_MARK) == 1:
            before, after = rendered.split(_MARK)
            how = "chat template"
    head, tail = codec.encode(before), codec.encode(after)
    f, s = len(codec.frame_prefix), len(codec.frame_suffix)
    if f and tuple(head[:f]) == codec.frame_prefix:
        head = head[f:]
    if s and tuple(tail[-s:]) == codec.frame_suffix:
        tail = tail[:-s]
    return tuple(head), tuple(tail), how


def with_instruction(canvas: Canvas, instruction: str | None, max_length: int | None = None) -> Canvas:
    """`canvas` carrying `instruction` (None or blank: the canvas as it is); OverLimit when the
    instructed canvas would not fit the model's context."""
    instruction = read_instruction(instruction)
    if instruction is None:
        return canvas
    prompt = layout(canvas.codec, instruction)
    need = canvas.length + len(prompt.head) + len(prompt.tail)
    if max_length is not None and need > max_length:
        raise OverLimit(f"instruction: the document with the instruction needs {need:,} tokens; "
                        f"the model's context is {max_length:,}")
    return dataclasses.replace(canvas, prompt=prompt)


def instructed(model: DiffusionLM, canvas: Canvas, settings: SamplerSettings) -> DiffusionLM:
    """The model the loop runs an edit of `canvas` on: `model` itself without an instruction."""
    if canvas.prompt is None:
        return model
    window = context_window(canvas.slots, settings.context_window)
    return Guided(model, canvas, settings.guidance, window)


class Guided(Delegating):
    """`model` reading the instruction: each forward gets the calls the loop makes over the canvas it
    holds (plain, as the context strategy cut it to `window`) and sends, as one `forward_many`, the
    instructed canvas, the bare one when `guidance` > 0, and the frontier guide's causal read with
    the instruction in front; the span slots' logits are mixed as the module says.

    The instructed canvas is frame + head + the window's document rows + tail + frame, whatever
    the window cut, so the instruction is always read; the slots move right by what was put in
    front. The unconditional canvas is the same with the bare head (no instruction)."""

    def __init__(self, model: DiffusionLM, canvas: Canvas, guidance: float, window: slice):
        super().__init__(model)
        assert canvas.prompt is not None
        codec, prompt, device = canvas.codec, canvas.prompt, model.device
        self.guidance = guidance
        self.front = 0 if window.start else len(codec.frame_prefix)   # frame rows the window holds
        self.back = len(codec.frame_suffix) if window.stop is None or window.stop >= canvas.length else 0
        self.head = torch.tensor(codec.frame_prefix + prompt.head, dtype=torch.long, device=device)
        self.bare = torch.tensor(codec.frame_prefix + prompt.bare, dtype=torch.long, device=device)
        self.tail = torch.tensor(prompt.tail + codec.frame_suffix, dtype=torch.long, device=device)
        self.prompt = prompt

    def wrap(self, ids: torch.Tensor, positions: torch.Tensor, head: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, L) window of the plain canvas, its (P,) slots -> the canvas laid out after `head`, its slots."""
        B, L = ids.shape
        body = ids[:, self.front:L - self.back]
        laid = torch.cat([head.expand(B, -1), body, self.tail.expand(B, -1)], 1)
        return laid, positions + len(head) - self.front

    def forward_many(self, calls: Sequence[Call]) -> list[Any]:
        inner = [part for call in calls for part in self.translate(call)]
        answers = iter(self.model.forward_many(inner))
        return [self.answer(call, answers) for call in calls]

    def translate(self, call: Call) -> list[Call]:
        """The calls the model runs for one of the loop's: a denoiser forward as the instructed canvas
        (and the bare one); a causal read from the start with the instruction's rows after the start."""
        if isinstance(call, CausalCall):
            view = call.view.view if isinstance(call.view, InstructedView) else call.view
            if call.past is not None:
                return [CausalCall(view, call.ids, call.past)]
            head = torch.tensor(self.prompt.head, dtype=call.ids.dtype, device=call.ids.device)
            return [CausalCall(view, torch.cat([call.ids[:, :1], head.expand(len(call.ids), -1), call.ids[:, 1:]], 1))]
        own, bare = call.cache if call.cache is not None else (None, None)
        out: list[Call] = [ForwardCall(*self.wrap(call.ids, call.positions, self.head), call.cached, own,
                                       freeze=call.freeze)]
        if self.guidance > 0:
            out.append(ForwardCall(*self.wrap(call.ids, call.positions, self.bare), call.cached, bare,
                                   freeze=call.freeze))
        return out

    def answer(self, call: Call, answers: Iterator[Any]) -> Any:
        """One of the loop's calls answered from the model's answers to its `translate`d calls: the
        logits mixed (a cache: the pair of both canvases' caches), a causal read's rows from the start."""
        if isinstance(call, CausalCall):
            out, past = next(answers)
            return (out[:, len(self.prompt.head):], past) if call.past is None else (out, past)
        cond = next(answers)
        uncond = next(answers) if self.guidance > 0 else None
        if not call.cached:
            return self.mix(cond, uncond)
        logits, cache = self.mix(cond[0], None if uncond is None else uncond[0]), cond[1]
        return logits, (cache, None if uncond is None else uncond[1])

    def mix(self, cond: torch.Tensor, uncond: torch.Tensor | None) -> torch.Tensor:
        """(B, P, V) each -> uncond + (1 + w)(cond - uncond), in float32."""
        if uncond is None:
            return cond
        cond, uncond = cond.float(), uncond.float()
        return uncond + (1 + self.guidance) * (cond - uncond)

    def logits(self, ids: torch.Tensor) -> torch.Tensor:
        return self.logits_at(ids, torch.arange(ids.shape[1], device=ids.device))

    def logits_at(self, ids: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        return self.forward_many([ForwardCall(ids, positions)])[0]

    def cached_logits(self, ids: torch.Tensor, positions: torch.Tensor, cache: Any,
                      freeze: bool = False) -> tuple[torch.Tensor, Any]:
        return self.forward_many([ForwardCall(ids, positions, True, cache, freeze=freeze)])[0]

    def causal_view(self) -> CausalView | None:
        view = self.model.causal_view()
        return None if view is None else InstructedView(view, self.prompt.head)


class InstructedView:
    """The frontier guide's causal LM reading the instruction first: rows [start, head..., text]. The
    guide's row j (0: the start token) is the view's row j + H, so its predictions are the view's
    from row H on, and its cached rows are the view's plus the head's. Its reads riding in a forward
    are rewritten the same way by `Guided.translate`; `extend` serves the guide's closing."""

    def __init__(self, view: CausalView, head: tuple[int, ...]):
        self.view, self.start_id, self.head = view, view.start_id, head

    def extend(self, ids: torch.Tensor, past: Any) -> tuple[torch.Tensor, Any]:
        if past is not None:
            return self.view.extend(ids, past)
        head = torch.tensor(self.head, dtype=ids.dtype, device=ids.device).expand(ids.shape[0], -1)
        out, past = self.view.extend(torch.cat([ids[:, :1], head, ids[:, 1:]], 1), None)
        return out[:, len(self.head):], past

    def truncate(self, past: Any, rows: int) -> Any:
        return None if rows == 0 else self.view.truncate(past, rows + len(self.head))

    def prefix(self, ids: torch.Tensor) -> Any:
        head = torch.tensor(self.head, dtype=ids.dtype, device=ids.device)
        return self.view.prefix(torch.cat([ids[:1], head, ids[1:]]))

    def pick(self, past: Any, index: torch.Tensor) -> Any:
        return self.view.pick(past, index)
