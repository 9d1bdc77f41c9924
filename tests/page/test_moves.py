"""Expand and Shrink, called as the page calls them: Shrink walks back toward the cursor Expand started from."""
import pytest

from page import runs
from page.document_editor import EditorValue
from page.state import NO_MOVES

CODE = "def area(width, height):\n    result = width * height\n    return result\n"
PROSE = "Some words here. Another sentence follows.\n\nA second paragraph."


@pytest.mark.parametrize("text, language, word", [(CODE, "python", "height"), (PROSE, "text", "follows")])
def test_shrink_walks_back_down_the_path_expand_went_up(text, language, word):
    a = b = text.index(word) + 2  # a cursor inside the word
    moves, seen = NO_MOVES, []
    for _ in range(3):
        document, _, moves = runs.move("expand", EditorValue(text, a, b), language, moves)
        a, b = document.start, document.end
        seen.append(text[a:b])
    assert seen[0] == word and len(set(seen)) == 3
    for expected in reversed(seen[:-1]):
        document, _, moves = runs.move("shrink", EditorValue(text, a, b), language, moves)
        a, b = document.start, document.end
        assert text[a:b] == expected


def test_a_new_selection_starts_a_new_path():
    a = CODE.index("height\n")
    moves = runs.move("expand", EditorValue(CODE, a, a), "python", NO_MOVES)[2]
    start = CODE.index("result =")  # the person selected the statement themselves: shrink toward its start
    selected = EditorValue(CODE, start, start + len("result = width * height"))
    shrunk, _, _ = runs.move("shrink", selected, "python", moves)
    assert shrunk.selected == "result"
