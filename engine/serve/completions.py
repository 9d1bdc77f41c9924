"""OpenAI's legacy completions shape: /v1/completions fills the middle between prompt and suffix
(FIM), /v1/models lists the models served, so existing fill-in-the-middle clients can use the engine."""
from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import AsyncGenerator
from contextlib import aclosing
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Request, Response
from starlette.concurrency import run_in_threadpool

from ..canvas import MASK_GLYPH, Canvas
from ..limits import MAX_SPAN_TOKENS
from ..loop import Step
from ..scheduler import Job
from ..settings import SamplerSettings, knobs
from .edits import service_for
from .service import BadRequest, EngineFailed, Overdue, Service, flag, json_object
from .streams import ClosingStream

router = APIRouter()
log = logging.getLogger(__name__)
DEFAULT_MAX_TOKENS = 16  # OpenAI's default for max_tokens
MAX_STOPS = 4            # as OpenAI
# Fields OpenAI clients send that mean nothing to a denoiser: accepted and left unused ("model" picks
# one of several served models: engine/serve/models.py).
IGNORED = ("user", "top_p", "presence_penalty", "frequency_penalty", "logit_bias", "stream_options")
# Names the edit reader takes that a completion spells otherwise (prompt/suffix/max_tokens).
RESERVED = ("text", "spans", "length", "constraints")
UNSETTLED = " \t\n\r\f\v\ufffd"  # held back at a streamed prefix's end: the next token may change them


@dataclass(frozen=True)
class Fill:
    """What a completion request asks beyond the edit: how to stop, how to answer, what to call it."""

    stop: tuple[str, ...]
    stream: bool
    id: str = ""
    created: int = 0
    model: str = ""


@router.get("/v1/models")
async def list_models(request: Request) -> dict[str, Any]:
    """Every model served (the default first), each with its family, parameters and memory estimate."""
    return {"object": "list", "data": request.app.state.served.listing()}


@router.post("/v1/completions")
async def create_completion(request: Request) -> Response:
    """Body: OpenAI's `prompt`, `suffix`, `max_tokens` (the middle's length in tokens), `temperature`,
    `seed`, `n` (candidates), `stop`, `stream`, plus any sampler setting by name."""
    body = await json_object(request)
    service = service_for(request, body)
    fill, canvas, settings = await run_in_threadpool(read_fill, service, body)
    job = service.submit(canvas, settings)
    fill = dataclasses.replace(fill, id="cmpl-" + job.id, created=int(time.time()), model=service.model_id)
    headers = {"X-Edit-Id": job.id}  # at once: a plain request's status is 200 once accepted (as /v1/edits)
    if fill.stream:
        return ClosingStream(events(service, job, canvas, fill, settings), media_type="text/event-stream",
                             headers=headers)
    return ClosingStream(plain(service, job, canvas, fill), media_type="application/json", headers=headers)


async def plain(service: Service, job: Job, canvas: Canvas, fill: Fill) -> AsyncGenerator[bytes, None]:
    """The completion as one JSON object once the run ends, or {"id", "error"} when it did not."""
    try:
        last = await service.last_step(job)
    except (EngineFailed, Overdue) as err:
        log.error("completion %s did not finish: %s", fill.id, err, exc_info=err.__cause__)
        last, answer = None, {"id": fill.id, "error": str(err)}
    else:
        answer = {"id": fill.id, "error": f"completion {fill.id} was cancelled"}
    if last is not None:
        answer = {**completion(fill, canvas, last), **service.deadline_note(job)}
    yield json.dumps(answer, ensure_ascii=False).encode()


def read_fill(service: Service, body: dict[str, Any]) -> tuple[Fill, Canvas, SamplerSettings]:
    """A completion request as an edit: the text prompt + suffix, one empty span of max_tokens tokens
    between them, read by the same reader as /v1/edits (so the same checks and settings)."""
    stream = flag(body, "stream")
    prompt, suffix = body.pop("prompt", None), body.pop("suffix", None)
    suffix = "" if suffix is None else suffix
    if not isinstance(prompt, str):
        raise BadRequest('"prompt" must be one string (lists of prompts and token ids are not supported)')
    if not isinstance(suffix, str):
        raise BadRequest('"suffix" must be a string')
    if not prompt + suffix:
        raise BadRequest("prompt and suffix are both empty: there is no text to fill in between")
    max_tokens = body.pop("max_tokens", None)
    max_tokens = DEFAULT_MAX_TOKENS if max_tokens is None else max_tokens
    if type(max_tokens) is not int or not 1 <= max_tokens <= MAX_SPAN_TOKENS:
        raise BadRequest(f'"max_tokens" must be a whole number from 1 to {MAX_SPAN_TOKENS:,} (the longest span), '
                         f'got {max_tokens!r}')
    stop = read_stop(body.pop("stop", None))
    refuse_unsupported(body)
    for name in IGNORED:
        body.pop(name, None)
    if "n" in body:
        body["candidates"] = read_n(body.pop("n"))
    clash = sorted(set(RESERVED) & set(body))
    if clash:
        raise BadRequest(f"unknown field(s) {', '.join(clash)}: a completion gives the text as prompt and "
                         "suffix and the middle's length as max_tokens")
    at = len(prompt)
    canvas, settings = service.edit({**body, "text": prompt + suffix, "spans": [[at, at, max_tokens]]})
    return Fill(stop, stream), canvas, settings


def read_stop(raw: Any) -> tuple[str, ...]:
    stops = (raw,) if isinstance(raw, str) else tuple(raw) if isinstance(raw, list) else () if raw is None else None
    if stops is None or not all(isinstance(s, str) and s for s in stops) or len(stops) > MAX_STOPS:
        raise BadRequest(f'"stop" must be a non-empty string or a list of at most {MAX_STOPS} of them, got {raw!r}')
    return stops


def read_n(raw: Any) -> int:
    candidates = next(k for k in knobs() if k.name == "candidates")
    try:
        candidates.check(raw)
    except ValueError:
        raise BadRequest(f'"n" must be {candidates.wants()}, got {raw!r}') from None
    return raw


def refuse_unsupported(body: dict[str, Any]) -> None:
    """OpenAI options with no meaning here are refused when set, rather than silently ignored."""
    if body.pop("echo", None) not in (None, False):
        raise BadRequest('"echo" is not supported: the text is the middle only (prompt + text + suffix is the whole)')
    if body.pop("logprobs", None) is not None:
        raise BadRequest('"logprobs" is not supported; /v1/edits with "stream": true gives every token\'s confidence')
    if body.pop("best_of", None) not in (None, 1):
        raise BadRequest('"best_of" is not supported; "n" denoises that many candidates together')


def middle(canvas: Canvas, step: Step, b: int) -> str:
    """Candidate `b`'s text between prompt and suffix (undecided slots as MASK_GLYPH)."""
    return canvas.drafts(step.tokens[b], step.masked[b])[0]


def cut_at_stop(text: str, stops: tuple[str, ...]) -> tuple[str, bool]:
    """`text` up to its first stop sequence, and whether there was one."""
    cut = min((i for i in (text.find(s) for s in stops) if i >= 0), default=-1)
    return (text, False) if cut < 0 else (text[:cut], True)


def ended_early(canvas: Canvas, step: Step, b: int) -> bool:
    """The model wrote end-of-text in the middle: it chose to stop before max_tokens."""
    eos = canvas.codec.eos_id
    return eos is not None and bool((step.tokens[b] == eos).any())


def completion(fill: Fill, canvas: Canvas, step: Step) -> dict[str, Any]:
    choices = []
    for b in range(step.tokens.shape[0]):
        text, stopped = cut_at_stop(middle(canvas, step, b), fill.stop)
        reason = "stop" if stopped or ended_early(canvas, step, b) else "length"
        choices.append(choice(b, text, reason))
    free = ~canvas.fixed[canvas.slots]                                         # (P,)
    eos = canvas.codec.eos_id
    written = int((free & (step.tokens != (-1 if eos is None else eos))).sum())
    prompt_tokens = canvas.length - int(free.sum())
    return {**chunk_head(fill), "choices": choices,
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": written,
                      "total_tokens": prompt_tokens + written}}


def chunk_head(fill: Fill) -> dict[str, Any]:
    return {"id": fill.id, "object": "text_completion", "created": fill.created, "model": fill.model}


@dataclass
class Prefix:
    """One choice's text as OpenAI streams it, append-only: the middle up to its first undecided
    slot, less a tail the next token may still change (whitespace, half a character). With
    self-correction (`remask_below`) a commit can be taken back, so nothing streams before the end."""

    stop: tuple[str, ...]
    steady: bool
    sent: str = ""
    stopped: bool = False

    def feed(self, draft: str, done: bool) -> str:
        """The text to send now (maybe ""), given the choice's middle at this step."""
        if self.stopped or not (done or self.steady):
            return ""
        text = draft if done else draft.split(MASK_GLYPH, 1)[0].rstrip(UNSETTLED)
        text, self.stopped = cut_at_stop(text, self.stop)
        if not text.startswith(self.sent):  # cannot take sent text back: keep it, log the drift
            log.warning("streamed prefix %r is not a prefix of %r", self.sent, text)
            return ""
        delta, self.sent = text[len(self.sent):], text
        return delta


async def events(service: Service, job: Job, canvas: Canvas, fill: Fill,
                 settings: SamplerSettings) -> AsyncGenerator[bytes, None]:
    """Server-sent events: `data: {chunk}` as each choice's settled prefix grows, a last chunk per
    choice with its finish_reason, then `data: [DONE]`."""
    prefixes = [Prefix(fill.stop, steady=settings.remask_below is None) for _ in range(settings.candidates)]
    last = None
    try:
        async with aclosing(service.steps(job)) as steps:
            async for last in steps:
                for b, prefix in enumerate(prefixes):
                    delta = prefix.feed(middle(canvas, last, b), not bool(last.masked[b].any()))
                    if delta:
                        yield event({**chunk_head(fill), "choices": [choice(b, delta, None)]})
                if all(p.stopped for p in prefixes):
                    break  # every choice hit a stop sequence: the rest of the run is not needed
    except (EngineFailed, Overdue) as err:
        log.error("completion %s did not finish: %s", fill.id, err, exc_info=err.__cause__)
        yield event({"error": {"message": str(err), "type": "server_error"}})
        yield b"data: [DONE]\n\n"
        return
    if last is None or not (last.done or all(p.stopped for p in prefixes)):
        yield event({"error": {"message": f"completion {fill.id} was cancelled", "type": "cancelled"}})
    else:
        for b, prefix in enumerate(prefixes):
            delta = prefix.feed(middle(canvas, last, b), True)
            reason = "stop" if prefix.stopped or ended_early(canvas, last, b) else "length"
            yield event({**chunk_head(fill), "choices": [choice(b, delta, reason)]})
    yield b"data: [DONE]\n\n"


def choice(index: int, text: str, finish_reason: str | None) -> dict[str, Any]:
    return {"text": text, "index": index, "logprobs": None, "finish_reason": finish_reason}


def event(item: dict[str, Any]) -> bytes:
    return f"data: {json.dumps(item, ensure_ascii=False)}\n\n".encode()
