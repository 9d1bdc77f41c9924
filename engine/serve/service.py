"""The service's state and its one way of running an edit: submit to the scheduler, await its steps."""
from __future__ import annotations

import json
import time
from collections.abc import AsyncGenerator
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import Any

import anyio
import anyio.to_thread
from starlette.requests import Request

from ..budget import check_budget
from ..canvas import Canvas
from ..checker import checker_for
from ..concepts import steer_for
from ..correct import Checker
from ..guide import causal_view_for
from ..instruct import with_instruction
from ..limits import DEFAULT_BUDGET
from ..loop import Step
from ..model import DiffusionLM
from ..pins import lay_out
from ..scheduler import Job, Scheduler
from ..settings import SamplerSettings
from .metrics import Metrics
from .wire import read_edit, read_language

MAX_BODY = 8 * 2**20  # bytes: the page's 1 MiB documents, with room for JSON escapes and settings
MAX_DEPTH = 16        # JSON nesting: an edit needs 3 ([[TEXT, K], ...] inside the body)
DEFAULT_MAX_SECONDS = 300.0  # an edit's wall clock, queue included (--max-seconds)


class BadRequest(ValueError):
    """Input the service refuses (400); the message says what to change."""


class TooLarge(ValueError):
    """A request body past MAX_BODY (413), refused before it is read whole."""


class EngineFailed(RuntimeError):
    """The model failed on an edit that was valid (500); the message says how."""


class Overdue(RuntimeError):
    """An edit whose step did not come within its deadline and the grace after it: stopped."""


@dataclass
class Service:
    """One model behind one scheduler; `running` maps each edit in flight to its Job (for DELETE)."""

    model: DiffusionLM
    scheduler: Scheduler
    metrics: Metrics
    defaults: SamplerSettings
    model_id: str
    budget: int = DEFAULT_BUDGET                   # steps x candidates x canvas tokens one edit may cost
    max_seconds: float = DEFAULT_MAX_SECONDS       # past it an edit's next step is its last; past twice it, stopped
    running: dict[str, Job] = field(default_factory=dict)
    started: int = field(default_factory=lambda: int(time.time()))  # /v1/models' "created"
    # Threads that wait for steps: one per edit in flight at most, apart from the web server's own.
    waiters: anyio.CapacityLimiter = field(init=False)

    def __post_init__(self) -> None:
        self.waiters = anyio.CapacityLimiter(self.scheduler.max_batch + self.scheduler.max_queue + 1)

    def edit(self, item: dict[str, Any]) -> tuple[Canvas, SamplerSettings]:
        """An edit's canvas and settings from its JSON, read as `python -m engine infill --jsonl` reads
        a line (over the service's defaults) and laid out as it lays one out; a BadRequest says what
        is wrong."""
        try:
            text, spans, settings = read_edit(item, self.defaults)
            causal_view_for(self.model, settings)  # a guide the model cannot have: a 400 now, not mid-run
            steer_for(self.model, settings)        # so is a concept it does not name
            canvas, settings = lay_out(self.model.codec, text, spans, settings, self.model.max_length)
            canvas = with_instruction(canvas, item.get("instruction"), self.model.max_length)
            check_budget(settings, canvas, self.budget)
            return canvas, settings
        except ValueError as err:
            raise BadRequest(str(err)) from None

    def checker(self, item: dict[str, Any]) -> Checker | None:
        """The correction rounds' checker for the edit's "language"; none when it names none (the
        service does not guess what a text is) or where the editor is not installed."""
        try:
            language = read_language(item)
            return checker_for(language, self.model) if language is not None else None
        except ValueError as err:
            raise BadRequest(str(err)) from None

    def submit(self, canvas: Canvas, settings: SamplerSettings, checker: Checker | None = None) -> Job:
        """Queue an edit (QueueFull when the queue is full) with its deadline, max_seconds from now,
        and remember it until it ends."""
        job = self.scheduler.submit(canvas, settings, checker, time.monotonic() + self.max_seconds)
        self.running[job.id] = job
        return job

    def cancel(self, edit_id: str) -> bool:
        """Stop an edit in flight; False when no such edit is running (unknown or already over)."""
        job = self.running.get(edit_id)
        if job is None:
            return False
        job.cancel()
        return True

    async def steps(self, job: Job) -> AsyncGenerator[Step, None]:
        """The job's steps, awaited without blocking the event loop. Leaving before the end (the
        client went away, a DELETE, the caller stopped reading) cancels the job, which frees its
        slot within one step. The model's failure comes out as EngineFailed; a step that has not come
        max_seconds after the deadline (one forward that long) as Overdue."""
        submitted, steps, outcome = time.perf_counter(), iter(job), "cancelled"
        stop = (job.deadline or time.monotonic()) + self.max_seconds
        try:
            while True:
                with anyio.move_on_after(max(0.0, stop - time.monotonic())) as waited:
                    try:  # abandon_on_cancel: a disconnect must not wait for the step in progress
                        step = await anyio.to_thread.run_sync(next, steps, None, abandon_on_cancel=True,
                                                              limiter=self.waiters)
                    except Exception as err:
                        outcome = "failed"
                        raise EngineFailed(f"the model failed: {err}") from err
                if waited.cancelled_caught:
                    raise Overdue(f"edit {job.id} was stopped: no step came within {2 * self.max_seconds:g} s "
                                  "(twice --max-seconds)")
                if step is None:  # ended without a finished step: cancelled
                    return
                if step.index == 0:
                    self.metrics.first_step.observe(time.perf_counter() - submitted)
                if step.done:
                    outcome = "done"
                yield step
        finally:
            if outcome == "cancelled":
                job.cancel()  # frees the slot (a no-op after a DELETE did)
                self.metrics.cancelled.inc()
            self.running.pop(job.id, None)

    async def last_step(self, job: Job) -> Step | None:
        """Run the job to its end; None when it was cancelled (DELETE). The caller's response
        streams, so Starlette cancels this when the client leaves (and the job with it)."""
        last: Step | None = None
        async with aclosing(self.steps(job)) as steps:
            async for step in steps:
                last = step
        return last if last is not None and last.done else None

    def deadline_note(self, job: Job) -> dict[str, str]:
        """{"deadline": why} when the edit ran out of time, so its last step committed every slot
        left (engine.loop.denoise); else {}."""
        if job.deadline is None or time.monotonic() < job.deadline:
            return {}
        return {"deadline": f"the edit reached its {self.max_seconds:g} s limit (--max-seconds): its last step "
                            "committed every slot still undecided"}


async def json_object(request: Request) -> dict[str, Any]:
    """The request body as a JSON object, else a BadRequest saying what came instead."""
    raw = bytearray()
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > MAX_BODY:
            raise TooLarge(f"the body is over {MAX_BODY // 2**20} MiB; send a shorter text")
    try:
        body = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise BadRequest(f"the body is not JSON: {err}") from None
    except RecursionError:
        raise BadRequest(f"the body nests JSON deeper than {MAX_DEPTH} levels") from None
    except ValueError as err:  # an integer of more than 4300 digits
        raise BadRequest(f"the body is not JSON this service reads: {err}") from None
    if not isinstance(body, dict):
        raise BadRequest(f"the body must be a JSON object, got {type(body).__name__}")
    if nesting(body) > MAX_DEPTH:
        raise BadRequest(f"the body nests JSON deeper than {MAX_DEPTH} levels")
    return body


def nesting(value: Any) -> int:
    """How deep lists and objects nest in parsed JSON (walked without recursion), stopping past MAX_DEPTH."""
    deepest, stack = 0, [(value, 1)]
    while stack and deepest <= MAX_DEPTH:
        item, depth = stack.pop()  # a list or an object: only those go on the stack
        deepest = max(deepest, depth)
        children = item.values() if isinstance(item, dict) else item
        stack.extend((child, depth + 1) for child in children if isinstance(child, (list, dict)))
    return deepest


def flag(body: dict[str, Any], name: str) -> bool:
    """Pop a boolean field (absent: false); `"stream": "yes"` is refused, not guessed."""
    value = body.pop(name, False)
    if not isinstance(value, bool):
        raise BadRequest(f'"{name}" must be true or false, got {value!r}')
    return value
