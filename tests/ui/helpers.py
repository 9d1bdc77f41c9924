"""What the browser tests do to the page: type, select, press an action and wait for it."""
import re

PARAGRAPH = "The old lighthouse keeper watched the storm roll in across the grey water every night."
CODE = "def area(width, height):\n    result = width * height\n    return result\n"

RECORD_LIVE = """() => {
  window.__frames = [];
  const live = document.querySelector('#live');
  new MutationObserver(() => window.__frames.push(live.innerHTML))
    .observe(live, {childList: true, subtree: true, characterData: true});
}"""


def document(page):
    return page.input_value("#document textarea")


def type_document(page, text):
    page.fill("#document textarea", text)


def select(page, start, end):
    page.evaluate("([a, b]) => { const t = document.querySelector('#document textarea');"
                  " t.focus(); t.setSelectionRange(a, b); }", [start, end])


def run_action(page, button):
    page.evaluate(RECORD_LIVE)
    page.click(button)
    page.wait_for_selector("#metrics [data-state='done']", timeout=30_000)
    page.wait_for_selector("#candidates", state="visible")


def pick_revision(page, box, text):
    page.click(f"{box} input")
    page.get_by_role("option", name=re.compile(text)).first.click()


def accept_confirming(page, button="#accept"):
    """Press Accept; if the candidate does not parse the page asks first: accept anyway."""
    page.click(button)
    page.wait_for_selector("#confirm-text :text('Accept it anyway'), #message :text('Accepted candidate')")
    if page.is_visible("#confirm"):
        page.click("#accept-anyway")
        page.wait_for_selector("#message :text('Accepted candidate')")


def show_history(page):
    page.get_by_role("tab", name="History").click()
    page.wait_for_selector("#history", state="visible")
