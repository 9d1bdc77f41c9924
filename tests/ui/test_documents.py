"""Documents in the browser: a reload shows the same document and history, branches show in the tree,
and the documents list opens another document."""
from __future__ import annotations

import pytest

from tests.ui.conftest import SCREENSHOTS
from tests.ui.helpers import PARAGRAPH, document, run_action, select, show_history, type_document, wait_document

pytestmark = pytest.mark.browser


def regenerate_and_accept(page, phrase, button):
    a = document(page).index(phrase)
    select(page, a, a + len(phrase))
    run_action(page, "#go-selection")
    before = page.locator("#history li.rev").count()
    page.click(button)
    page.wait_for_selector(f"#history li.rev >> nth={before}")


def test_a_reload_shows_the_same_document_and_history_with_its_branch(page):
    if document(page):  # not the document an earlier test left open
        page.click("#new-document")
        wait_document(page, "")
    type_document(page, PARAGRAPH)
    page.fill("#doc-name textarea, #doc-name input", "lighthouse.txt")
    page.click("#save")
    page.wait_for_selector("#message :text('Saved as revision')")
    regenerate_and_accept(page, "watched the storm", "#accept")
    regenerate_and_accept(page, "grey water", "#accept-branch")  # on the head: a branch all the same
    page.wait_for_selector("#history .sh-fork")
    assert page.locator("#history li.rev").count() == 3
    page.click("#diff")  # A: the first revision, B: the branch
    page.wait_for_selector("#diff-view ins")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "history-branch.png"))
    text, tree = document(page), page.inner_text("#history")

    page.reload()
    page.wait_for_selector("body[data-sharpen-ready]")
    assert document(page) == text and page.input_value("#doc-name textarea, #doc-name input") == "lighthouse.txt"
    show_history(page)
    assert page.inner_text("#history") == tree and "branch from #2 #3" in page.inner_text("#history li.rev.current")
    assert page.is_checked("#documents label:has-text('lighthouse.txt') input")
    page.click("#history li.rev >> nth=0")  # a click picks a revision as B, Shift-click as A
    page.wait_for_function("() => document.querySelector('#rev-b input').value.startsWith('#1 ')")
    page.click("#history li.rev >> nth=2", modifiers=["Shift"])
    page.wait_for_function("() => document.querySelector('#rev-a input').value.startsWith('#3 ')")

    page.click("#new-document")
    wait_document(page, "")
    type_document(page, "A second document.")
    page.fill("#doc-name textarea, #doc-name input", "second.txt")
    page.click("#save")
    page.wait_for_selector("#documents label:has-text('second.txt')")
    page.click("#documents label:has-text('lighthouse.txt')")
    wait_document(page, text)
    page.reload()
    page.wait_for_selector("body[data-sharpen-ready]")
    assert document(page) == text  # the one opened last, not the one made last
