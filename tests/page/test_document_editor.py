"""The document editor component: code points at the Python edge, the shipped build, its language table."""
import re

import pytest
from gradio.exceptions import Error

from editor.languages import LANGUAGES, supported
from page.document_editor import DocumentEditor, EditorValue, sources

EMOJI = "# 🙂🙂\nx = 1\n"  # each emoji is one code point, two UTF-16 units


def test_the_selection_arrives_in_code_points_and_leaves_in_utf16():
    editor = DocumentEditor(render=False)
    x = EMOJI.index("x")  # 7 code points, 9 UTF-16 units
    assert editor.preprocess({"text": EMOJI, "selection": [x + 2 + 1, x + 2]}) == EditorValue(EMOJI, x, x + 1)
    assert editor.postprocess(EditorValue(EMOJI, x, x + 1)) == {"text": EMOJI, "selection": [x + 2, x + 2 + 1]}
    assert editor.postprocess("just text") == {"text": "just text", "selection": None}  # the cursor stays
    assert editor.preprocess("typed by an API client") == EditorValue("typed by an API client", 0, 0)


@pytest.mark.parametrize("selection, message", [
    ([3, 4], "splits the character"),       # inside the first emoji's surrogate pair
    ([0, 99], "outside the document"),
    (["0", 1], "must be an integer"),
])
def test_a_bad_selection_is_a_clear_error(selection, message):
    with pytest.raises(Error, match=message):
        DocumentEditor(render=False).preprocess({"text": EMOJI, "selection": selection})


def test_the_shipped_build_is_built_from_the_sources_in_the_repository():
    """`make frontend` rebuilds page/document_editor/templates and records the sources' hash; a source
    edited without a rebuild fails here."""
    built = sources.BUILD
    for name in ("index.js", "svelte_runtime_entry.js", "style.css"):
        assert (built / name).stat().st_size > 0, name
    assert sources.recorded_hash() == sources.source_hash(), "frontend sources changed: run `make frontend`"


def test_the_editor_highlights_every_language_the_editor_package_parses():
    table = (sources.FRONTEND / "src" / "languages.ts").read_text()
    highlighted = set(re.findall(r"^\t(\w+): \(\) =>", table, re.M))
    assert highlighted == set(supported())
    prose = set(re.findall(r'"(\w+)"', table[table.index("const PROSE"):].split("\n")[0]))
    assert prose == {name for name, info in LANGUAGES.items() if info.prose}


@pytest.mark.parametrize("text", [
    "abc def ghi",     # the same: untouched
    "abc  def ghi",    # a doubled space healed in (an edge)
    " abc def ghi",    # a leading space
    "abc def gh",      # the end cut
    "xyz",             # nothing in common
])
def test_finished_pieces_spell_what_accept_writes_and_keep_the_rest_inspectable(text):
    from page.live import spelled
    pieces = [["abc", "settled", 0.9, 10], [" def", "new", 0.8, 11], [" ghi", "settled", 0.7, 12]]
    out = spelled(pieces, text)
    assert "".join(p[0] for p in out) == text
    kept = [p for p in out if p in pieces]
    assert [p[3] for p in kept] == sorted(p[3] for p in kept)  # in order, positions intact
    if text.startswith("abc "):
        assert out[0] == pieces[0]  # the common start stays a token of its own
