"""What crosses the service's wire, both ways: steps as JSON lines, results, and the tokenizer.

The server encodes with these functions and the page's HTTP client decodes with their inverses,
so the format is written down once. No web framework here: the page imports this module.
"""
from __future__ import annotations

from typing import Any

import torch

from ..canvas import Canvas
from ..codec import TextCodec
from ..loop import Step
from ..pins import best_first

# Per-slot fields of a step line, each a (B, P) or (B, P, K) tensor of Step, with its dtype.
SLOT_FIELDS: dict[str, torch.dtype] = {
    "tokens": torch.long, "masked": torch.bool, "committed": torch.bool, "confidence": torch.float32,
    "committed_at": torch.long, "guided": torch.bool, "top_ids": torch.long, "top_probs": torch.float32,
}


def step_line(step: Step, canvas: Canvas, edit_id: str) -> dict[str, Any]:
    """One denoising step: per candidate, per span, its text so far (MASK_GLYPH where undecided)
    and each slot's token, masked flag, this step's commits, confidence, commit step and top-K.
    Floats go out at full float32 precision, so a client rebuilds the step exactly."""
    candidates = []
    for b in range(step.tokens.shape[0]):
        drafts = canvas.drafts(step.tokens[b], step.masked[b])
        spans = [{"text": text, **{name: getattr(step, name)[b, lo:hi].tolist() for name in SLOT_FIELDS}}
                 for text, (lo, hi) in zip(drafts, canvas.slot_ranges)]
        candidates.append({"spans": spans})
    return {"id": edit_id, "step": step.index, "round": step.round, "forwards": step.forwards,
            "ms": round(step.elapsed * 1000, 1), "candidates": candidates}


def step_from_line(line: dict[str, Any], canvas: Canvas) -> Step:
    """The Step a `step_line` was made from, on the client's own `canvas` (built as the server's
    was); `texts` rendered from it as `engine.infill` renders them. ValueError if the line's spans
    do not fit the canvas (the two sides tokenized the document differently)."""
    widths = [hi - lo for lo, hi in canvas.slot_ranges]
    for candidate in line["candidates"]:
        if [len(span["tokens"]) for span in candidate["spans"]] != widths:
            raise ValueError("the service laid the spans out differently from this page's tokenizer "
                             f"({[len(s['tokens']) for s in candidate['spans']]} slots, expected {widths})")
    fields = {name: torch.tensor([[v for span in c["spans"] for v in span[name]] for c in line["candidates"]],
                                 dtype=dtype) for name, dtype in SLOT_FIELDS.items()}
    texts = tuple(canvas.render(fields["tokens"][b], fields["masked"][b]) for b in range(len(line["candidates"])))
    return Step(index=line["step"], round=line.get("round", 0), positions=canvas.slots, forwards=line["forwards"],
                elapsed=line["ms"] / 1000, texts=texts, **fields)


def placed_spans(canvas: Canvas, step: Step, candidate: int = 0) -> list[tuple[int, int]]:
    """Where each span's new text lies in the candidate's finished document, in document order."""
    return canvas.placed(step.tokens[candidate], step.masked[candidate])


def result(step: Step, canvas: Canvas, edit_id: str) -> dict[str, Any]:
    """The finished edit: the first candidate's text and spans, every candidate when there are several.
    A canvas with a row per place of an "include" (engine.pins) lists them most likely first."""
    if canvas.ids.dim() == 2:
        step = best_first(step)
    out: dict[str, Any] = {"id": edit_id, "text": step.texts[0], "spans": placed_spans(canvas, step),
                           "forwards": step.forwards, "ms": round(step.elapsed * 1000, 1)}
    if len(step.texts) > 1:
        out["candidates"] = [{"text": text, "spans": placed_spans(canvas, step, b)}
                             for b, text in enumerate(step.texts)]
    return out


def codec_json(codec: TextCodec) -> dict[str, Any]:
    """The tokenizer (tokenizer.json as text) and the special ids the sampler knows by name."""
    return {"tokenizer": codec.tokenizer.backend_tokenizer.to_str(), "frame_prefix": list(codec.frame_prefix),
            "frame_suffix": list(codec.frame_suffix), "eos_id": codec.eos_id, "pad_id": codec.pad_id,
            "mask_id": codec.mask_id, "banned_ids": list(codec.banned_ids)}


def codec_from_json(data: dict[str, Any]) -> TextCodec:
    """The TextCodec `codec_json` describes: the same tokens for the same text."""
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    tokenizer = PreTrainedTokenizerFast(tokenizer_object=Tokenizer.from_str(data["tokenizer"]))
    return TextCodec(tokenizer=tokenizer, frame_prefix=tuple(data["frame_prefix"]),
                     frame_suffix=tuple(data["frame_suffix"]), eos_id=data["eos_id"], pad_id=data["pad_id"],
                     mask_id=data["mask_id"], banned_ids=tuple(data["banned_ids"]))
