""""auto" length on the page: every trial length through the engine's scheduler at once, the chosen
trial's own steps kept (no second run), a shorter span able to win, Stop cancelling the trials."""
import re
import threading
import time

import pytest
import torch

from editor.history import History
from engine import PRESETS, TextCodec
from engine.length import length_score
from page import runs
from page.dial import dial_values
from page.document_editor import EditorValue
from page.state import NEW_DOC, Page
from tests.tiny import ScriptedModel, byte_bpe_tokenizer

TEXT = "The quick brown fox jumps over the lazy dog."
A, B = 4, 15  # "quick brown"


class CountingModel(ScriptedModel):
    """Records the scheduler's batches: how many runs shared each forward."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.batches: list[int] = []
        self.gate = threading.Event()
        self.gate.set()
        self.permits: threading.Semaphore | None = None  # when set, one forward per permit released

    def forward_many(self, calls):
        assert self.gate.wait(30)
        assert self.permits is None or self.permits.acquire(timeout=30)
        self.batches.append(len(calls))
        return super().forward_many(calls)


@pytest.fixture
def model():
    codec = TextCodec.from_tokenizer(byte_bpe_tokenizer(bos=True))
    target = torch.randint(10, 300, (512,), generator=torch.Generator().manual_seed(0))
    return CountingModel(codec, target, torch.linspace(0.3, 0.9, 512))


def regenerate(page, mode="auto"):
    dial = dial_values(PRESETS["quality"])
    selected = EditorValue(TEXT, A, B)
    return runs.regenerate(page, "selection", selected, NEW_DOC, "text", mode, 8, "", "", "", False, *dial)


def test_the_trials_share_forwards_and_the_chosen_one_is_not_run_again(model):
    page = Page.for_model(model, History("sqlite://"), scorer=lambda d, s, e: -float(e - s))  # the longest
    keep = len(model.codec.encode(TEXT[A:B]))
    outputs = list(regenerate(page))
    run = outputs[-1][2]
    assert run.canvas.slot_ranges[0][1] - run.canvas.slot_ranges[0][0] == keep + 4
    # The shown trial leads alone (its first step as soon as keep's), then the trials share forwards
    # rather than running one after another.
    assert model.batches[0] == 1 and max(model.batches) >= 2 and sum(model.batches) > len(model.batches) + 2
    # The longest trial's forwards (it started a few forwards after the lead) and no second run of
    # it: the page shows the chosen trial's own steps (a rerun would add all its forwards again).
    assert run.last.forwards == keep + 4 and len(model.batches) < 2 * run.last.forwards
    assert f"{keep + 4} tokens fitted best" in outputs[-1][-2]
    drawn = [o for o in outputs[1:-1] if o[2] is not None and o[2] is not run]
    assert drawn and all(o[2].canvas.slot_ranges == drawn[0][2].canvas.slot_ranges for o in drawn)
    shown = drawn[0][2].canvas.slot_ranges[0]
    assert shown[1] - shown[0] == keep  # meanwhile the page drew the trial at the selection's own length


def test_a_shorter_span_can_win_at_the_same_nll_per_token():
    assert length_score(3.0, 128) < length_score(3.0, 134)
    assert length_score(2.9, 134) < length_score(3.0, 128)  # a longer span that reads better still wins


def in_engine(page):
    stats = page.engine_client.scheduler.stats()
    return stats.queued + stats.active


def test_stop_during_the_trials_cancels_every_one(model):
    page = Page.for_model(model, History("sqlite://"), scorer=lambda d, s, e: 1.0)
    stream = regenerate(page)
    next(stream)  # "choosing a length"
    model.gate.clear()
    threading.Timer(0.3, model.gate.set).start()
    next(stream)  # the first step of the shown trial; the others start now
    deadline = time.monotonic() + 10
    while in_engine(page) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert in_engine(page) >= 2  # the longer trials are waiting or denoising
    stream.close()  # Stop / Esc: gradio closes the handler's generator
    time.sleep(0.2)  # a trial's reader that was just starting
    stats = page.engine_client.scheduler.stats()
    assert stats.active == 0 and stats.queued == 0


def test_stop_before_the_first_step_of_the_trials_ends_them_at_the_next_step(model):
    """Stop or Esc while auto is still choosing: the page marks the tab's run stopped (the shown trial is
    the tab's run from the first update), and the handler ends at the next step; it does not run every
    trial to the end (gradio cannot close a generator that is waiting for a step, and meanwhile the tab's
    next run would wait behind it)."""
    page = Page.for_model(model, History("sqlite://"), scorer=lambda d, s, e: 1.0)
    model.permits = threading.Semaphore(0)  # the test lets forwards through one at a time
    stream = regenerate(page)
    first = next(stream)  # "choosing a length", before any forward
    assert first[2] is not None and first[-1]["live"]["state"] == "denoising"  # the editor's keys act on it
    runs.stopped(first[2])  # what Stop and Esc call with the tab's run
    model.permits.release()  # one forward: its step is where the handler sees the stop
    assert list(stream) == []  # nothing drawn, nothing finished
    model.permits.release(8)  # a whole run takes 8 forwards; a cancelled one runs none of them
    time.sleep(0.2)
    # the permitted forward, and at most one more that had started before the trials were cancelled
    assert len(model.batches) <= 2
    time.sleep(0.2)
    stats = page.engine_client.scheduler.stats()
    assert stats.active == 0 and stats.queued == 0


def test_the_chosen_trial_is_scored_once_to_pick_it_and_rank_it(model):
    """"auto" scores each trial's window to pick a length; ranking the chosen trial's candidate asks
    for the same window again, and gets the score already computed (a causal forward each)."""
    calls = []

    def score(document, start, end):
        calls.append((document, start, end))
        return -float(end - start)
    page = Page.for_model(model, History("sqlite://"), scorer=score)
    list(regenerate(page))
    trials = len(calls) - 1  # the original's window is scored once, to rank against it
    assert trials >= 3 and len(set(calls)) == len(calls)  # no window twice
    assert (TEXT, A, B) in calls


def test_the_metrics_say_the_whole_wait_not_only_the_chosen_trials_own_clock(model):
    """A person waits for auto's trials, the scoring and the ranking, not only for the chosen trial's
    loop: the metrics' seconds count from the key press (the loop's own clock is in the tooltip)."""
    def slow_score(document, start, end):
        time.sleep(0.3)  # a base-model read of each trial's window
        return -float(end - start)
    page = Page.for_model(model, History("sqlite://"), scorer=slow_score)
    began = time.monotonic()
    outputs = list(regenerate(page))
    waited = time.monotonic() - began
    run, metrics = outputs[-1][2], outputs[-1][1]
    shown = float(re.search(r"· ([0-9.]+) s</div>", metrics).group(1))
    assert run.last.elapsed < 1.0 <= shown <= waited + 0.1  # 4+ windows scored at 0.3 s each
    assert f"the model's own time {run.last.elapsed:.1f} s" in metrics
