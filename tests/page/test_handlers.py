"""The page's handlers through gradio_client: real streamed steps, candidates, history, clear errors."""
import pytest
import torch

from page.demo import build_demo, launch
from editor.history import History
from editor.text import utf16_to_index
from engine import TextCodec
from tests.tiny import ScriptedModel, byte_bpe_tokenizer

TEXT = "The quick brown fox jumps over the lazy dog."
# document, start, end (UTF-16), language, length mode, N, constraint, preset, steps, strategy,
# block length, threshold, temperature, seed, candidates, heatmap
DIAL = ("quality", 0, "low_confidence", 0, 0.9, 0.0, 0)  # one token per forward: many steps


def args(text, a, b, language="text", mode="keep", n=8, constraint="", candidates=1, block=0):
    dial = DIAL[:3] + (block,) + DIAL[4:]
    return (text, a, b, language, mode, n, constraint, *dial, candidates, False)


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
    assert len(updates[-1]) == 5 and "Accept" in updates[-1][4]     # document is not an output


def test_accept_makes_revisions_then_diff_and_restore(client):
    list(client.submit(*args(TEXT, 4, 15, candidates=2), api_name="/regenerate_selection"))
    doc, tree, a, b, *_ = client.predict(TEXT, 1, "notes.txt", "text", api_name="/accept")
    assert doc.startswith("The ") and doc.endswith(" jumps over the lazy dog.") and doc != TEXT
    assert tree.count('class="rev') == 2 and "regenerated" in tree and "typed" in tree
    diff = client.predict(1, 2, api_name="/diff")
    assert "<del>" in diff and "<ins>" in diff
    restored = client.predict(1, api_name="/restore")
    assert restored[0] == TEXT and "restored" in restored[1]


def test_syntax_node_regenerates_the_function_body_only(client):
    code = "def add(a, b):\n    return a + b\n"
    cursor = code.index("a + b")
    list(client.submit(*args(code, cursor, cursor, language="python"), api_name="/regenerate_node"))
    doc, *_ = client.predict(code, 0, "add.py", "python", api_name="/accept")
    assert doc.startswith("def add(a, b):\n    ") and doc.endswith("\n") and "return a + b" not in doc


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
    start, end, note = client.predict(code, a, a + 1, "python", api_name="/expand")
    assert (start, end) == (a, a + 5) and "binary" in note


def test_errors_are_clear_and_change_nothing(client):
    with pytest.raises(Exception, match="Select some text"):
        client.predict(*args("Some text", 3, 3), api_name="/regenerate_selection")
    with pytest.raises(Exception, match="outside the document"):
        client.predict(*args("Some text", 3, 99), api_name="/regenerate_selection")
    client.predict(api_name="/reject")
    with pytest.raises(Exception, match="Nothing to accept"):
        client.predict("typed text", 0, "a.txt", "text", api_name="/accept")


def test_user_text_is_escaped_in_every_view(client):
    evil = "<img src=x onerror=alert(1)> and more text here"
    updates = list(client.submit(*args(evil, 30, 39), api_name="/regenerate_selection"))
    assert "<img" not in updates[-1][0] and "&lt;img src=x onerror=alert(1)&gt;" in updates[-1][0]


def test_open_edit_elsewhere_then_accept_is_stale_and_branch_keeps_both(client, tmp_path):
    from gradio_client import handle_file
    path = tmp_path / "story.md"
    path.write_text("# Title\n\nA short story about a fox.\n", encoding="utf-8")
    opened = client.predict(handle_file(str(path)), api_name="/open_file")
    text, name, language = opened[0], opened[1], opened[2]
    assert (name, language) == ("story.md", "markdown") and text == path.read_text()
    doc_id = HISTORY.documents()[-1].id
    list(client.submit(*args(text, 11, 16, language="markdown"), api_name="/regenerate_selection"))
    head = HISTORY.head(doc_id)
    HISTORY.commit(doc_id, text + "Another tab.\n", head.id)  # someone else moves the head
    with pytest.raises(Exception, match="changed since this edit started"):
        client.predict(text, 0, name, language, api_name="/accept")
    doc, tree, *_ = client.predict(text, 0, name, language, api_name="/accept_branch")
    assert doc != text and tree.count('class="rev') == 3 and "margin-left: 1.5em" in tree  # indented branch


def test_save_exports_the_typed_text_and_labels_show(client):
    out = client.predict("Typed & saved <b>text</b>", "notes.txt", "text", api_name="/save")
    path = out[0]["value"] if isinstance(out[0], dict) else out[0]  # a visibility update carrying the file
    path = path["path"] if isinstance(path, dict) else path
    assert open(path, encoding="utf-8").read() == "Typed & saved <b>text</b>" and path.endswith("notes.txt")
    rev = HISTORY.documents()[-1].head_id
    tree, *_ = client.predict(rev, "<i>first draft</i>", api_name="/label")
    assert "[&lt;i&gt;first draft&lt;/i&gt;]" in tree


def test_fill_at_cursor_inserts_n_tokens_and_constraints_are_kept(client):
    updates = list(client.submit(*args(TEXT, 9, 9, mode="keep", n=4), api_name="/regenerate_fill"))
    assert updates[-1][0].count('class="tok ') == 4
    updates = list(client.submit(*args(TEXT, 4, 15, mode="N tokens", n=6, constraint="slow"),
                                 api_name="/regenerate_selection"))
    doc, *_ = client.predict(TEXT, 0, "c.txt", "text", api_name="/accept")
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


def _serve(model):
    from gradio_client import Client
    demo = build_demo(model, History("sqlite://"))
    launch(demo, prevent_thread_lock=True, server_port=None, quiet=True)
    return demo, Client(demo.local_url, verbose=False)


def test_a_model_failure_is_a_clear_message():
    class Broken(ScriptedModel):
        def logits(self, ids):
            raise RuntimeError("CUDA out of memory (pretend)")
    codec = TextCodec.from_tokenizer(byte_bpe_tokenizer(bos=True))
    demo, client = _serve(Broken(codec, torch.zeros(64, dtype=torch.long), torch.full((64,), 0.5)))
    try:
        with pytest.raises(Exception, match="model failed: CUDA out of memory"):
            client.predict(*args(TEXT, 4, 15), api_name="/regenerate_selection")
    finally:
        demo.close()


@pytest.mark.slow
def test_the_page_runs_a_real_tiny_model(tmp_path):
    from engine import load_model
    from tests.tiny import save_tiny_bert
    demo, client = _serve(load_model(save_tiny_bert(tmp_path / "bert"), device="cpu"))
    try:
        updates = list(client.submit(*args("the quick brown fox jumps", 4, 15), api_name="/regenerate_selection"))
        assert 'data-done="1"' in updates[-1][0] and "jumps" in updates[-1][0]
    finally:
        demo.close()


def test_utf16_offsets_become_python_indices():
    text = "a🙂b"  # the emoji is two UTF-16 units, one Python character
    assert [utf16_to_index(text, u) for u in (0, 1, 3, 4)] == [0, 1, 2, 3]


@pytest.mark.parametrize("block, masked_side", [(1, "right"), (0, "left")])
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
