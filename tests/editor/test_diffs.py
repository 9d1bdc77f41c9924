"""Diffs for people that add up to both texts, rebasing edits, conflicts that say which change collided."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from editor.diffs import PatchConflict, diff, rebase_edit, word_diff

# Unicode with emoji, combining marks and newlines, but no surrogates (not text) and no NUL (refused).
PIECE = st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00") | st.sampled_from(
    ["😀", "👍🏽", "é", "\n", " ", "e\u0301", "ab", "the "])
TEXT = st.lists(PIECE, max_size=80).map("".join)


@settings(max_examples=200, deadline=None)
@given(TEXT, TEXT)
def test_diff_adds_up_to_both_texts(a: str, b: str) -> None:
    ops = diff(a, b)
    assert "".join(t for op, t in ops if op != "insert") == a
    assert "".join(t for op, t in ops if op != "delete") == b


def test_semantic_diff_is_for_people() -> None:
    assert diff("the cat sat", "the dog sat") == [("equal", "the "), ("delete", "cat"), ("insert", "dog"),
                                                  ("equal", " sat")]


def test_rebase_and_conflict() -> None:
    base = "one\ntwo\nthree\nfour\nfive\nsix\nseven\n"
    edited = base.replace("two", "TWO")
    newest = base.replace("six", "SIX")
    assert rebase_edit(base, edited, newest) == base.replace("two", "TWO").replace("six", "SIX")
    with pytest.raises(PatchConflict, match=r"1 hunk\(s\) of the patch did not apply: hunk 1 @@.* 'two'") as info:
        rebase_edit(base, edited, base.replace("two", "deux"))
    assert info.value.failed[0].index == 0 and info.value.failed[0].expected == "two"
    assert rebase_edit(base, edited, edited) == edited  # the same edit on both sides is no conflict


@settings(max_examples=100, deadline=None)
@given(TEXT, TEXT, TEXT, TEXT)
def test_rebase_of_disjoint_edits_keeps_both(left: str, right: str, left_edit: str, right_edit: str) -> None:
    base = left + "\n|\n" + right
    edited, newest = left_edit + "\n|\n" + right, left + "\n|\n" + right_edit
    assert rebase_edit(base, edited, newest) == left_edit + "\n|\n" + right_edit


def test_a_word_diff_replaces_whole_words_and_keeps_what_is_shared():
    assert word_diff("the narrow strait", "the window, but") == [
        ("equal", "the "), ("delete", "narrow strait"), ("insert", "window, but")]  # not "strai|t" / "bu|t"
    assert word_diff("return x + 1", "return x * 2") == [("equal", "return x "), ("delete", "+ 1"), ("insert", "* 2")]
    assert word_diff("same", "same") == [("equal", "same")]


@given(st.text(max_size=40), st.text(max_size=40))
@settings(max_examples=200, deadline=None)
def test_a_word_diff_spells_both_texts(a, b):
    ops = word_diff(a, b)
    assert "".join(t for op, t in ops if op != "insert") == a
    assert "".join(t for op, t in ops if op != "delete") == b
