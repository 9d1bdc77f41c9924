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


EDITOR = "#document .cm-content"
VIEW = "document.querySelector('#document .sh-editor').cmView"  # the CodeMirror EditorView


def document(page):
    return page.evaluate(f"() => {VIEW}.state.doc.toString()")


def type_document(page, text):
    """Replace the document's text, as a paste would (one change the editor can undo)."""
    page.evaluate(f"t => {{ const v = {VIEW}; v.focus();"
                  " v.dispatch({changes: {from: 0, to: v.state.doc.length, insert: t}, selection: {anchor: 0}}); }",
                  text)


def select(page, start, end):
    """Select [start, end) (UTF-16 offsets) in the editor and focus it, as a mouse drag would."""
    page.evaluate(f"([a, b]) => {{ const v = {VIEW}; v.focus(); v.dispatch({{selection: {{anchor: a, head: b}}}}); }}",
                  [start, end])


def selected(page):
    """The editor's selected text."""
    return page.evaluate(f"() => {{ const v = {VIEW}; const r = v.state.selection.main;"
                         " return v.state.sliceDoc(r.from, r.to); }")


def wait_document(page, text, changed=False):
    """Wait until the editor's text is `text` (changed=True: until it is no longer `text`)."""
    test = "!==" if changed else "==="
    page.wait_for_function(f"t => {VIEW}.state.doc.toString() {test} t", arg=text)


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


def open_file(page, name, text):
    """Open `text` as a new document `name` (Open file), so a test does not edit the one an earlier
    test left open (the page reopens that one), and wait until the editor shows it."""
    page.set_input_files("input[type=file]", files=[{"name": name, "mimeType": "text/plain", "buffer": text.encode()}])
    page.wait_for_selector(f"#documents label:has-text('{name}') input:checked")
    wait_document(page, text)
