"""Several selections in the real page: a rename across a function (Ctrl+D adds the next occurrence),
both spans drawn in place and accepted as one revision; Fill holes on a template."""
from tests.ui.conftest import SCREENSHOTS
from tests.ui.helpers import CODE, EDITOR, PARAGRAPH, VIEW, document, open_file, run_action, select, show_history


def ranges(page):
    return page.evaluate(f"() => {VIEW}.state.selection.ranges.map(r => [r.from, r.to])")


def test_a_rename_across_a_function_is_one_run_and_one_revision(page):
    open_file(page, "rename.py", CODE)  # a document of its own: the session's page reopens the last one
    first = CODE.index("result")
    select(page, first, first + len("result"))
    page.keyboard.press("Control+d")  # CodeMirror's next occurrence: the second "result"
    second = CODE.index("result", first + 1)
    assert ranges(page) == [[first, first + 6], [second, second + 6]]
    run_action(page, "#go-selection")
    span = page.locator(f"{EDITOR} .cm-sh-span")
    kept = span.locator(".cm-sh-kept")
    assert kept.count() == 1 and kept.inner_text() == CODE[first + 6:second]  # the text between, as it was
    assert span.locator(".cm-sh-tok[data-pos]").count() >= 2  # the tokens of both spans, to inspect
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "rename-two-spans.png"))
    assert "kept each span's length" in page.inner_text("#message")  # "auto" (the default) says it could not
    page.click("#accept")
    page.wait_for_selector("#message :text('Accepted candidate')")
    after = document(page)
    head, middle = CODE[:first], CODE[first + 6:second]
    assert after.startswith(head) and middle in after and after.endswith("\n") and after != CODE
    # Both occurrences got the same new name (tied: page/ties.py), as a rename must.
    name = after[first:after.index(middle, first)]
    rest = after[first + len(name) + len(middle):]
    assert rest.startswith(name) and rest[len(name):] == CODE[second + 6:]
    show_history(page)
    assert page.locator("#history").inner_text().count("regenerated") == 1  # both spans in one revision


def test_fill_holes_fills_every_hole_of_a_template(page):
    template = "Dear ⟨⟩,\nyour order ⟨3⟩ ships on ⟨⟩.\n"
    open_file(page, "letter.txt", template)
    run_action(page, "#go-holes")
    page.screenshot(path=str(SCREENSHOTS / "fill-holes.png"))
    page.click("#accept")
    page.wait_for_selector("#message :text('Accepted candidate')")
    after = document(page)
    assert "⟨" not in after and after.startswith("Dear ") and ",\nyour order " in after and " ships on " in after


def test_fill_holes_without_holes_says_so(page):
    open_file(page, "no-holes.txt", "no holes in this text\n")
    page.click("#go-holes")
    page.wait_for_selector("#message :text('Fill holes: the text has no holes')")
    assert document(page) == "no holes in this text\n"


def test_the_constraint_row_pins_the_spans_first_and_last_words(page):
    page.click("#dial .toggle-button")
    page.click("#dial-pins .label-wrap")
    page.fill("#constraint textarea", "young")
    page.fill("#ends-with textarea", "keeper")
    page.locator("#ends-with textarea").press("Tab")
    page.screenshot(path=str(SCREENSHOTS / "pinned-words-row.png"))
    page.click("#dial .toggle-button")
    open_file(page, "pinned.txt", PARAGRAPH)
    start = PARAGRAPH.index("old")
    select(page, start, start + len("old lighthouse keeper"))
    run_action(page, "#go-selection")
    page.click("#accept")
    page.wait_for_selector("#message :text('Accepted candidate')")
    after = document(page)
    assert after.startswith("The young") and "keeper watched the storm" in after
