"""check_edit: a regenerated document must still parse and the edited node keep its kind."""

import pytest

from editor.structure import Structure
from editor.text import BadSpan
from editor.validity import check_edit

PY = "def f(x):\n    return x + 1\n\n\nprint(f(2))\n"
JS = "function f(a) {\n  return a + 1;\n}\n"


def _replace(src: str, language: str, what: str, at: int, new: str):
    span = Structure(src, language).target(what, at)
    after = src[:span.start] + new + src[span.end:]
    return check_edit(src, after, language, (span.start, span.end), (span.start, span.start + len(new)), span.kind)


def test_good_python_body_passes() -> None:
    result = _replace(PY, "python", "function body", PY.index("x + 1"), "y = x * 2\n    return y")
    assert result.ok and result.parses and result.kept_kind and result.before_kind == result.after_kind == "block"


def test_broken_edit_reports_location() -> None:
    result = _replace(PY, "python", "function body", PY.index("x + 1"), "return (x + ")
    assert not result.ok and not result.parses
    assert result.error is not None and result.error.line == 2 and result.error.column == 5
    assert "syntax error" in result.error.message


def test_missing_token_in_javascript() -> None:
    result = _replace(JS, "javascript", "function body", JS.index("a + 1"), "return a +;")
    assert not result.parses and result.error is not None
    assert result.error.line == 2 and result.error.message.startswith("missing")


def test_body_that_escapes_its_function_does_not_keep_its_kind() -> None:
    result = _replace(JS, "javascript", "function body", JS.index("a + 1"), "return a; }\nfunction g() { return 1;")
    assert result.parses and not result.kept_kind and not result.ok
    dedented = _replace(PY, "python", "function body", PY.index("x + 1"), "x = 1\nprint(x)")
    assert not dedented.kept_kind


def test_errors_already_there_are_not_blamed_on_the_edit() -> None:
    src = "def f(x):\n    return x + 1\n\nbroken = (\n"
    assert Structure(src, "python").tree.root_node.has_error
    result = _replace(src, "python", "function body", src.index("x + 1"), "return x - 1")
    assert result.ok, result.errors


def test_prose_and_bad_spans() -> None:
    assert check_edit("Hi there.", "Hello there.", "markdown", (0, 2), (0, 5)).ok
    with pytest.raises(BadSpan, match="outside the document"):
        check_edit("x = 1", "x = 2", "python", (0, 50), (0, 5))


LONG = ("import os\n\n\ndef load(path):\n    with open(path) as f:\n        return f.read()\n\n\n"
        "class Thing:\n    def __init__(self, size):\n        self.size = size\n\n"
        "    def area(self):\n        return self.size * self.size\n\n    def name(self):\n        return 'thing'\n")


def test_an_error_that_swallows_the_file_is_reported_where_the_edit_is() -> None:
    """tree-sitter may wrap a whole broken module in one ERROR node starting at line 1; the report
    must point into the edit (line 14 of the document), not at the ERROR node's start."""
    a = LONG.index("self.size * self.size")
    new = "'@ \n\n** size"
    after = LONG[:a] + new + LONG[a + len("self.size * self.size"):]
    result = check_edit(LONG, after, "python", (a, a + 21), (a, a + len(new)))
    assert not result.parses and result.error is not None
    assert (result.error.line, result.error.column) == (14, 16), result.error
    assert result.error.message == "syntax error: unexpected \"'@\""
