"""What crosses the service's wire, both ways: the edit request, steps as JSON lines, results, and
the tokenizer.

The page's HTTP client writes an edit with `edit_body` and the service (and the CLI's --jsonl lines)
read it with `read_edit`; the server encodes steps and results with these functions and the client
decodes them with their inverses, so the format is written down once. No web framework here: the
page and the CLI import this module.
"""
from __future__ import annotations

import dataclasses
from typing import Any

import torch

from ..canvas import Canvas, Constraint, Span
from ..codec import TextCodec
from ..limits import check_document, check_span_length
from ..loop import Step
from ..model import DiffusionLM
from ..pins import best_first
from ..settings import SamplerSettings
from ..template import DEFAULT_MARKER, holes

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


# What a client reads of a served model besides its tokenizer (GET /v1/tokenizer); the rest of
# DiffusionLM's attributes keep their defaults there (no cache, no length tokens: it holds no weights).
DESCRIBED = ("label", "max_length", "vocab_size", "noise", "attention_block")


def model_json(model: DiffusionLM) -> dict[str, Any]:
    """The served model as a client lays canvases out for it: `DESCRIBED` and its tokenizer."""
    return {name: getattr(model, name) for name in DESCRIBED} | codec_json(model.codec)


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


# ---- the edit request ----------------------------------------------------------------------

class InputError(ValueError):
    """Bad input from the user (an edit's JSON, the CLI's flags): one line naming the field; the CLI
    exits with status 2, the service answers 400."""


def edit_body(canvas: Canvas, settings: SamplerSettings) -> dict[str, Any]:
    """The /v1/edits request that builds `canvas` on the service: its text, spans (in document order)
    and their pinned words, its instruction (the service lays it out in its own model's template),
    every setting, streamed."""
    spans = [[s.start, s.end] if s.length is None else [s.start, s.end, s.length] for s in canvas.spans]
    constraints = [[c.text, pin_place(c), i] for i, s in enumerate(canvas.spans) for c in s.constraints]
    instruction = {"instruction": canvas.prompt.text} if canvas.prompt is not None else {}
    return {"text": canvas.text, "spans": spans, "constraints": constraints, **instruction,
            **dataclasses.asdict(settings), "stream": True}


def check_text(text: str) -> None:
    """Refuse a document as editor.text.check_document does: NUL means binary data, and a lone
    surrogate (JSON's "\\ud800" decodes to one) is no Unicode a tokenizer takes."""
    check_document(len(text))
    if "\x00" in text:
        raise InputError(f"the document holds a NUL character at index {text.index(chr(0))}: "
                         "binary data is not text")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as err:
        raise InputError(f"the document is not valid Unicode at index {err.start}: {err.reason}") from None


def make_span(start: int, end: int, length: int | None) -> Span:
    """A span from the user's offsets, refused when reversed; the canvas checks it against the text."""
    if end < start:
        raise InputError(f"span {start}:{end} is reversed (end before start)")
    if length is not None and (type(length) is not int or length < 1):  # True is not 1 token
        raise InputError(f"span {start}:{end}: length must be a whole number >= 1, got {length!r}")
    check_span_length(start, end, length)  # before the model loads
    return Span(start, end, length)


EDIT_FIELDS = ("text", "spans", "length", "constraints", "ends_with", "include", "template", "hole_marker", "language",
               "instruction")


def read_edit(item: Any, settings: SamplerSettings) -> tuple[str, list[Span], SamplerSettings]:
    """An edit as JSON (a --jsonl line, the service's /v1/edits body): `text`, `spans` as [start, end]
    or [start, end, length] (or `template` true: the text's holes, engine.template, with an optional
    `hole_marker`), optional `length`, pinned words (`constraints`, `ends_with`, `include`:
    `read_pins`) and any sampler setting by name over `settings` (an "instruction" is the caller's:
    engine.instruct.with_instruction). A ValueError says what is wrong."""
    if not isinstance(item, dict):
        raise ValueError("each line must be a JSON object")
    text, raw_spans = item.get("text"), item.get("spans")
    if not isinstance(text, str) or not text:
        raise ValueError('"text" must be a non-empty string')
    check_text(text)
    length = item.get("length")
    if item.get("template", False) is not False:
        spans = read_template(item, text, length)
    else:
        if not isinstance(raw_spans, list) or not raw_spans:
            raise ValueError('"spans" must be a non-empty list of [start, end]')
        spans = []
        for s in raw_spans:
            if not (isinstance(s, list) and len(s) in (2, 3) and all(type(v) is int for v in s)):  # not bool
                raise ValueError(f"span {s!r} must be [start, end] or [start, end, length], whole numbers")
            try:
                spans.append(make_span(s[0], s[1], s[2] if len(s) == 3 else length))
            except InputError as err:
                raise ValueError(f'"spans": {err}') from None
        check_order(spans)
    spans = pin(spans, read_pins(item))
    overrides = {k: v for k, v in item.items() if k not in EDIT_FIELDS}
    return text, spans, settings.with_values(overrides)


def check_order(spans: list[Span]) -> None:
    """Refuse spans that overlap, naming the field (the canvas would refuse them too, in its own words)."""
    ordered = sorted(spans, key=lambda s: (s.start, s.end))
    for before, after in zip(ordered, ordered[1:]):
        if after.start < before.end:
            raise ValueError(f'"spans": span {after.start}:{after.end} overlaps the span before it '
                             f"({before.start}:{before.end})")


def read_template(item: dict, text: str, length: Any) -> list[Span]:
    """`"template": true`: the spans are the text's holes (engine.template)."""
    if item["template"] is not True:
        raise ValueError(f'"template" must be true or false, got {item["template"]!r}')
    if item.get("spans") is not None:
        raise ValueError('"template": give no "spans" (the holes are the spans)')
    if length is not None and (type(length) is not int or length < 1):
        raise ValueError(f'"length" must be a whole number >= 1, got {length!r}')
    return holes(text, item.get("hole_marker", DEFAULT_MARKER), length)


def read_language(item: dict) -> str | None:
    """An edit's optional "language" (the correction rounds' checker: editor.languages names)."""
    language = item.get("language")
    if language is not None and not isinstance(language, str):
        raise ValueError(f'"language" must be a language name (python, text, ...), got {language!r}')
    return language


def read_pins(item: dict) -> list[tuple[int, Constraint]]:
    """Pinned words as (span index, Constraint): `constraints` [[TEXT, K], ...] or [TEXT, K, SPAN] (K a
    token offset into the span, "end": TEXT ends the span, "any": the model picks the place; SPAN the
    span's index in document order, default 0), `ends_with` TEXT and `include` TEXT (the first span)."""
    raw = item.get("constraints", [])
    if not isinstance(raw, list) or not all(
            isinstance(c, list) and len(c) in (2, 3) and isinstance(c[0], str) and read_place(c[1]) is not None
            and (len(c) == 2 or type(c[2]) is int) for c in raw):
        raise ValueError('"constraints" must be a list of [TEXT, K] or [TEXT, K, SPAN]: TEXT forced K tokens into '
                         'span SPAN (default the first); K a whole number, "end" or "any"')
    out = [(c[2] if len(c) == 3 else 0, Constraint(c[0], *read_place(c[1]))) for c in raw]  # type: ignore[misc]
    for field, anchor in (("ends_with", "end"), ("include", "anywhere")):
        value = item.get(field)
        if value is not None and not (isinstance(value, str) and value):
            raise ValueError(f'"{field}" must be a non-empty string, got {value!r}')
        if value:
            out.append((0, Constraint(value, 0, anchor)))
    return out


def read_place(k: Any) -> tuple[int, str] | None:
    """A constraint's K as (at, anchor): a token offset, "end" or "any"; None when it is neither."""
    if type(k) is int:
        return k, "start"
    return {"end": (0, "end"), "any": (0, "anywhere")}.get(k) if isinstance(k, str) else None


def pin(spans: list[Span], pins: list[tuple[int, Constraint]]) -> list[Span]:
    """`spans` (in the caller's order) with each pin added to the span it names, refused when it names none."""
    ordered = sorted(range(len(spans)), key=lambda i: (spans[i].start, spans[i].end))
    out = list(spans)
    for index, c in pins:
        if not 0 <= index < len(spans):
            raise ValueError(f'"constraints": {c.text!r} names span {index}; there are {len(spans)} '
                             f"(0 to {len(spans) - 1})")
        i = ordered[index]
        out[i] = Span(out[i].start, out[i].end, out[i].length, out[i].constraints + (c,))
    return out


def pin_place(c: Constraint) -> int | str:
    """A constraint's K on the wire (`read_pins`): a token offset, "end" or "any"."""
    if c.anchor == "end" and c.at:
        raise ValueError("the engine service takes text that ends a span only at its very end")
    if c.anchor == "start":
        return c.at
    return {"end": "end", "anywhere": "any"}[c.anchor]
