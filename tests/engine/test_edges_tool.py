"""engine.tools.edges, the span-edge measurement: its selections and its doubled-space count."""
from engine import Span
from engine.tools.edges import code_edits, doubled_edges, prose_edits


def test_prose_phrases_are_selected_without_the_space_before_them():
    edits = prose_edits(20)
    assert len(edits) == 20
    for text, span in edits:
        phrase = text[span.start:span.end]
        assert text[span.start - 1] == " " and phrase[0].isalpha() and phrase[-1].isalpha()
        assert text[span.end] in " ,.;:"


def test_code_lines_are_selected_without_their_indentation():
    text, span = code_edits(1)[0]
    line_start = text.rfind("\n", 0, span.start) + 1
    assert text[line_start:span.start].strip() == "" and span.start > line_start
    assert text[span.start] != " " and text[span.end] == "\n"


def test_doubled_edges_counts_only_new_double_spaces():
    text = "The keeper was there.  Then"
    assert doubled_edges(text, Span(11, 14), "The keeper  was there.  Then") == 1
    assert doubled_edges(text, Span(11, 14), "The keeper was  there.  Then") == 1
    assert doubled_edges(text, Span(11, 14), "The keeper is there.  Then") == 0
    assert doubled_edges(text, Span(15, 21), "The keeper was here.  Then") == 0  # there before
