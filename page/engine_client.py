"""How the page runs the engine: one `EngineClient` interface, two transports.

`InProcessEngine` submits to an `engine.scheduler.Scheduler` over the model loaded in this process;
`HttpEngine` posts to `python -m engine serve` (`app.py --engine URL`, with the service's key from
SHARPEN_API_KEY or SHARPEN_API_KEY_FILE) and reads its NDJSON stream
back into the same `Step`s. Either way the page lays out the canvas itself (it needs the tokenizer
for span lengths and for drawing tokens) and renders each step as it comes; closing the step
iterator (the page's Stop) cancels the run.
"""
from __future__ import annotations

import functools
import json
import queue
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Protocol

import httpx
import torch

from editor import checks
from engine import Canvas, DiffusionLM, SamplerSettings, Step
from engine.scheduler import MAX_BATCH, MAX_QUEUE, Job, QueueFull, Scheduler
from engine.scope import whole_words
from engine.serve import wire


class EngineError(RuntimeError):
    """The engine could not run an edit (busy, unreachable, cancelled elsewhere); the message says why."""


class EngineClient(Protocol):
    """What the page needs from an engine."""

    model: DiffusionLM  # read locally: the tokenizer (codec), context length, label, causal view

    def steps(self, canvas: Canvas, settings: SamplerSettings, language: str | None = None) -> Iterator[Step]:
        """Denoise `canvas` (built with `model.codec`), yielding each step with its documents, then
        its correction rounds for the document's `language` (none: no correction); closing the
        iterator cancels the run; EngineError if it ends unfinished."""
        ...

    def steps_many(self, canvases: Sequence[Canvas], settings: SamplerSettings,
                   language: str | None = None) -> Iterator[tuple[int, Step]]:
        """Denoise every canvas at once (the engine's queue packs them into shared forwards), the
        first one leading (`interleave`): each step as it comes, with the index of its canvas;
        closing the iterator cancels them all."""
        ...


class InProcessEngine:
    """The engine in this process: runs share the model's forwards through one Scheduler."""

    def __init__(self, model: DiffusionLM, max_batch: int = MAX_BATCH, max_queue: int = MAX_QUEUE):
        self.model, self.max_batch, self.max_queue = model, max_batch, max_queue

    @functools.cached_property
    def words(self) -> frozenset[str]:  # the broken-word test's real words: the model's whole-word tokens
        return whole_words(self.model.codec)

    @functools.cached_property
    def scheduler(self) -> Scheduler:  # started at the first run: a page that never runs holds no thread
        return Scheduler(self.model, max_batch=self.max_batch, max_queue=self.max_queue)

    def steps(self, canvas: Canvas, settings: SamplerSettings, language: str | None = None) -> Iterator[Step]:
        checker = checks.checker_for(language, self.words) if language is not None else None
        try:
            job = self.scheduler.submit(canvas, settings, checker)
        except QueueFull as err:
            raise EngineError(f"the engine is busy: {err}") from None
        last = None
        try:
            for last in job:
                yield last
        finally:
            job.cancel()  # the page stopped reading (Stop): free the slot; a no-op after the end
        if last is None or not last.done:
            raise EngineError("the run was cancelled")

    def steps_many(self, canvases: Sequence[Canvas], settings: SamplerSettings,
                   language: str | None = None) -> Iterator[tuple[int, Step]]:
        checker = checks.checker_for(language, self.words) if language is not None else None
        jobs: list[Job] = []
        lock, closed = threading.Lock(), threading.Event()

        def submit(canvas: Canvas) -> Iterator[Step]:
            with lock:  # a reader that starts after Stop submits nothing
                if closed.is_set():
                    return iter(())
                job = self.scheduler.submit(canvas, settings, checker)
                jobs.append(job)
            return iter(job)
        try:
            yield from interleave([functools.partial(submit, canvas) for canvas in canvases])
        except QueueFull as err:
            raise EngineError(f"the engine is busy: {err}") from None
        finally:
            with lock:
                closed.set()
            for job in jobs:
                job.cancel()  # Stop (or Esc) during the trials: every slot is free at once


class HttpEngine:
    """The engine behind `python -m engine serve` at `url`. The page keeps only the model's tokenizer,
    fetched from the service (GET /v1/tokenizer); the weights stay there."""

    def __init__(self, url: str, connect_timeout: float = 10.0, api_key: str | None = None):
        self.url = url.rstrip("/")
        # Steps may be far apart (a long queue, a slow forward): no read timeout.
        key = {"Authorization": f"Bearer {api_key}"} if api_key else {}  # the service's --api-key
        self.http = httpx.Client(base_url=self.url, timeout=httpx.Timeout(connect_timeout, read=None), headers=key)
        self.model: DiffusionLM = RemoteModel(self._get("/v1/tokenizer"), self.url)

    def steps(self, canvas: Canvas, settings: SamplerSettings, language: str | None = None) -> Iterator[Step]:
        last = None
        body = wire.edit_body(canvas, settings) | ({"language": language} if language is not None else {})
        try:
            with self.http.stream("POST", "/v1/edits", json=body) as response:
                if response.status_code != 200:
                    raise EngineError(refusal(response))
                for raw in response.iter_lines():
                    line = json.loads(raw)
                    if "error" in line or line.get("cancelled"):
                        raise EngineError(line.get("error") or f"the service cancelled edit {line['id']}")
                    if line.get("done"):
                        check_result(line, last)
                        return
                    last = wire.step_from_line(line, canvas)
                    yield last
        except httpx.HTTPError as err:
            raise EngineError(f"lost the engine service at {self.url}: {err}") from None
        raise EngineError(f"the engine service at {self.url} ended the stream before the run finished")

    def steps_many(self, canvases: Sequence[Canvas], settings: SamplerSettings,
                   language: str | None = None) -> Iterator[tuple[int, Step]]:
        return interleave([functools.partial(self.steps, canvas, settings, language) for canvas in canvases])

    def _get(self, path: str) -> Any:
        try:
            response = self.http.get(path)
        except httpx.HTTPError as err:
            raise EngineError(f"cannot reach the engine service at {self.url}: {err}") from None
        if response.status_code != 200:
            raise EngineError(refusal(response))
        return response.json()

    def close(self) -> None:
        self.http.close()


class RemoteModel(DiffusionLM):
    """The page's side of a model served elsewhere: its tokenizer and limits, no weights. It has no
    causal view (`fluency` is None), so with --engine the page does not rank candidates and the
    "auto" length keeps the span's length."""

    def __init__(self, info: dict[str, Any], url: str):
        self.codec = wire.codec_from_json(info)
        self.mask_id, self.device, self.url = self.codec.mask_id, torch.device("cpu"), url
        for name in wire.DESCRIBED:
            setattr(self, name, info[name])
        self.label = f"{info['label']} (served by {url})"

    def logits(self, ids: torch.Tensor) -> torch.Tensor:
        raise EngineError(f"{self.label} runs on the engine service; this page holds only its tokenizer")


_ENDED = object()


def interleave(starts: Sequence[Callable[[], Iterator[Step]]]) -> Iterator[tuple[int, Step]]:
    """The steps of several runs as they come, each with its run's index: one thread starts and reads
    each run (a run's iterator blocks until its next step). The first run leads: the others start
    once its first step is in, so that step comes as soon as it would alone and the rest join the
    forwards after it (the scheduler packs them). A run's error is raised here. Closing this stops
    the readers at their run's next step; each closes its own run (a generator is closed by the
    thread that drives it)."""
    out: queue.SimpleQueue[tuple[int, Any]] = queue.SimpleQueue()
    stop = threading.Event()

    def read(i: int) -> None:
        steps: Iterator[Step] | None = None
        try:
            steps = starts[i]()
            for step in steps:
                if stop.is_set():
                    break
                out.put((i, step))
        except Exception as err:
            out.put((i, err))
        finally:
            close = getattr(steps, "close", None)
            if close is not None:
                close()
            out.put((i, _ENDED))

    def start(i: int) -> None:
        threading.Thread(target=read, args=(i,), name=f"run-{i}", daemon=True).start()
    start(0)
    running, started = len(starts), 1
    try:
        while running:
            i, item = out.get()
            if started < len(starts):  # the lead's first step (or its end) is in: the others start
                for j in range(started, len(starts)):
                    start(j)
                started = len(starts)
            if item is _ENDED:
                running -= 1
            elif isinstance(item, Exception):
                raise item
            else:
                yield i, item
    finally:
        stop.set()


def check_result(done: dict[str, Any], last: Step | None) -> None:
    """The service's final document must be the one the page rendered from the last step: if not,
    the two tokenizers differ and the page would show one text and accept another."""
    if last is None or not last.done:
        raise EngineError("the engine service finished without a finished step")
    if done["text"] != last.texts[0]:
        raise EngineError("the engine service's result differs from this page's rendering of it: "
                          "the page and the service do not share a tokenizer")


def refusal(response: httpx.Response) -> str:
    """The service's {"error": ...} message, with its Retry-After when it is busy."""
    response.read()
    try:
        message = response.json()["error"]
    except (ValueError, KeyError, TypeError):
        message = response.text[:200] or response.reason_phrase
    wait = response.headers.get("Retry-After")
    return f"{message} (retry after {wait} s)" if wait else message
