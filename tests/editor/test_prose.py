"""Word, sentence, paragraph and Markdown section spans around a cursor."""

import pytest

from editor.prose import UNITS, expand, paragraph, prose_span, section, sentence, shrink, word
from editor.structure import NoTarget

DOC = """# Tïtle 😀

Hello wörld. This is e.g. a test! Done…
Second line?

## Sub

It's über-cool 😀 text. Last one.
"""


def _text(span) -> str:
    return DOC[span.start:span.end]


def test_word() -> None:
    assert _text(word(DOC, DOC.index("wörld") + 2)) == "wörld"
    assert _text(word(DOC, DOC.index("über") + 3)) == "über-cool"
    assert _text(word(DOC, DOC.index("It's"))) == "It's"
    assert _text(word(DOC, DOC.index("wörld") + 5)) == "wörld"  # right after the word


def test_sentence_skips_abbreviations_and_stays_in_paragraph() -> None:
    assert _text(sentence(DOC, DOC.index("is e.g"))) == "This is e.g. a test!"
    assert _text(sentence(DOC, DOC.index("Hello"))) == "Hello wörld."
    assert _text(sentence(DOC, DOC.index("Done"))) == "Done…"
    assert _text(sentence(DOC, DOC.index("Second"))) == "Second line?"
    assert _text(sentence(DOC, DOC.index("Last"))) == "Last one."


def test_paragraph_and_section() -> None:
    assert _text(paragraph(DOC, DOC.index("Second"))) == "Hello wörld. This is e.g. a test! Done…\nSecond line?"
    with pytest.raises(NoTarget, match="between paragraphs"):
        paragraph(DOC, DOC.index("\n\n## Sub") + 1)
    inner = section(DOC, DOC.index("über"))
    assert _text(inner).startswith("## Sub") and _text(inner).endswith("Last one.")
    outer = section(DOC, DOC.index("Hello"))
    assert _text(outer).startswith("# Tïtle 😀") and outer.end == inner.end and outer.label == "section: Tïtle 😀"
    with pytest.raises(NoTarget, match="not under a Markdown heading"):
        section("plain text", 2)
    with pytest.raises(NoTarget, match="unknown prose unit"):
        prose_span(DOC, 0, "chapter")


def test_expand_and_shrink_walk_word_sentence_paragraph_section() -> None:
    at = DOC.index("wörld") + 2
    grown, span = [], word(DOC, at)
    while span is not None:
        grown.append(_text(span))
        span = expand(DOC, span.start, span.end)
    assert grown == ["wörld", "Hello wörld.", "Hello wörld. This is e.g. a test! Done…\nSecond line?", DOC.rstrip()]
    assert expand(DOC, DOC.index("Hello"), DOC.index("Second"), UNITS[:3]) is not None  # a selection across sentences
    assert expand(DOC, 0, len(DOC.rstrip()), UNITS[:3]) is None
    para = paragraph(DOC, at)
    assert _text(shrink(DOC, para.start, para.end)) == "Hello wörld."
    assert _text(shrink(DOC, para.start, DOC.index(" wörld") + 6)) == "Hello"
    assert shrink(DOC, DOC.index("Hello"), DOC.index("Hello") + 5) is None
