"""The page as a new user found it (issue 19), at 1280x800: nothing typed is lost (typing before the
page has reopened the last document, a reload), keys act where the page says they do, expected
conditions are messages (never Gradio's error state), and a run's controls fit the window."""
from __future__ import annotations

import re
import time
from contextlib import contextmanager

import pytest
import torch

from tests.ui.conftest import SCREENSHOTS, VIEWPORT, free_port, open_page, serve
from tests.ui.helpers import CODE, EDITOR, PARAGRAPH, VIEW, document, select, type_document, wait_document

pytestmark = pytest.mark.browser

MESSAGE = "#message"
ERROR_STATE = ".toast-body.error, .status-tracker.error, [data-testid='toast-body'].error"


@contextmanager
def slow_reopen_page(model, folder, delay=2.5):
    """The app whose reopen of the last document takes `delay` seconds (a busy machine), with a
    document already there to reopen."""
    from editor.history import History
    from page.demo import build_demo, launch

    class SlowHistory(History):
        def last_opened(self):
            time.sleep(delay)
            return super().last_opened()

    history = SlowHistory(f"sqlite:///{folder / 'sharpen.db'}")
    history.create_document("essay.txt", "An essay already written.\n", "text")
    demo = build_demo(model, history)
    launch(demo, prevent_thread_lock=True, server_name="127.0.0.1", server_port=free_port(), quiet=True)
    try:
        yield demo.local_url
    finally:
        demo.close()


# Whether a dropdown's text ends left of its arrow (the text is measured in the input's own font).
TEXT_CLEAR_OF_ARROW = """box => {
  const input = document.querySelector(box + ' input'), arrow = document.querySelector(box + ' svg');
  const style = getComputedStyle(input), ctx = document.createElement('canvas').getContext('2d');
  ctx.font = style.font;
  const start = input.getBoundingClientRect().left + parseFloat(style.paddingLeft);
  return start + ctx.measureText(input.value).width <= arrow.getBoundingClientRect().left;
}"""


def no_error_state(page):
    """Gradio's error state: a red toast, "Error" pills over outputs."""
    assert page.locator(ERROR_STATE).count() == 0
    assert page.get_by_text(re.compile(r"^Error$")).count() == 0


def test_typing_before_the_reopen_and_a_reload_lose_nothing_and_the_dial_is_kept(browser, model, tmp_path):
    with slow_reopen_page(model, tmp_path) as url:
        context = browser.new_context(viewport=VIEWPORT)
        page = context.new_page()
        page.set_default_timeout(20_000)
        page.goto(url)
        page.wait_for_selector(f"{EDITOR}")
        page.click(EDITOR)
        page.keyboard.type("My first words")  # at once, while the page is still reopening essay.txt
        assert not page.evaluate("document.body.dataset.sharpenReady")  # typed before the reopen landed
        page.wait_for_selector("body[data-sharpen-ready]")
        page.wait_for_selector(f"{MESSAGE} :text('Kept what you typed')")
        assert document(page) == "My first words"  # not replaced by essay.txt
        assert "essay.txt" in page.inner_text(MESSAGE) and page.is_visible("#unsaved :text('unsaved')")
        # More typing, a pause (kept as a draft), and the dial's candidates set to 3; then a reload.
        page.keyboard.type(", and more.")
        page.click("#dial .toggle-button")
        page.fill("#dial-candidates input[type=number]", "3")
        page.keyboard.press("Enter")
        page.click("#dial .toggle-button")
        page.wait_for_timeout(1500)  # the draft is kept after a pause in typing; the dial as it changes
        page.reload()
        page.wait_for_selector("body[data-sharpen-ready]")
        wait_document(page, "My first words, and more.")
        assert page.is_visible("#unsaved :text('unsaved')") and "unsaved typing is back" in page.inner_text(MESSAGE)
        assert page.input_value("#dial-candidates input[type=number]") == "3"
        # Saved (Ctrl+S), the draft is gone: a reload shows the revision, not marked unsaved.
        page.click(EDITOR)
        page.keyboard.press("Control+s")
        page.wait_for_selector(f"{MESSAGE} :text('Saved as revision 1')")
        assert not page.is_visible("#unsaved :text('unsaved')")
        page.reload()
        page.wait_for_selector("body[data-sharpen-ready]")
        wait_document(page, "My first words, and more.")
        assert not page.is_visible("#unsaved :text('unsaved')")
        context.close()


def open_file(page, name, text):
    page.set_input_files("input[type=file]", files=[{"name": name, "mimeType": "text/plain", "buffer": text.encode()}])
    page.wait_for_selector(f"#documents label:has-text('{name}') input:checked")
    wait_document(page, text)


def test_keys_saving_undo_and_help_work_without_an_error_state(page):
    long_text = "".join(f"line {i}\n" for i in range(1, 80))
    open_file(page, "long.txt", long_text)
    assert page.evaluate("() => document.querySelector('#document .cm-scroller').scrollTop") == 0  # at the top
    open_file(page, "notes.txt", PARAGRAPH)
    # Ctrl+Z on a document with one revision: a message, not Gradio's error state.
    page.click(EDITOR)
    page.keyboard.press("Control+z")
    page.wait_for_selector(f"{MESSAGE} :text('Nothing to undo')")
    no_error_state(page)
    page.click("#documents label:has-text('long.txt')")  # the list still answers
    wait_document(page, long_text)
    page.click("#documents label:has-text('notes.txt')")
    wait_document(page, PARAGRAPH)
    # Ctrl+S saves what was typed as a revision, visibly; Download hands the browser the file.
    type_document(page, PARAGRAPH + " Typed.")
    page.keyboard.press("Control+s")
    page.wait_for_selector(f"{MESSAGE} :text('Saved as revision 2')")
    page.wait_for_selector("#history li.rev.current:has-text('#2 typed')")
    assert page.locator("#history li.rev").count() == 2, page.locator("#history li.rev").all_inner_texts()
    assert not page.is_visible("#download")  # no download box under the editor
    with page.expect_download() as got:
        page.click("#download-button")
    assert got.value.suggested_filename == "notes.txt"
    # Restore revision 1, then Ctrl+Z: back to the state before the restore, named by what it undid.
    page.get_by_role("tab", name="History").click()
    page.click("#history li.rev >> nth=0")
    page.click("#restore")
    wait_document(page, PARAGRAPH)
    page.click(EDITOR)
    page.keyboard.press("Control+z")
    wait_document(page, PARAGRAPH + " Typed.")
    rows = page.locator("#history li.rev").all_inner_texts()
    assert rows[2].startswith("#3 restored #1") and rows[3].startswith("#4 undo of #3"), rows
    no_error_state(page)
    page.click("#history li.rev >> nth=3")  # B: the longest line, whole in its box (not cut under the arrow)
    page.wait_for_function("() => document.querySelector('#rev-b input').value.startsWith('#4 undo of #3')")
    page.wait_for_function(TEXT_CLEAR_OF_ARROW, arg="#rev-b")  # once the dropdown has laid out its new value
    page.click("#diff")  # the diff opens inside the window, not below it
    page.wait_for_selector("#diff-view .sh-diff")
    box = page.locator("#diff-view").bounding_box()
    assert box is not None and box["y"] + box["height"] <= VIEWPORT["height"], box
    # F1: the keys overlay, its Close button inside the window; Esc closes it.
    page.click(EDITOR)
    page.keyboard.press("F1")
    close = page.locator(".sh-help-close")
    box = close.bounding_box()
    assert box is not None and box["y"] + box["height"] <= VIEWPORT["height"] and box["x"] + box["width"] <= 1280
    page.keyboard.press("Escape")
    page.wait_for_selector(".sh-help", state="detached")


def test_a_run_started_by_mouse_takes_the_keys_and_fits_the_window(page):
    open_file(page, "fox.txt", PARAGRAPH + "\n" + PARAGRAPH + "\n")
    # Prose in a proportional font; code stays monospace.
    font = "() => getComputedStyle(document.querySelector('#document .cm-content')).fontFamily"
    assert "mono" not in page.evaluate(font).lower()
    page.click("#dial .toggle-button")
    page.fill("#dial-candidates input[type=number]", "3")
    page.keyboard.press("Enter")
    page.click("#dial .toggle-button")
    select(page, 4, 9)  # "old l"
    page.click("#go-selection")  # by mouse: the keys must still act on the run
    page.wait_for_selector("#metrics [data-state='done']", timeout=30_000)
    assert page.evaluate("() => document.activeElement.closest('.cm-editor') !== null")
    # Everything the run offers is inside the window: the candidates, Accept, Reject all, the inspector.
    for target in ("#candidates", "#accept", "#reject", "#inspector"):
        box = page.locator(target).bounding_box()
        assert box is not None and box["y"] + box["height"] <= VIEWPORT["height"], target
    # The span's bar covers no text: a line of its own, inside the editor.
    bar = page.locator("#document .cm-sh-toolbar").bounding_box()
    editor = page.locator("#document .cm-editor").bounding_box()
    assert bar["x"] + bar["width"] <= editor["x"] + editor["width"]
    for line in page.locator(f"{EDITOR} .cm-line").all():
        r = line.bounding_box()
        assert r is None or r["y"] >= bar["y"] + bar["height"] - 1 or r["y"] + r["height"] <= bar["y"] + 1
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "run-3-candidates.png"))
    page.keyboard.press("Tab")  # what the message says Tab does
    page.wait_for_selector(f"{MESSAGE} :text('Accepted candidate')")
    type_document(page, CODE)
    page.click("#language input")
    page.get_by_role("option", name="python", exact=True).click()
    page.wait_for_function(f"() => {VIEW}.contentDOM.className.indexOf('sh-prose') < 0")
    assert "mono" in page.evaluate(font).lower()


def test_esc_stops_a_run_before_its_first_step(page, model):
    model.delay = 2.5  # a busy machine: the first step (or auto's trials) takes a while
    open_file(page, "slow.txt", PARAGRAPH)
    select(page, 4, 25)
    page.keyboard.press("Control+Enter")
    page.wait_for_selector("#document .cm-sh-span[data-state='denoising']")  # the span, masked, at once
    assert page.locator("#metrics [data-state]").count() == 0  # no step has come yet
    page.keyboard.press("Escape")
    page.wait_for_selector("#metrics [data-state='stopped']", timeout=5_000)
    page.wait_for_timeout(3_000)  # the forward under way ends: no step is drawn after the stop
    assert page.locator("#metrics [data-state='stopped']").count() == 1
    assert document(page) == PARAGRAPH


def line_break_model():
    """A scripted model that writes short lines: whatever span it fills, its candidate has line breaks."""
    from engine import TextCodec
    from tests.tiny import ScriptedModel, byte_bpe_tokenizer
    codec = TextCodec.from_tokenizer(byte_bpe_tokenizer(bos=True))
    target = torch.tensor(codec.encode("one\ntwo\n" * 300)[:1024])
    return ScriptedModel(codec, target, torch.full((1024,), 0.9))


GUTTER = "#document .cm-lineNumbers .cm-gutterElement"
PREVIEW_LINES = """() => {
  const box = document.querySelector('#document .cm-sh-linenos');
  const nls = [...document.querySelectorAll('#document .cm-sh-span .cm-sh-nl')];
  const numbers = box ? [...box.children] : [];
  const middle = (e) => { const r = e.getBoundingClientRect(); return r.top + r.height / 2; };
  return {breaks: nls.length, offsets: nls.map((nl, i) => numbers[i + 1] ? middle(numbers[i + 1]) - middle(nl) : null)};
}"""


def test_a_preview_numbers_its_lines_as_the_document_would_read(browser, tmp_path):
    with serve(line_break_model(), tmp_path) as url, open_page(browser, url) as page:
        text = "".join(f"line {i}\n" for i in range(1, 21))
        open_file(page, "lines.txt", text)
        a = text.index("line 5")
        select(page, a, text.index("line 7"))  # "line 5\nline 6\n": two line breaks
        page.keyboard.press("Control+Enter")
        page.wait_for_selector("#document .cm-sh-span[data-state='done']")
        page.wait_for_timeout(200)  # the numbers are placed in the next measure
        preview = page.evaluate(PREVIEW_LINES)
        assert preview["breaks"] >= 1, preview
        # Every line has its number, the preview's included, counted as the document would read accepted.
        numbers = [int(n) for t in page.locator(GUTTER).all_inner_texts() for n in t.split()]
        lines = text.count("\n") + 1 - 2 + preview["breaks"]
        assert numbers == list(range(1, lines + 1)), numbers
        # Each of the preview's numbers sits beside its line.
        assert all(o is not None and abs(o) <= 3 for o in preview["offsets"]), preview
        page.screenshot(path=str(SCREENSHOTS / "preview-line-numbers.png"))
        page.keyboard.press("Tab")
        wait_document(page, text, changed=True)
        assert document(page).count("\n") + 1 == lines
