"""What a person does on the page: type, select, regenerate, watch, accept, diff, restore, stop."""
from __future__ import annotations

import pytest

from tests.ui.conftest import SCREENSHOTS
from tests.ui.helpers import (
    CODE,
    PARAGRAPH,
    RECORD_LIVE,
    VIEW,
    accept_confirming,
    document,
    open_file,
    pick_revision,
    run_action,
    select,
    selected,
    type_document,
    wait_document,
)

pytestmark = pytest.mark.browser


def test_regenerate_a_phrase_accept_diff_and_restore(page):
    open_file(page, "keeper.txt", PARAGRAPH)
    a = PARAGRAPH.index("watched the storm")
    select(page, a, a + len("watched the storm"))
    run_action(page, "#go-selection")
    frames = page.evaluate("window.__frames")
    masked = [i for i, f in enumerate(frames) if 'tok masked' in f]
    final = [i for i, f in enumerate(frames) if 'data-done="1"' in f]
    assert masked and final and masked[0] < final[0], "masked steps must arrive before the final text"
    assert document(page) == PARAGRAPH  # unchanged until Accept
    page.click("#live .tok.new, #live .tok.settled >> nth=0")
    page.wait_for_selector("#inspector table")
    assert "committed at step" in page.inner_text("#inspector")
    page.fill("#scrub input[type=number]", "1")
    page.keyboard.press("Enter")
    page.wait_for_selector("#live [data-step='0']")
    assert page.locator("#live .tok.masked").count() > 0  # the first step, replayed from the record
    # its undecided slots show their drafts (the model's guesses at that forward), in the editor too
    assert page.locator("#live .tok.masked[data-draft]").count() == page.locator("#live .tok.masked").count()
    page.wait_for_selector("#document .cm-sh-draft")
    page.click("#live .tok.masked >> nth=0")
    page.wait_for_selector("#inspector :text('still masked')")
    assert "the model's choices here" in page.inner_text("#inspector")
    page.check("#heatmap input")
    page.wait_for_selector("#live .sh-view.heatmap")
    page.uncheck("#heatmap input")
    page.fill("#scrub input[type=number]", page.get_attribute("#scrub input[type=range]", "max"))
    page.keyboard.press("Enter")
    page.wait_for_selector("#live [data-done='1']")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "regenerate.png"))

    page.click("#accept")
    wait_document(page, PARAGRAPH, changed=True)
    edited = document(page)
    assert edited.startswith("The old lighthouse keeper ")
    assert edited.endswith(" roll in across the grey water every night.")
    page.wait_for_selector("#history li.rev >> nth=1")
    assert "regenerated" in page.inner_text("#history")

    page.click("#diff")
    page.wait_for_selector("#diff-view ins")
    assert "watched the storm" in page.inner_text("#diff-view del")
    page.locator("#diff-view").scroll_into_view_if_needed()
    page.screenshot(path=str(SCREENSHOTS / "history-diff.png"))

    pick_revision(page, "#rev-b", "typed")  # the first revision
    page.click("#restore")
    wait_document(page, PARAGRAPH)
    assert "restored" in page.inner_text("#history")


def test_regenerate_python_function_body_by_syntax_node(page):
    page.set_input_files("input[type=file]", files=[
        {"name": "area.py", "mimeType": "text/x-python", "buffer": CODE.encode()}])
    wait_document(page, CODE)
    assert page.input_value("#language input") == "python"  # picked from the file name
    at = CODE.index("width * height")
    select(page, at, at + 1)
    body = CODE[CODE.index("result ="):CODE.rindex("result") + len("result")]
    for _ in range(6):  # Expand walks up the tree: identifier, expression, statement, ... the body
        before = selected(page)
        page.click("#expand")
        page.wait_for_function(f"b => {{ const v = {VIEW}; const r = v.state.selection.main;"
                               " return v.state.sliceDoc(r.from, r.to) !== b; }", arg=before)
        if selected(page) == body:
            break
    assert selected(page) == body
    assert "block" in page.inner_text("#message")
    run_action(page, "#go-node")
    page.screenshot(path=str(SCREENSHOTS / "syntax-node.png"))
    accept_confirming(page)
    wait_document(page, CODE, changed=True)
    edited = document(page)
    assert edited.startswith("def area(width, height):\n    ") and body not in edited


def test_stop_mid_generation_leaves_the_text_unchanged(page, model):
    model.delay = 0.25
    type_document(page, PARAGRAPH)
    page.evaluate(RECORD_LIVE)
    a = PARAGRAPH.index("lighthouse")
    select(page, a, len(PARAGRAPH))
    page.click("#go-selection")
    page.wait_for_selector("#live .tok.masked")
    page.click("#stop")
    page.wait_for_selector("#metrics [data-state='stopped']", timeout=10_000)
    assert document(page) == PARAGRAPH
    assert not page.is_visible("#candidates")


def test_html_in_the_document_executes_nothing(page):
    evil = '<img src=x onerror="window.__pwned=1;alert(1)"> is not a tag here'
    type_document(page, evil)
    page.click("#go-selection")  # nothing selected yet: a clear message, the text stays
    page.get_by_text("Select some text in the document first").first.wait_for()
    assert document(page) == evil
    a = evil.index("not a tag")
    select(page, a, a + len("not a tag"))
    run_action(page, "#go-selection")
    assert "<img" in page.inner_text("#live")  # shown as text
    page.click("#accept")
    page.wait_for_selector("#history li.rev >> nth=1")
    page.click("#diff")
    page.wait_for_selector("#diff-view ins")
    page.wait_for_timeout(300)
    assert page.evaluate("window.__pwned") is None and page.dialogs == []
    assert "<img" in page.inner_text("#diff-view")
    assert page.external == [], "the page must work offline"


def test_a_finished_run_fits_a_1280x800_screen(page):
    """Nothing needed to act on a run is below the fold, and the document takes the height."""
    type_document(page, PARAGRAPH)
    select(page, 4, 30)
    run_action(page, "#go-selection")
    assert page.viewport_size == {"width": 1280, "height": 800}
    for needed in ("#document", "#go-selection", "#stop", "#live", "#candidates", "#accept",
                   "#accept-branch", "#reject", "#message", "#save"):
        box = page.locator(needed).bounding_box()
        assert box is not None and box["y"] >= 0 and box["y"] + box["height"] <= 800, (needed, box)
        assert box["x"] >= 0 and box["x"] + box["width"] <= 1280, (needed, box)
    assert page.locator("#document").bounding_box()["height"] >= 450
