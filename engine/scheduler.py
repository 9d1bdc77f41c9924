"""Scheduler: concurrent edits' denoising loops share the model's forwards, batched step by step.

Each admitted job runs the one loop (`infill`, with its correction rounds) in its own thread, over
a `JobModel`: a stand-in for the model that hands each forward to the scheduler instead of running
it. The scheduler's worker thread waits until every active job has asked for its next forward (or
has finished), runs them all as one `DiffusionLM.forward_many` call (a job's ask may hold several
calls: its denoiser forward and the frontier guide's causal read), and hands each job its answers. So jobs
join and leave between steps, each keeps its own context cache (it lives in its loop), and a
job's result is what it would be alone. Jobs wait in a first-in first-out queue for one of
`max_batch` active slots.
"""
from __future__ import annotations

import itertools
import logging
import queue
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from .canvas import Canvas
from .correct import Checker, corrected
from .loop import Step
from .model import Call, DiffusionLM, Routed
from .settings import SamplerSettings

log = logging.getLogger(__name__)


class QueueFull(RuntimeError):
    """`submit` found `max_queue` jobs already waiting; `retry_after` (seconds) is a fair wait."""

    def __init__(self, waiting: int, retry_after: float):
        super().__init__(f"{waiting} edits are already waiting; try again in {retry_after:.1f} s")
        self.retry_after = retry_after


@dataclass(frozen=True)
class ForwardReport:
    """One batched forward, as `on_forward` hears of it (once its jobs have read their answers)."""

    batch_size: int        # jobs that shared it
    seconds: float         # its wall time
    tokens_committed: int  # span slots those jobs committed from it (over all their candidates)


@dataclass(frozen=True)
class SchedulerStats:
    queued: int           # jobs waiting for a slot
    active: int           # jobs in the batch
    forwards: int         # batched forwards run so far
    last_batch_size: int  # jobs in the latest one


class Cancelled(Exception):
    """Raised inside a cancelled job's loop, at its next forward, to unwind it."""


MAX_BATCH = 16  # edits denoised together in one forward: the service's, the page's and the CLI's default
MAX_QUEUE = 64  # edits that may wait for a place in the batch; past it a submit raises QueueFull

_END = object()  # after a job's last step in its step queue


@dataclass
class _Round:
    """A forward the worker ran, until it is reported."""

    batch_size: int
    seconds: float
    committed: int = 0


class Job:
    """One edit's run. Iterate it (once) for its steps; `cancel` to stop it."""

    def __init__(self, scheduler: Scheduler, canvas: Canvas, settings: SamplerSettings,
                 checker: Checker | None = None, deadline: float | None = None):
        self.id = uuid.uuid4().hex
        self.canvas, self.settings, self.checker, self.deadline = canvas, settings, checker, deadline
        self._scheduler = scheduler
        self._steps: queue.SimpleQueue[Any] = queue.SimpleQueue()
        # Guarded by the scheduler's condition:
        self._call: list[Call] | None = None   # the calls it waits for, until the worker takes them
        self._answer: Any = None
        self._answered = False
        self._round: _Round | None = None      # the forward its latest answer came from
        self._cancelled = False
        self._error: BaseException | None = None
        self._started = 0.0

    def __iter__(self) -> Iterator[Step]:
        """The run's steps as they come (blocking); re-raises the run's own error. Ends early after
        `cancel`."""
        while True:
            item = self._steps.get()
            if item is _END or (self._cancelled and self._error is None):
                break
            yield item
        if self._error is not None:
            raise self._error

    def cancel(self) -> None:
        """Stop the run at its next forward at the latest and free its slot; iteration then ends."""
        self._scheduler._cancel(self)

    def __repr__(self) -> str:
        return f"Job({self.id[:8]}, cancelled={self._cancelled})"


class JobModel(Routed):
    """What one job's loop sees as its model: the scheduler's model, except that each forward is
    asked of the scheduler (`ask`), which runs it batched with the other jobs' forwards."""

    def __init__(self, model: DiffusionLM, ask: Callable[[list[Call]], list[Any]]):
        super().__init__(model)  # the causal view's reads ride with the job's forwards; its closing runs here
        self._ask = ask

    def forward_many(self, calls: Sequence[Call]) -> list[Any]:
        return self._ask(list(calls))


class Scheduler:
    """Runs submitted edits on `model`, up to `max_batch` at once sharing each forward, the rest
    waiting first in, first out (at most `max_queue` of them). `on_forward` hears of every forward
    from the worker thread (keep it quick; its errors are logged, not raised)."""

    def __init__(self, model: DiffusionLM, max_batch: int = MAX_BATCH, max_queue: int = MAX_QUEUE,
                 on_forward: Callable[[ForwardReport], None] | None = None):
        if max_batch < 1 or max_queue < 0:
            raise ValueError(f"max_batch must be >= 1 and max_queue >= 0, got {max_batch}, {max_queue}")
        self.model, self.max_batch, self.max_queue, self.on_forward = model, max_batch, max_queue, on_forward
        self._cond = threading.Condition()
        self._queue: deque[Job] = deque()
        self._active: list[Job] = []
        self._threads: dict[Job, threading.Thread] = {}
        self._unreported: _Round | None = None
        self._forwards = self._last_batch = 0
        self._job_seconds: float | None = None  # running mean of a job's time in its slot
        self._closed = False
        self._worker = threading.Thread(target=self._serve, name="scheduler", daemon=True)
        self._worker.start()

    # ---- the public side ------------------------------------------------------------------------

    def submit(self, canvas: Canvas, settings: SamplerSettings, checker: Checker | None = None,
               deadline: float | None = None) -> Job:
        """Queue an edit (corrected by `checker`'s rounds, engine.correct); raises QueueFull when
        `max_queue` edits already wait. Past `deadline` (time.monotonic()), waiting or not, its next
        step is its last (engine.loop.denoise) and no correction round starts."""
        if canvas.codec is not self.model.codec:
            raise ValueError("the canvas was built with another model's tokenizer")
        with self._cond:
            if self._closed:
                raise RuntimeError("the scheduler is closed")
            if len(self._queue) >= self.max_queue:
                raise QueueFull(len(self._queue), self._retry_after())
            job = Job(self, canvas, settings, checker, deadline)
            self._queue.append(job)
            self._cond.notify_all()
        return job

    def stats(self) -> SchedulerStats:
        with self._cond:
            return SchedulerStats(len(self._queue), len(self._active), self._forwards, self._last_batch)

    def close(self) -> None:
        """Cancel every job, stop the worker and wait for the threads to end."""
        with self._cond:
            self._closed = True
            jobs = list(self._queue) + self._active
            threads = list(self._threads.values())
            self._cond.notify_all()
        for job in jobs:
            self._cancel(job)
        self._worker.join()
        for thread in threads:
            thread.join()

    def __enter__(self) -> Scheduler:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- the job threads ------------------------------------------------------------------------

    def _run(self, job: Job) -> None:
        """A job's thread: the loop over a JobModel, its steps into the job's queue."""
        try:
            for step in corrected(JobModel(self.model, lambda call: self._ask(job, call)), job.canvas,
                                  job.settings, job.checker, job.deadline):
                job._steps.put(step)
                with self._cond:
                    if job._round is not None:
                        job._round.committed += int(step.committed.sum())
        except Cancelled:
            pass
        except Exception as err:  # the job's own failure: its consumer gets it, the others go on
            job._error = err
        finally:
            self._leave(job)

    def _ask(self, job: Job, calls: list[Call]) -> list[Any]:
        """Hand `calls` to the worker and wait for their answers (raises Cancelled when cancelled)."""
        with self._cond:
            job._call, job._answered = calls, False
            self._cond.notify_all()
            while not (job._answered or job._cancelled):
                self._cond.wait()
            if job._cancelled:
                raise Cancelled
            answer, job._answer = job._answer, None
        if isinstance(answer, Exception):
            raise answer
        return answer

    def _leave(self, job: Job) -> None:
        with self._cond:
            if job in self._active:
                self._active.remove(job)
            self._threads.pop(job, None)
            spent = time.perf_counter() - job._started
            self._job_seconds = spent if self._job_seconds is None else 0.8 * self._job_seconds + 0.2 * spent
            self._cond.notify_all()
        job._steps.put(_END)

    def _cancel(self, job: Job) -> None:
        with self._cond:
            job._cancelled = True
            if job in self._queue:
                self._queue.remove(job)
            if job in self._active:  # its thread unwinds at its next forward; the slot is free now
                self._active.remove(job)
            self._cond.notify_all()
        job._steps.put(_END)

    # ---- the worker -----------------------------------------------------------------------------

    def _serve(self) -> None:
        """The worker: report the last forward, admit jobs, run the next batch; until closed."""
        try:
            while True:
                with self._cond:
                    batch, done = self._next_batch()
                if done is not None:
                    self._report(done)
                if batch is None:
                    return
                if batch:
                    self._forward(batch)
        except BaseException as err:  # a bug here must not leave every client waiting for ever
            log.exception("the scheduler's worker failed")
            self._stop_all(RuntimeError(f"the engine's scheduler stopped: {err!r}"))

    def _stop_all(self, error: Exception) -> None:
        """Close, and end every job with `error`."""
        with self._cond:
            self._closed = True
            jobs = list(self._queue) + self._active
            for job in jobs:
                job._error = error
        for job in jobs:
            self._cancel(job)

    def _next_batch(self) -> tuple[list[tuple[Job, list[Call]]] | None, _Round | None]:
        """(batch, forward to report), once every active job has asked for its next forward: only
        then have they all read the last one's answers. (None, ...) once closed."""
        while not self._closed:
            self._admit()
            if all(job._call is not None for job in self._active):
                done, self._unreported = self._unreported, None
                batch = [(job, job._call) for job in self._active if job._call is not None]
                for job in self._active:
                    job._call = None
                if batch or done is not None:
                    return batch, done
            self._cond.wait()
        done, self._unreported = self._unreported, None
        return None, done

    def _admit(self) -> None:
        """First in, first out, while a slot is free."""
        while self._queue and len(self._active) < self.max_batch:
            job = self._queue.popleft()
            job._started = time.perf_counter()
            self._active.append(job)
            thread = threading.Thread(target=self._run, args=(job,), name=f"job-{job.id[:8]}", daemon=True)
            self._threads[job] = thread
            thread.start()

    def _forward(self, batch: list[tuple[Job, list[Call]]]) -> None:
        start = time.perf_counter()
        answers = self._answers([calls for _, calls in batch])
        done = _Round(len(batch), time.perf_counter() - start)
        with self._cond:
            self._forwards += 1
            self._last_batch = len(batch)
            self._unreported = done
            for (job, _), answer in zip(batch, answers):
                job._answer, job._answered, job._round = answer, True, done
            self._cond.notify_all()

    def _answers(self, asks: list[list[Call]]) -> list[Any]:
        """Each job's answers (a list, or the exception its calls raised); if the batch fails, each
        job's calls alone, so that a bad job fails alone."""
        try:
            flat = self.model.forward_many([call for calls in asks for call in calls])
            ends = list(itertools.accumulate(len(calls) for calls in asks))
            return [flat[end - len(calls):end] for calls, end in zip(asks, ends)]
        except Exception as err:
            if len(asks) == 1:
                return [err]
        answers: list[Any] = []
        for calls in asks:
            try:
                answers.append(self.model.forward_many(calls))
            except Exception as err:
                answers.append(err)
        return answers

    def _report(self, done: _Round) -> None:
        if self.on_forward is None:
            return
        try:
            self.on_forward(ForwardReport(done.batch_size, done.seconds, done.committed))
        except Exception:
            log.exception("on_forward failed")

    def _retry_after(self) -> float:
        """Seconds until a queue place is likely free: a slot's time per job, one per max_batch waiting."""
        per_job = self._job_seconds or 1.0
        return per_job * (1 + len(self._queue) // self.max_batch)
