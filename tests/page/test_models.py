"""The model picker's swap, called as the page calls it: runs going finish on the old model, runs after
the swap go to the new one, the old scheduler closes once its runs let go, a failed load changes nothing."""
import gc
import threading
import time

import pytest
import torch

from engine.catalog import loaded_entry
from page import runs
from page.document_editor import EditorValue
from page.models import Models, retire, switch
from page.state import NEW_DOC
from tests.page.helpers import args, scripted_page
from tests.tiny import ScriptedModel

TEXT = "The quick brown fox jumps over the lazy dog."
STATUS, TITLE, PRESET = 1, 2, 3  # switch's outputs after the picker


@pytest.fixture
def page():
    yield from scripted_page()


def other_model(page) -> ScriptedModel:
    """A second scripted model on the same tokenizer that wants other tokens."""
    target = torch.randint(10, 300, (512,), generator=torch.Generator().manual_seed(1))
    model = ScriptedModel(page.model.codec, target, torch.linspace(0.3, 0.9, 512))
    model.label = "scripted B"
    return model


def regenerate(page):
    _, language, *rest = args(TEXT, 4, 15)
    return runs.regenerate(page, "selection", EditorValue(TEXT, 4, 15), NEW_DOC, language, *rest)


def test_a_run_going_finishes_on_the_old_model_and_the_next_goes_to_the_new_one(page):
    a, b = page.model, other_model(page)
    going = regenerate(page)
    next(going)  # started ("starting…"): it has not asked the engine for a step yet
    old_engine = page.swap(b)
    ended = list(going)
    assert a.calls > 0 and b.calls == 0  # every step of it came from A
    assert "data-done" in ended[-1][0]  # it finished, was not cancelled
    assert page.model is b and page.engine_client is not old_engine
    list(regenerate(page))
    assert b.calls > 0


def test_the_old_scheduler_closes_once_the_runs_that_pinned_it_have_ended(page):
    going = regenerate(page)
    next(going), next(going)
    old = page.swap(other_model(page))
    scheduler = old.scheduler
    retire(old)
    del old
    gc.collect()
    assert scheduler._worker.is_alive()  # the run going still holds the old engine
    list(going)
    del going
    deadline = time.monotonic() + 10
    while scheduler._worker.is_alive():
        gc.collect()
        assert time.monotonic() < deadline, "the old scheduler was never closed"
        time.sleep(0.05)


def picker_for(page, b, load=None) -> Models:
    entries = [loaded_entry("a", page.model, "scripted"), loaded_entry("b", b, "scripted")]
    return Models(entries, "a", load or (lambda source: b))


def test_switching_says_it_is_loading_then_swaps_and_updates_the_title_and_the_dial(page):
    b = other_model(page)
    updates = list(switch(page, picker_for(page, b), "b"))
    assert updates[0][STATUS] == "loading **b**… runs go to **a** until it is ready"
    assert page.model is b and updates[-1][0] == "b" and "scripted B" in updates[-1][TITLE]
    assert updates[-1][PRESET] == "fast" and updates[-1][STATUS].startswith("running **b**")


def test_a_model_that_does_not_load_leaves_the_page_as_it_was(page):
    a, b = page.model, other_model(page)

    def fails(source):
        raise ValueError("the model will not fit: model 9.0 GB ...")
    models = picker_for(page, b, fails)
    *_, last = switch(page, models, "b")
    assert page.model is a and models.current == "a" and last[0] == "a"
    assert last[STATUS] == "⚠ could not load **b**: the model will not fit: model 9.0 GB ...; still running **a**"
    assert models.loading is None  # a later pick may try again


def test_a_second_pick_while_one_loads_is_refused_in_the_status_line(page):
    b, release = other_model(page), threading.Event()

    def slow(source):
        assert release.wait(10)
        return b
    models = picker_for(page, b, slow)
    first = switch(page, models, "b")
    next(first)  # loading
    loading = threading.Thread(target=lambda: list(first))
    loading.start()
    try:
        [refused] = list(switch(page, models, "b"))
        assert refused[STATUS] == "⚠ already loading **b**; pick again when it is ready"
    finally:
        release.set()
        loading.join(10)
    assert page.model is b


def test_accepting_a_run_made_before_a_swap_records_the_model_that_made_it(page):
    a = page.model
    a.label = "scripted A"
    *_, done = regenerate(page)
    page.swap(other_model(page))
    runs.accept(page, EditorValue(TEXT), done[2], 0, NEW_DOC, "a.txt", "text", None)
    [document] = page.history.documents()
    assert page.history.head(document.id).regeneration.model == "scripted A"


def test_a_refresh_lists_the_catalog_as_it_is_now_with_the_running_model_first(page):
    b = other_model(page)
    later = [loaded_entry("c", b, "scripted"), loaded_entry("a", page.model, "scripted")]
    models = Models([loaded_entry("a", page.model, "scripted"), loaded_entry("b", b, "scripted")], "a",
                    lambda source: b, lambda: later)
    picker = models.refresh()
    assert [name for _, name in picker.choices] == ["a", "c"] and picker.value == "a"
