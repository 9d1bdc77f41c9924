"""Several selections as one run, a template's holes, and the constraint row, called as the page calls
its handlers: both spans from one set of forwards, text between them kept, one revision on accept."""
import html

import pytest
import torch

from engine import Constraint, SamplerSettings, Span, TextCodec
from engine.pins import lay_out
from engine.serve.wire import edit_body, read_edit
from page import runs
from page.document_editor import DocumentEditor, EditorValue
from page.live import span_live
from page.state import NEW_DOC
from tests.page.helpers import args, scripted_page
from tests.tiny import byte_bpe_tokenizer

CODE = "def total(items):\n    total = 0\n    for x in items:\n        total += x\n    return total\n"
RUN = 2


@pytest.fixture
def page():
    yield from scripted_page()


def occurrences(text, word):
    out, at = [], text.find(word)
    while at != -1:
        out.append((at, at + len(word)))
        at = text.find(word, at + 1)
    return out


def regenerate(page, document, action="selection", language="python", **given):
    _, language, *rest = args(document.text, 0, 0, language=language, **given)
    return list(runs.regenerate(page, action, document, NEW_DOC, language, *rest))


def test_several_selections_are_one_run_and_the_text_between_them_is_kept(page):
    ranges = tuple(occurrences(CODE, "total")[1:])  # the variable, not the function's name
    model = page.model
    outputs = regenerate(page, EditorValue(CODE, *ranges[0], ranges=ranges))
    run = outputs[-1][RUN]
    assert len(run.canvas.spans) == 3 and run.span == (ranges[0][0], ranges[-1][1])
    assert run.last.forwards == model.calls            # one set of forwards served all three spans
    for b in range(run.last.tokens.shape[0]):
        after, places = run.result(b), run.new_spans(b)
        assert len(places) == 3
        kept = [CODE[:ranges[0][0]], CODE[ranges[0][1]:ranges[1][0]], CODE[ranges[1][1]:ranges[2][0]],
                CODE[ranges[2][1]:]]
        assert [after[:places[0][0]], after[places[0][1]:places[1][0]], after[places[1][1]:places[2][0]],
                after[places[2][1]:]] == kept


def test_several_spans_are_drawn_in_place_with_the_kept_text_between(page):
    ranges = tuple(occurrences(CODE, "total")[1:3])
    run = regenerate(page, EditorValue(CODE, *ranges[0], ranges=ranges))[-1][RUN]
    live = span_live(run)
    assert (live["start"], live["end"]) == (ranges[0][0], ranges[1][1])
    assert "".join(p[0] for p in live["pieces"]) == run.result(run.order[0])[slice(*run.new_span(run.order[0]))]
    first = span_live(run, k=1)  # mid-run: the text between the spans is drawn as it is, not inspectable
    assert [p for p in first["pieces"] if p[1] == "kept"] == [[run.canvas.segments[1], "kept", 1.0, -1]]


def test_accepting_several_spans_is_one_revision_recording_each(page):
    ranges = tuple(occurrences(CODE, "total")[1:3])
    run = regenerate(page, EditorValue(CODE, *ranges[0], ranges=ranges), language="text")[-1][RUN]
    runs.accept(page, EditorValue(CODE), run, 0, NEW_DOC, "t.txt", "text", None)
    h = page.mine(None)
    doc = h.documents()[0]
    revisions = h.history(doc.id)
    assert len(revisions) == 2  # the document as it was, then the edit: one revision for both spans
    head = h.head(doc.id)
    assert head.text == run.result(0) and head.regeneration.spans == run.new_spans(0)


def test_fill_holes_fills_every_hole_in_one_run(page):
    text = "Dear ⟨⟩,\nyour order ⟨3⟩ ships on ⟨⟩.\n"
    outputs = regenerate(page, EditorValue(text), action="holes")
    run = outputs[-1][RUN]
    assert len(run.canvas.spans) == 3 and run.last.forwards == page.model.calls
    after = run.result(0)
    a, b, c = run.new_spans(0)
    assert "⟨" not in after and after[:a[0]] == "Dear " and after[a[1]:b[0]] == ",\nyour order "
    assert after[b[1]:c[0]] == " ships on " and after[c[1]:] == ".\n"


@pytest.mark.parametrize("text, message", [
    ("no holes here\n", "Fill holes: the text has no holes; mark each with '⟨⟩'."),
    ("open ⟨ never closed\n", "Fill holes: the hole opened at 5 is not closed with '⟩'."),
])
def test_fill_holes_without_holes_says_so(page, text, message):
    with pytest.raises(Exception) as caught:
        regenerate(page, EditorValue(text), action="holes")
    assert html.unescape(str(caught.value)) == message  # the page escapes what it shows


def test_pinned_words_from_the_constraint_row(page):
    text = "The quick brown fox jumps over the lazy dog.\n"
    document = EditorValue(text, 4, 19)
    run = regenerate(page, document, mode="N tokens", n=6, constraint="red", ends="fox")[-1][RUN]
    new = run.result(0)[slice(*run.new_span(0))]
    assert new.startswith("red") and new.endswith("fox")
    run = regenerate(page, document, mode="N tokens", n=5, include=" cat")[-1][RUN]
    n = len(page.model.codec.encode(" cat"))
    assert run.last.tokens.shape[0] == 5 - n + 1  # every place of " cat" in one batch, ranked as candidates
    # (the span's first slot carries the space before the selection: the document holds " cat")
    assert all(" cat" in run.result(i) for i in run.order) and sorted(run.order) == [0, 1]


def test_the_editor_sends_every_selection_in_code_points_in_order():
    text = "🙂 total = total + 1"  # the emoji is two UTF-16 units, one code point
    got = DocumentEditor().preprocess({"text": text, "selection": [11, 16],
                                       "ranges": [[11, 16], [3, 8], [9, 9]]})  # a cursor is no span
    assert got.ranges == ((2, 7), (10, 15)) and text[2:7] == text[10:15] == "total"
    with pytest.raises(Exception, match="ranges must be a list"):
        DocumentEditor().preprocess({"text": text, "selection": [0, 0], "ranges": [[1, 2, 3]]})


def test_the_service_lays_out_the_pages_spans_and_pins_the_same_way():
    """The page over HTTP sends its canvas as a /v1/edits body; the service reads back the same spans."""
    codec = TextCodec.from_tokenizer(byte_bpe_tokenizer(bos=True))
    spans = [Span(0, 3, 6, (Constraint("x", 0), Constraint("y", 0, "end"))),
             Span(8, 11, 5, (Constraint("z", 0, "anywhere"),))]
    canvas, settings = lay_out(codec, "abc def ghi\n", spans, SamplerSettings())
    body = edit_body(canvas, settings)
    body.pop("stream")  # the service's own field, read before the edit
    text, read, _ = read_edit(body, SamplerSettings())
    assert text == canvas.text and tuple(read) == canvas.spans


def test_several_selections_of_one_name_get_the_same_new_name(page):
    """A rename (Ctrl/Cmd+D over one identifier): every occurrence shows and returns the same fill, at
    every step, where each span's own slots would write another name (the scripted model's tokens
    differ by position)."""
    ranges = tuple(occurrences(CODE, "total")[1:4])
    outputs = regenerate(page, EditorValue(CODE, *ranges[0], ranges=ranges), candidates=2)
    run = outputs[-1][RUN]
    for step in run.steps[-1:]:
        for b in range(step.tokens.shape[0]):
            pieces = {run.result(b)[s:e] for s, e in run.new_spans(b)}
            assert len(pieces) == 1 and pieces != {"total"}
    lead, *others = run.canvas.slot_ranges
    for step in run.steps:  # while it denoised too: the view never shows two names
        for a, b in others:
            assert torch.equal(step.tokens[:, a:b], step.tokens[:, lead[0]:lead[1]])
            assert torch.equal(step.masked[:, a:b], step.masked[:, lead[0]:lead[1]])


def test_several_selections_with_auto_length_say_they_kept_their_lengths(page):
    ranges = tuple(occurrences(CODE, "total")[1:3])
    outputs = regenerate(page, EditorValue(CODE, *ranges[0], ranges=ranges), mode="auto")
    assert '"auto" length kept each span\'s length' in outputs[-1][-2]
    assert '"auto" length kept' in outputs[0][-2]  # said as the run starts, not only at its end
