"""Word, sentence, paragraph and Markdown section spans around a cursor."""

import pytest

from editor.prose import paragraph, prose_span, section, sentence, word
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
