"""Ctrl/Cmd+K: the instruction box opens over the selection, Esc closes it, Enter runs an instruction
edit of the selection (the model reads another canvas), and a refused instruction is a message."""
from __future__ import annotations

import pytest

from tests.ui.conftest import SCREENSHOTS
from tests.ui.helpers import EDITOR, PARAGRAPH, RECORD_LIVE, VIEW, document, open_file, select

pytestmark = pytest.mark.browser
BOX = "#instruct-box"


def open_box(page, a, b):
    select(page, a, b)
    page.keyboard.press("Control+k")
    page.wait_for_selector(BOX, state="visible")


def candidates(page) -> str:
    page.wait_for_selector("#metrics [data-state='done']", timeout=30_000)
    page.wait_for_selector("#candidates", state="visible")
    return page.inner_text("#candidates")


def test_ctrl_k_opens_the_box_over_the_selection_esc_closes_enter_runs(page):
    open_file(page, "instruct.txt", PARAGRAPH)
    a = PARAGRAPH.index("watched the storm")
    b = a + len("watched the storm")
    assert not page.is_visible(BOX)

    open_box(page, a, b)
    box = page.locator(BOX).bounding_box()
    at = page.evaluate(f"a => {VIEW}.coordsAtPos(a)", a)
    assert box["y"] + box["height"] <= at["top"] + 1 or box["y"] >= at["bottom"] - 1  # beside the line, not on it
    assert abs(box["x"] - at["left"]) < 60 and page.evaluate("document.activeElement.closest('#instruct-box') !== null")
    page.keyboard.press("Escape")
    page.wait_for_selector(BOX, state="hidden")
    assert page.evaluate("document.activeElement.closest('#document') !== null")  # the editor has the keyboard back

    page.click("#go-selection")  # a plain run of the same selection, to compare with
    plain = candidates(page)
    page.click("#reject")
    page.wait_for_selector("#candidates", state="hidden")

    open_box(page, a, b)
    page.fill("#instruction textarea, #instruction input", "make it about a ship")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "instruct-box.png"))
    page.evaluate(RECORD_LIVE)
    page.keyboard.press("Enter")
    page.wait_for_selector(BOX, state="hidden")
    instructed = candidates(page)
    page.screenshot(path=str(SCREENSHOTS / "instruct-run.png"))
    assert instructed != plain            # the model read the instructed canvas
    assert document(page) == PARAGRAPH   # unchanged until Accept
    assert page.evaluate("window.__frames.length") >= 2  # streamed steps, as any run


def test_an_instruction_over_the_limit_is_a_message(page):
    page.locator(EDITOR).click()
    open_box(page, 0, 3)
    page.fill("#instruction textarea, #instruction input", "x" * 1001)
    page.keyboard.press("Enter")
    page.wait_for_selector("#message :text('instruction: 1,001 characters; the limit is 1,000')")
