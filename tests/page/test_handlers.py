"""The page's handlers through gradio_client: real streamed steps, candidates, history, clear errors."""
import logging
import re

import pytest
import torch

from editor.history import History
from engine import PRESETS, TextCodec
from page.demo import build_demo, launch
from page.dial import dial_values
from tests.page.helpers import QUALITY, args, editor_value, with_text
from tests.tiny import ScriptedModel, byte_bpe_tokenizer

TEXT = "The quick brown fox jumps over the lazy dog."


@pytest.fixture(scope="module")
def client():
    from gradio_client import Client
    codec = TextCodec.from_tokenizer(byte_bpe_tokenizer(bos=True))
    target = torch.randint(10, 300, (512,), generator=torch.Generator().manual_seed(0))
    model = ScriptedModel(codec, target, torch.linspace(0.3, 0.9, 512))
    demo = build_demo(model, HISTORY)
    launch(demo, prevent_thread_lock=True, server_port=None, quiet=True)
    yield Client(demo.local_url, verbose=False)
    demo.close()


HISTORY = History("sqlite://")


def test_regenerate_streams_masked_steps_and_leaves_the_document_alone(client):
    updates = list(client.submit(*args(TEXT, 4, 19), api_name="/regenerate_selection"))
    views = [u[0] for u in updates]
    assert sum('class="tok masked"' in v for v in views) >= 2       # real intermediate steps
    assert 'class="tok masked"' not in views[-1] and 'data-done="1"' in views[-1]
    assert 'class="tok new"' in views[-1]
    assert "forwards" in updates[-1][1] and "tokens/s" in updates[-1][1]
    # "done" only once the candidates are checked and ranked (the editor offers Accept then)
    assert 'data-state="done"' in updates[-1][1] and not any('data-state="done"' in u[1] for u in updates[:-1])
    assert 'data-state="checking"' in updates[-2][1]
    assert "Accept" in updates[-1][-2]
    editor = [u[-1] for u in updates]  # the document editor gets the span's steps, never a new text
    assert all("value" not in e for e in editor)
    lives = [e["live"] for e in editor if e.get("live")]
    assert lives[-1]["state"] == "done" and (lives[-1]["start"], lives[-1]["end"]) == (4, 19)
    assert any(kind == "masked" for _, kind, *_ in lives[0]["pieces"])
    assert not any(kind == "masked" for _, kind, *_ in lives[-1]["pieces"])


def test_accept_makes_revisions_then_diff_and_restore(client):
    list(client.submit(*args(TEXT, 4, 15, candidates=2), api_name="/regenerate_selection"))
    doc, tree, a, b, *_ = with_text(client.predict(TEXT, 1, "notes.txt", "text", api_name="/accept"))
    assert doc.startswith("The ") and doc.endswith(" jumps over the lazy dog.") and doc != TEXT
    assert tree.count('class="rev') == 2 and "regenerated" in tree and "typed" in tree
    diff = client.predict(1, 2, api_name="/diff")
    assert "<del>" in diff and "<ins>" in diff
    restored = with_text(client.predict(1, api_name="/restore"))
    assert restored[0] == TEXT and "restored" in restored[1]


def accept_confirmed(client, *accept_args) -> str:
    """Accept a candidate, confirming if the page asks (random tokens rarely parse); the new text."""
    editor, *rest = client.predict(*accept_args, api_name="/accept")
    if "value" not in editor:  # unchanged: the page asks first
        assert "does not parse" in rest[-1]
        editor, *_ = client.predict(*accept_args, api_name="/accept_anyway")
    return editor["value"]["text"]


def _outside(view: str) -> list[str]:
    """The context pieces around the span in a step view (escaped, as the page shows them)."""
    return re.findall(r'<span class="ctx">(.*?)</span>', view, re.S)


def test_syntax_node_regenerates_the_function_body_only(client):
    code = "def add(a, b):\n    return a + b\n"
    start, end = 0, len(code)  # the whole function, selected roughly (with its newline)
    updates = list(client.submit(*args(code, start, end, language="python"), api_name="/regenerate_node"))
    before, after = _outside(updates[-1][0])  # the span is the whole body (healing may draw the
    assert before.rstrip(" ") == "def add(a, b):\n" and after == "\n"  # indentation's last space in)
    doc = accept_confirmed(client, code, 0, "add.py", "python")
    assert doc.startswith("def add(a, b):\n    ") and doc.endswith("\n")
    assert doc[len("def add(a, b):\n    "):-1] != "return a + b"


def test_candidates_that_do_not_parse_are_marked(client):
    code = "def add(a, b):\n    return a + b\n"
    cursor = code.index("a + b")
    updates = list(client.submit(*args(code, cursor, cursor + 5, language="python", candidates=3),
                                 api_name="/regenerate_selection"))
    labels = [c[0] if isinstance(c, (list, tuple)) else c for c in updates[-1][3]["choices"]]
    assert len(labels) == 3 and any("does not parse" in label for label in labels)  # random tokens


def test_expand_moves_the_selection_to_a_larger_node(client):
    code = "def add(a, b):\n    return a + b\n"
    a = code.index("a + b")
    value, note = client.predict(editor_value(code, a, a + 1), "python", api_name="/expand")
    start, end = value["selection"]
    assert (start, end) == (a, a + 5) and "binary" in note


def test_expand_and_shrink_in_prose_walk_words_sentences_and_paragraphs(client):
    text = "Some words here. Another sentence.\n\nA second paragraph."
    a = text.index("words")
    def move(a, b, direction):
        value, _ = client.predict(editor_value(text, a, b), "text", api_name=f"/{direction}")
        return tuple(value["selection"])
    assert move(a, a + 2, "expand") == (a, a + 5)
    assert move(a, a + 5, "expand") == (0, 16)
    assert move(0, 16, "expand") == (0, 34)
    assert move(0, 34, "shrink") == (0, 16)
    with pytest.raises(Exception, match="Cannot expand further"):
        move(0, 34, "expand")


def test_errors_are_clear_and_change_nothing(client):
    with pytest.raises(Exception, match="Select some text"):
        client.predict(*args("Some text", 3, 3), api_name="/regenerate_selection")
    with pytest.raises(Exception, match="outside the document"):
        client.predict(*args("Some text", 3, 99), api_name="/regenerate_selection")
    client.predict(api_name="/reject")
    with pytest.raises(Exception, match="Nothing to accept"):
        client.predict("typed text", 0, "a.txt", "text", api_name="/accept")


def test_error_messages_do_not_render_user_input_as_html(client):
    with pytest.raises(Exception) as refused:  # gr.Error renders HTML: the constraint must come back as text
        client.predict(*args(TEXT, 4, 15, mode="N tokens", n=1, constraint="<img src=x> <img src=x>"),
                       api_name="/regenerate_selection")
    assert "does not fit" in str(refused.value)
    assert "<img" not in str(refused.value) and "&lt;img src=x&gt;" in str(refused.value)


def test_user_text_is_escaped_in_every_view(client):
    evil = "<img src=x onerror=alert(1)> and more text here"
    updates = list(client.submit(*args(evil, 30, 39), api_name="/regenerate_selection"))
    assert "<img" not in updates[-1][0] and "&lt;img src=x onerror=alert(1)&gt;" in updates[-1][0]


def test_open_edit_elsewhere_then_accept_is_stale_and_branch_keeps_both(client, tmp_path):
    from gradio_client import handle_file
    path = tmp_path / "story.md"
    path.write_text("# Title\n\nA short story about a fox.\n", encoding="utf-8")
    opened = with_text(client.predict(handle_file(str(path)), "", "untitled.txt", "text", api_name="/open_file"))
    text, name, language = opened[0], opened[4], opened[5]  # text, tree, A, B, name, language, ...
    assert (name, language) == ("story.md", "markdown") and text == path.read_text()
    doc_id = HISTORY.documents()[-1].id
    list(client.submit(*args(text, 11, 16, language="markdown"), api_name="/regenerate_selection"))
    head = HISTORY.head(doc_id)
    HISTORY.commit(doc_id, text + "Another tab.\n", head.id)  # someone else moves the head
    with pytest.raises(Exception, match="newer revision than the one this edit started from"):
        client.predict(text, 0, name, language, api_name="/accept")
    doc, tree, *_ = with_text(client.predict(text, 0, name, language, api_name="/accept_branch"))
    assert doc != text and tree.count('class="rev') == 3 and "margin-left: 1.5em" in tree  # indented branch


def test_save_exports_the_typed_text_and_labels_show(client):
    out = client.predict("Typed & saved <b>text</b>", "notes.txt", "text", api_name="/save")
    path = download_path(out[0])
    assert open(path, encoding="utf-8").read() == "Typed & saved <b>text</b>" and path.endswith("notes.txt")
    rev = HISTORY.documents()[-1].head_id
    tree, *_ = client.predict(rev, "<i>first draft</i>", api_name="/label")
    assert "[&lt;i&gt;first draft&lt;/i&gt;]" in tree


def download_path(update) -> str:
    """The file path in the save handler's download update."""
    path = update["value"] if isinstance(update, dict) and "value" in update else update
    return path["path"] if isinstance(path, dict) else path


def test_a_refused_file_name_records_nothing_and_later_saves_still_work(client):
    client.predict("", "untitled.txt", "text", api_name="/new_document")
    client.predict("draft one\n", "draft.txt", "text", api_name="/save")
    doc = HISTORY.documents()[-1]
    with pytest.raises(Exception, match="(?i)file name"):
        client.predict("draft two\n", "é" * 200 + ".txt", "text", api_name="/save")
    client.predict("draft three\n", "draft.txt", "text", api_name="/save")  # not stale: the page kept its head
    assert [r.text for r in HISTORY.history(doc.id)] == ["draft one\n", "draft three\n"]


def test_a_save_whose_download_fails_keeps_the_revision_it_recorded(client, monkeypatch):
    client.predict("", "untitled.txt", "text", api_name="/new_document")
    client.predict("draft one\n", "draft.txt", "text", api_name="/save")
    doc = HISTORY.documents()[-1]

    def disk_full(*a, **k):
        raise OSError(28, "No space left on device")
    with monkeypatch.context() as patch:
        patch.setattr(History, "export", disk_full)
        *_, message = client.predict("draft two\n", "draft.txt", "text", api_name="/save")
    assert "but the download could not be written: [Errno 28] No space left on device" in message
    client.predict("draft three\n", "draft.txt", "text", api_name="/save")  # on the head it recorded
    client.predict(api_name="/reject")
    list(client.submit(*args("draft three\n", 0, 5), api_name="/regenerate_selection"))
    client.predict("draft three\n", 0, "draft.txt", "text", api_name="/accept")
    assert [r.author for r in HISTORY.history(doc.id)] == ["typed", "typed", "typed", "regenerated"]


def test_file_names_no_file_system_takes_are_refused():
    from editor.text import EditorError
    from page.exports import file_name
    assert file_name("../../etc/notes.md") == "notes.md" and file_name("") == "untitled.txt"
    assert file_name("é" * 125 + ".txt") == "é" * 125 + ".txt"  # 254 bytes of UTF-8; "é" * 128 is 256
    for bad in ("..", "a\x00b", "é" * 128):
        with pytest.raises(EditorError):
            file_name(bad)


def test_an_export_removes_the_folders_of_expired_ones(tmp_path):
    import os
    import time

    from page.exports import EXPORT_AGE, FOLDER, export
    history = History("sqlite://")
    first = history.create_document("a.txt", "one\n")
    old = export(history, first.document_id, first.id, "a.txt", tmp_path)
    os.utime(old.parent, (time.time() - EXPORT_AGE - 1,) * 2)
    new = export(history, first.document_id, first.id, "a.txt", tmp_path)
    assert not old.parent.exists() and new.read_text() == "one\n"
    assert [p.name for p in (tmp_path / FOLDER).iterdir()] == [new.parent.name]
    history.close()


def test_an_export_is_one_file_in_the_page_cache(client):
    import glob
    import tempfile
    import uuid

    from gradio_client import Client
    name = f"export-{uuid.uuid4().hex}.txt"
    served = Client(client.src, download_files=False, verbose=False)  # the server's file, not a downloaded copy
    out = served.predict("Exported once.\n", name, "text", api_name="/save")
    copies = glob.glob(f"{tempfile.gettempdir()}/**/{name}", recursive=True)
    assert copies == [download_path(out[0])] and "sharpen-exports" in copies[0]  # no temp copy beside it


def test_fill_at_cursor_inserts_n_tokens_and_constraints_are_kept(client):
    updates = list(client.submit(*args(TEXT, 9, 9, mode="keep", n=4), api_name="/regenerate_fill"))
    assert updates[-1][0].count('class="tok ') == 4
    updates = list(client.submit(*args(TEXT, 4, 15, mode="N tokens", n=6, constraint="slow"),
                                 api_name="/regenerate_selection"))
    doc, *_ = with_text(client.predict(TEXT, 0, "c.txt", "text", api_name="/accept"))
    assert doc.startswith("The slow")
    updates = list(client.submit(*args(TEXT, 4, 15, mode="pick"), api_name="/regenerate_selection"))
    assert updates[-1][0].count('class="tok ') > updates[0][0].count('class="tok ')  # room to grow


def test_a_database_refusal_is_a_clear_message(client, monkeypatch):
    from sqlalchemy.exc import OperationalError

    def refuse(*a, **k):
        raise OperationalError("INSERT INTO documents", {}, Exception("database is locked"))
    monkeypatch.setattr(HISTORY, "create_document", refuse)
    monkeypatch.setattr(HISTORY, "commit", refuse)
    with pytest.raises(Exception, match="database refused: database is locked"):
        client.predict("Unsaved words stay in the page.", "n.txt", "text", api_name="/save")


def _serve(model, scorer=None):
    from gradio_client import Client
    demo = build_demo(model, History("sqlite://"), scorer=scorer)
    launch(demo, prevent_thread_lock=True, server_port=None, quiet=True)
    return demo, Client(demo.local_url, verbose=False)


def test_candidates_come_ranked_best_first_with_their_scores():
    """Candidates at temperature 0 differ; the list shows them best first (those that parse, then
    the lower window NLL) with each one's score, and the first is the one selected and drawn."""
    codec = TextCodec.from_tokenizer(byte_bpe_tokenizer(bos=True))
    target = torch.randint(10, 300, (512,), generator=torch.Generator().manual_seed(0))
    seen = []

    def score(document: str, start: int, end: int) -> float:  # a tiny scorer: a fixed function of the span
        seen.append(document[start:end])
        return sum(map(ord, document[start:end])) % 1000 / 100
    demo, client = _serve(ScriptedModel(codec, target, torch.full((512,), 0.3)), score)
    code = "def add(a, b):\n    return a + b\n"
    cursor = code.index("a + b")
    try:
        updates = list(client.submit(*args(code, cursor, cursor + 5, language="python", candidates=4),
                                     api_name="/regenerate_selection"))
    finally:
        demo.close()
    radio = updates[-1][3]
    labels, values = zip(*radio["choices"])
    assert sorted(values) == [0, 1, 2, 3] and radio["value"] == values[0]
    assert len(seen) == 5 and len(set(seen[:4])) > 1  # each candidate scored once; they differ
    assert seen[4] == "a + b"  # ... and the original, for the quality floor
    # the figures are in each note's tooltip, in the same order (the run view lists them ranked too)
    scores = [float(x) for x in re.findall(r"\(NLL\) over the edit and the text around it: (\d+\.\d+)", updates[-1][0])]
    keys = [("· rough" in label, "does not parse" in label, nll) for label, nll in zip(labels, scores)]
    assert keys == sorted(keys)
    assert [v + 1 for v in values] == [int(label.split(":")[0]) for label in labels]


def test_a_model_failure_is_a_clear_message(caplog):
    class Broken(ScriptedModel):
        def logits(self, ids):
            raise RuntimeError("CUDA out of memory (pretend)")
    codec = TextCodec.from_tokenizer(byte_bpe_tokenizer(bos=True))
    demo, client = _serve(Broken(codec, torch.zeros(64, dtype=torch.long), torch.full((64,), 0.5)))
    try:
        with caplog.at_level(logging.ERROR, logger="page"):
            with pytest.raises(Exception, match="model failed: CUDA out of memory"):
                client.predict(*args(TEXT, 4, 15), api_name="/regenerate_selection")
        logged = [r for r in caplog.records if r.name == "page" and r.exc_info]
        assert logged and "CUDA out of memory" in str(logged[0].exc_info[1])  # the traceback is in the log
    finally:
        demo.close()


@pytest.mark.slow
def test_the_page_runs_a_real_tiny_model(tmp_path):
    from engine import load_model
    from tests.tiny import save_tiny_bert
    demo, client = _serve(load_model(save_tiny_bert(tmp_path / "bert"), device="cpu"))
    try:
        updates = list(client.submit(*args("the quick brown fox jumps", 4, 15), api_name="/regenerate_selection"))
        view = updates[-1][0]
        assert 'data-done="1"' in view and _outside(view) == ["the ", " fox jumps"]
        span = re.search(r'<span class="span">(.*?)</span><span class="ctx">', view, re.S).group(1)
        slots = re.findall(r'<span class="tok ([a-z ]+)"[^>]*>([^<]*)</span>', span)
        assert len(slots) == 2 and all(kind in ("new", "settled") and text.strip() for kind, text in slots)
    finally:
        demo.close()


def test_utf16_offsets_become_python_indices(client):
    """The browser counts UTF-16 units: the emoji is two of them and one Python character. Expand
    reads the selection in units and answers in units, through the page's own conversions."""
    code = "# " + "🙂" * 8 + "\ndef add(a, b):\n    return a + b\n\n\nx = 1\n"
    a = code.index("a + b") + 8  # in UTF-16 units; read as characters it would select the x
    value, note = client.predict(editor_value(code, a, a + 1), "python", api_name="/expand")
    start, end = value["selection"]
    assert (start, end) == (a, a + 5) and "binary" in note


@pytest.mark.parametrize("block, masked_side", [(1, "right"), (None, "left")])
def test_block_length_from_the_dial_sets_the_commit_order(client, block, masked_side):
    """The scripted model is surer further right, so most-confident-first fills the span from the
    right; block length 1 must fill it from the left whatever the confidence."""
    import re
    updates = list(client.submit(*args(TEXT, 4, 30, block=block), api_name="/regenerate_selection"))
    orders = [re.findall(r'class="tok (masked|new|settled)', u[0]) for u in updates]
    partial = [o for o in orders if "masked" in o and set(o) - {"masked"}]
    assert len(partial) >= 2
    for order in partial:
        flags = [kind == "masked" for kind in order]
        expected = sorted(flags) if masked_side == "right" else sorted(flags, reverse=True)
        assert flags == expected, order


def call_raw(client, api_name, data, headers=None):
    """One event posted as raw JSON, the way any HTTP client can (gradio_client refuses to send a
    lone surrogate); returns what the event stream says: ("complete" | "error", data)."""
    import json

    import httpx
    base = client.src.rstrip("/") + "/gradio_api/call/" + api_name
    event = httpx.post(base, content=json.dumps({"data": data}),
                       headers={"content-type": "application/json", **(headers or {})})
    kind = None
    with httpx.stream("GET", f"{base}/{event.json()['event_id']}", timeout=60) as stream:
        for line in stream.iter_lines():
            if line.startswith("event: "):
                kind = line[len("event: "):]
            elif line.startswith("data: ") and kind in ("complete", "error"):
                return kind, json.loads(line[len("data: "):])
    raise AssertionError("the event stream ended without a result")


@pytest.mark.parametrize("text, message", [
    (None, "There is no document"),
    ("bad \ud800 text here", "not valid Unicode at index 4"),  # JSON's "\ud800": a lone surrogate
    ("nul \x00 text here", "NUL character at index 4"),
])
def test_regenerate_refuses_a_missing_or_broken_document_with_a_clear_message(client, text, message):
    kind, data = call_raw(client, "regenerate_selection", list(args(text, 0, 3)))
    assert kind == "error" and message in data["error"], data


@pytest.mark.parametrize("name, value, message", [
    # refused, not rounded; the popup renders HTML, so ">=" travels escaped
    ("steps", 2.5, "steps must be a whole number from 1 to 65536 \\(or none\\), got 2.5"),
    ("strategy", "greedy", "greedy is not in the list of choices"),
    ("guide", 1.0, "^guide: .* has no causal language model"),  # refused before the run, not a model failure
])
def test_a_bad_dial_value_is_a_clear_message(client, name, value, message):
    from engine.settings import knobs
    dial = dial_values(QUALITY)
    dial[[k.name for k in knobs()].index(name)] = value
    with pytest.raises(Exception, match=message):
        client.predict(*args(TEXT, 4, 15, dial=dial), api_name="/regenerate_selection")


def test_choosing_a_preset_fills_every_dial_control(client):
    assert list(client.predict("balanced", api_name="/preset_values")) == dial_values(PRESETS["balanced"])


def test_auto_length_without_a_scorer_is_keep(client):
    auto = list(client.submit(*args(TEXT, 4, 15, mode="auto"), api_name="/regenerate_selection"))
    keep = list(client.submit(*args(TEXT, 4, 15, mode="keep"), api_name="/regenerate_selection"))
    assert auto[-1][0] == keep[-1][0] and "Length" not in auto[-1][-2]  # the scripted model has no causal view


def test_auto_length_streams_the_length_the_scorer_prefers():
    from gradio_client import Client
    codec = TextCodec.from_tokenizer(byte_bpe_tokenizer(bos=True))
    target = torch.randint(10, 300, (512,), generator=torch.Generator().manual_seed(0))
    model = ScriptedModel(codec, target, torch.linspace(0.3, 0.9, 512))
    demo = build_demo(model, History("sqlite://"), scorer=lambda doc, start, end: -float(end - start))  # longest
    launch(demo, prevent_thread_lock=True, server_port=None, quiet=True)
    try:
        client = Client(demo.local_url, verbose=False)
        keep = len(codec.encode(TEXT[4:15]))
        updates = list(client.submit(*args(TEXT, 4, 15, mode="auto"), api_name="/regenerate_selection"))
        assert "choosing a length" in updates[0][1]
        assert updates[-1][0].count('class="tok ') == keep + 4 and f">{keep + 4} tokens fitted best<" in updates[-1][-2]
        doc, *_ = with_text(client.predict(TEXT, 0, "a.txt", "text", api_name="/accept"))
        assert doc.startswith("The ") and doc.endswith(" jumps over the lazy dog.") and doc != TEXT
        updates = list(client.submit(*args(TEXT, 9, 9, mode="auto"), api_name="/regenerate_fill"))
        assert updates[-1][0].count('class="tok ') == 16  # an insertion tries 4, 8 and 16 tokens
    finally:
        demo.close()


def test_a_refusal_is_a_message_in_the_page_and_an_error_to_any_other_caller(client):
    """The page (its requests say "x-gradio-user: app") gets the refusal in its message line and every
    other output unchanged, so Gradio marks nothing as failed; a script still gets an error."""
    kind, data = call_raw(client, "regenerate_selection", list(args(TEXT, 4, 4)), {"x-gradio-user": "app"})
    assert kind == "complete" and any(str(d).startswith("⚠ Select some text") for d in data), data
    unchanged = (None, {"__type__": "update"}, {"props": {"__type__": "update"}, "__type__": "update"})
    assert all(d in unchanged or str(d).startswith("⚠") for d in data), data
    kind, data = call_raw(client, "regenerate_selection", list(args(TEXT, 4, 4)))
    assert kind == "error" and "Select some text" in data["error"], data
