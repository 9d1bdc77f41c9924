"""The page on a hosted diffusion model through OpenAI's fill-in-the-middle shape (`--engine openai:URL`).

The hosted model takes `prompt` + `suffix` on `/v1/completions` (Mercury's `/v1/fim/completions`,
vLLM, Sharpen's own `engine serve`) and streams text, not steps: it shares no tokenizer with the
page and shows no per-step state. So the page lays the canvas out in bytes (`byte_codec`: one slot
per UTF-8 byte, which any text spells exactly), asks for about as many of the model's tokens as the
span held, and draws each streamed chunk as a step that commits the text written so far. A span
holds at most its own bytes; a longer answer is cut there, as `max_tokens` cuts one.
"""
from __future__ import annotations

import functools
import json
import math
import os
import time
from collections.abc import Iterator, Sequence
from typing import Any

import httpx
import torch

from engine import Canvas, SamplerSettings, Step
from engine.codec import TextCodec

from .engine_client import EngineError, RemoteModel, interleave

KEY_ENV = "SHARPEN_ENGINE_KEY"  # the hosted model's key: from the environment, never a flag
MODEL_ENV = "SHARPEN_ENGINE_MODEL"  # which of the host's models (default: the first /v1/models lists)
PREFIX = "openai:"
BYTES_PER_TOKEN = 4     # about what a BPE token spells in English text and code: max_tokens from a span's bytes
READ_TIMEOUT = 60.0     # seconds between two streamed chunks before the page gives up on the model
MAX_DOCUMENT = 1 << 20  # bytes: the page's own check on a document's size (the hosted model has its own)
EOS, MASK = "<|endoftext|>", "<|mask|>"


@functools.cache
def byte_codec() -> TextCodec:
    """A tokenizer whose tokens are the 256 bytes (GPT-2's printable spelling of them), with an
    end-of-text and a mask token: the page's own layout of any text, with no model's vocabulary."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    alphabet = pre_tokenizers.ByteLevel.alphabet()
    vocab = {piece: i for i, piece in enumerate(sorted(alphabet))}
    tok = Tokenizer(models.BPE(vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tok.decoder = decoders.ByteLevel()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=EOS, mask_token=MASK)
    return TextCodec.from_tokenizer(tokenizer)


class HostedModel(RemoteModel):
    """The page's side of a hosted model: the byte layout, the model's name, no weights (like a
    served model, it has no causal view: the page neither ranks its candidates nor picks lengths).
    It streams text, not denoising steps: the page words its figures as chunks, not forwards."""

    streams_text = True

    def __init__(self, name: str, url: str):
        self.codec = byte_codec()
        self.noise, self.mask_id, self.device = "mask", self.codec.mask_id, torch.device("cpu")
        self.vocab_size, self.max_length = len(self.codec.tokenizer), MAX_DOCUMENT
        self.label = f"hosted at {url}: {name}"  # "hosted" first: the title cuts a long label short
        self.url = url


class OpenAIEngine:
    """Edits through a hosted model's OpenAI-compatible completions endpoint. `url` is the API's base
    (`https://host/v1`, as the openai client takes it) or a completions endpoint itself (a path
    ending in `/completions`, e.g. Mercury's `.../v1/fim/completions`)."""

    def __init__(self, url: str, api_key: str | None = None, timeout: float = READ_TIMEOUT,
                 transport: httpx.BaseTransport | None = None, model: str | None = None):
        url = url.rstrip("/")
        if url.endswith("/completions"):
            self.endpoint, self.base = url, url[:url.rindex("/v1/") + 3] if "/v1/" in url else url.rsplit("/", 1)[0]
        else:
            self.base = url if url.endswith("/v1") else url + "/v1"
            self.endpoint = self.base + "/completions"
        key = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.http = httpx.Client(timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)), headers=key,
                                 transport=transport)  # tests: a recording or scripted transport
        self.name = model or self._model_name()
        self.model = HostedModel(self.name, self.base)

    def _model_name(self) -> str:
        """The first model `/v1/models` lists: the name every completion names."""
        with self._answer("GET", self.base + "/models") as response:
            response.read()
            try:
                return str(response.json()["data"][0]["id"])
            except (ValueError, KeyError, IndexError, TypeError):
                raise EngineError(f"{self.base}/models lists no model: {response.text[:200]!r}") from None

    def steps(self, canvas: Canvas, settings: SamplerSettings, language: str | None = None) -> Iterator[Step]:
        """The completion's stream drawn as steps; `language` is unused (the hosted model does not
        run Sharpen's correction rounds)."""
        body = fim_body(canvas, settings, self.name)
        texts, chunks, last, start = [""] * settings.candidates, 0, None, time.monotonic()
        with self._answer("POST", self.endpoint, json=body) as response:
            for chunk in sse_chunks(response, self.base):
                chunks += 1
                add_chunk(texts, chunk)
                last = text_step(canvas, glued(body["prompt"], texts), chunks, last, time.monotonic() - start,
                                 done=False)
                yield last
        yield text_step(canvas, glued(body["prompt"], texts), chunks, last, time.monotonic() - start, done=True)

    def steps_many(self, canvases: Sequence[Canvas], settings: SamplerSettings,
                   language: str | None = None) -> Iterator[tuple[int, Step]]:
        return interleave([functools.partial(self.steps, canvas, settings, language) for canvas in canvases])

    def _answer(self, method: str, url: str, **kwargs: Any) -> Answer:
        """A streamed response that answered 200, as a context manager; anything else an EngineError."""
        return Answer(self.http, method, url, kwargs)

    def close(self) -> None:
        self.http.close()


class Answer:
    """`with Answer(...) as response`: the request sent, a refusal or a lost connection turned into
    one EngineError that says what happened (the page shows it as its message)."""

    def __init__(self, http: httpx.Client, method: str, url: str, kwargs: dict[str, Any]):
        self.http, self.method, self.url, self.kwargs = http, method, url, kwargs
        self.stream: Any = None

    def __enter__(self) -> httpx.Response:
        self.stream = self.http.stream(self.method, self.url, **self.kwargs)
        try:
            response = self.stream.__enter__()
        except httpx.HTTPError as err:
            raise EngineError(lost(self.url, err)) from None
        if response.status_code != 200:
            message = hosted_refusal(response)
            self.stream.__exit__(None, None, None)
            raise EngineError(message)
        return response

    def __exit__(self, kind: Any, err: Any, trace: Any) -> None:
        self.stream.__exit__(kind, err, trace)
        if isinstance(err, httpx.HTTPError):
            raise EngineError(lost(self.url, err)) from None


def fim_body(canvas: Canvas, settings: SamplerSettings, model: str) -> dict[str, Any]:
    """The completion request for `canvas`'s one span, in the shape the openai client sends: the text
    before and after it, about as many tokens as its bytes make, `n` candidates, streamed."""
    if len(canvas.spans) != 1 or canvas.spans[0].constraints:
        raise EngineError("a hosted model fills one span at a time, with no constraints")
    if canvas.prompt is not None:  # the fill-in-the-middle shape has a prompt and a suffix, no instruction
        raise EngineError("a hosted model takes no instruction (fill in the middle only): close the box and regenerate")
    span, (a, b) = canvas.spans[0], canvas.span_ranges[0]
    return {"model": model, "prompt": canvas.text[:span.start], "suffix": canvas.text[span.end:],
            "max_tokens": max(1, math.ceil((b - a) / BYTES_PER_TOKEN)), "n": settings.candidates,
            "seed": settings.seed, "stream": True, "temperature": settings.temperature}


def text_step(canvas: Canvas, texts: Sequence[str], chunks: int, last: Step | None, elapsed: float,
              done: bool) -> Step:
    """The step that shows each candidate's text so far committed in the span's first slots (cut
    where it outgrows the span), the rest undecided with no draft (a hosted model sends none); `done`:
    the rest end the text."""
    codec, width = canvas.codec, int(canvas.slots.shape[0])
    assert codec.mask_id is not None and codec.eos_id is not None
    tokens = torch.full((len(texts), width), codec.mask_id)                   # (B, P)
    for b, text in enumerate(texts):
        ids = fitted(codec, text, width, words=done)
        tokens[b, :len(ids)] = torch.tensor(ids, dtype=torch.long)
        if done:
            tokens[b, len(ids):] = codec.eos_id
    masked = tokens == codec.mask_id                                          # (B, P)
    before = torch.ones_like(masked) if last is None else last.masked
    committed = before & ~masked
    index = 0 if last is None else last.index + 1
    at = torch.full_like(tokens, -1) if last is None else last.committed_at.clone()
    at[committed] = index
    ones = torch.ones(tokens.shape)
    return Step(index=index, positions=canvas.slots, tokens=tokens, masked=masked, confidence=ones,
                committed=committed, committed_at=at, guided=torch.zeros_like(masked),
                top_ids=tokens.unsqueeze(-1), top_probs=(~masked).float().unsqueeze(-1), forwards=chunks,
                elapsed=elapsed, texts=tuple(
                    canvas.render(tokens[b], masked[b]) for b in range(len(texts))))


def glued(prompt: str, middles: Sequence[str]) -> list[str]:
    """The middles as they join `prompt`: after a prompt that ends in spaces or a tab (a word's gap,
    an indentation) a middle's own leading ones would double them ("and  She"), so they are dropped."""
    return [m.lstrip(" \t") for m in middles] if prompt.endswith((" ", "\t")) else list(middles)


def fitted(codec: TextCodec, text: str, width: int, words: bool) -> list[int]:
    """`text`'s byte ids, cut where it outgrows `width` slots: after its last whole character that
    fits, or with `words` (the end) after its last whole word, so a span does not end in half a
    word. While the text streams, a cut only grows: the slots it committed stay committed."""
    ids = codec.encode(text)
    if len(ids) <= width:
        return ids
    fits = text.encode()[:width].decode(errors="ignore")
    cut = max(fits.rfind(" "), fits.rfind("\n"))
    whole = fits[:cut].rstrip() if words and cut > 0 else ""
    return codec.encode(whole or fits)


def sse_chunks(response: httpx.Response, where: str) -> Iterator[dict[str, Any]]:
    """The JSON chunks of a server-sent event stream up to `data: [DONE]`; an error event, or a stream
    that ends without [DONE], is an EngineError."""
    for line in response.iter_lines():
        if not line.startswith("data:"):
            continue  # comments, event names, keep-alives
        data = line[5:].strip()
        if data == "[DONE]":
            return
        try:
            chunk = json.loads(data)
        except ValueError:
            raise EngineError(f"the hosted model at {where} sent a chunk that is not JSON: {data[:80]!r}") from None
        if not isinstance(chunk, dict):
            raise EngineError(f"the hosted model at {where} sent a chunk that is not an object: {data[:80]!r}")
        if "error" in chunk:
            raise EngineError(f"the hosted model at {where} failed: {error_message(chunk)}")
        yield chunk
    raise EngineError(f"the hosted model at {where} ended its stream before the completion finished")


def add_chunk(texts: list[str], chunk: dict[str, Any]) -> None:
    """Each choice's streamed text appended to its candidate's (a choice that names no candidate of
    this request is left out)."""
    choices = chunk.get("choices")
    for choice in choices if isinstance(choices, list) else ():
        index, text = (choice.get("index", 0), choice.get("text")) if isinstance(choice, dict) else (None, None)
        if isinstance(index, int) and 0 <= index < len(texts) and isinstance(text, str):
            texts[index] += text


def error_message(body: Any) -> str:
    """OpenAI's {"error": {"message": ...}} or Sharpen's {"error": "..."}."""
    error = body.get("error") if isinstance(body, dict) else None
    return str(error.get("message", error) if isinstance(error, dict) else error)


def hosted_refusal(response: httpx.Response) -> str:
    """One line for a refused request: what the status means here, the server's own words."""
    response.read()
    try:
        said = error_message(response.json())
    except ValueError:
        said = response.text[:200].strip() or response.reason_phrase
    code = response.status_code
    if code in (401, 403):
        return f"the hosted model refused the key (HTTP {code}: {said}); set {KEY_ENV} and restart the page"
    if code == 429:
        wait = response.headers.get("Retry-After")
        return f"the hosted model is busy (HTTP 429: {said})" + (f"; retry after {wait} s" if wait else "")
    if code >= 500:
        return f"the hosted model failed (HTTP {code}: {said}); try again later"
    return f"the hosted model refused the request (HTTP {code}: {said})"


def lost(url: str, err: httpx.HTTPError) -> str:
    if isinstance(err, httpx.TimeoutException):
        return f"the hosted model at {url} did not answer in time ({type(err).__name__})"
    return f"cannot reach the hosted model at {url}: {err}"


def connect(url: str) -> OpenAIEngine:
    """`--engine openai:URL`: the hosted model, its key from SHARPEN_ENGINE_KEY, its name from
    SHARPEN_ENGINE_MODEL or else the host's /v1/models."""
    return OpenAIEngine(url.removeprefix(PREFIX), api_key=os.environ.get(KEY_ENV) or None,
                        model=os.environ.get(MODEL_ENV) or None)
