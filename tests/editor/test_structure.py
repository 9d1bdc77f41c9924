"""Tree-sitter spans on real snippets in every language with a grammar, in character offsets."""

import pytest

from editor.languages import LANGUAGES, UnknownLanguage, get_language, language_for, parse, supported
from editor.structure import NoTarget, Structure
from editor.text import BadSpan

PY = '''import os


def greet(name: str) -> str:
    """Say hello."""
    # a comment with é and 😀
    msg = f"héllo {name} 😀"
    return msg.upper()


class Greeter:
    def run(self):
        return greet("wörld")
'''

# language -> (source, text the cursor sits in, expected "function body", expected "function")
SNIPPETS = {
    "javascript": ("function add(a, b) {\n  // sum ✓\n  return a + b;\n}\n", "a + b",
                   "// sum ✓\n  return a + b;", "function add(a, b) {\n  // sum ✓\n  return a + b;\n}"),
    "typescript": ("const s = 'é😀';\nfunction add(a: number, b: number): number {\n  return a + b;\n}\n", "a + b",
                   "return a + b;", "function add(a: number, b: number): number {\n  return a + b;\n}"),
    "tsx": ("const App = (p: Props) => {\n  return <div>{p.name} 😀</div>;\n};\n", "p.name",
            "return <div>{p.name} 😀</div>;", "(p: Props) => {\n  return <div>{p.name} 😀</div>;\n}"),
    "rust": ("/// dé😀\nfn add(a: i32, b: i32) -> i32 {\n    let s = a + b;\n    s\n}\n", "a + b",
             "let s = a + b;\n    s", "fn add(a: i32, b: i32) -> i32 {\n    let s = a + b;\n    s\n}"),
    "go": ("package main\n\n// é😀\nfunc add(a int, b int) int {\n\treturn a + b\n}\n", "a + b",
           "return a + b", "func add(a int, b int) int {\n\treturn a + b\n}"),
    "c": ("/* é😀 */\nint add(int a, int b) {\n    return a + b;\n}\n", "a + b",
          "return a + b;", "int add(int a, int b) {\n    return a + b;\n}"),
    "cpp": ("// é😀\nint add(int a, int b) {\n    return a + b;\n}\n", "a + b",
            "return a + b;", "int add(int a, int b) {\n    return a + b;\n}"),
}


def test_registry() -> None:
    assert language_for("src/app.PY") == "python"
    assert language_for("x.tsx") == "tsx" and language_for("x.ts") == "typescript"
    assert language_for("notes.md") == "markdown" and language_for("README") == "text"
    assert get_language("Python").name == "python"
    with pytest.raises(UnknownLanguage, match="supported: .*python"):
        get_language("cobol")
    for name in supported():
        if LANGUAGES[name].module:
            assert parse("", name).root_node is not None


def test_python_targets_and_multibyte_offsets() -> None:
    s = Structure(PY, "python")
    at = PY.index("{name}") + 2
    got = {k: PY[slice(*_se(s.target(k, at)))] for k in ("string", "statement", "function")}
    assert got["string"] == 'f"héllo {name} 😀"'
    assert got["statement"] == 'msg = f"héllo {name} 😀"'
    assert got["function"].startswith("def greet") and got["function"].endswith("return msg.upper()")
    # The body skips the docstring and starts at the first statement; its indentation stays outside.
    body = s.target("function body", at)
    expected = '# a comment with é and 😀\n    msg = f"héllo {name} 😀"\n    return msg.upper()'
    assert PY[body.start:body.end] == expected
    assert PY[body.start - 4:body.start] == "    " and body.kind == "block" and body.label == "body of greet"
    assert PY[slice(*_se(s.target("comment", PY.index("comment"))))] == "# a comment with é and 😀"
    call = PY.index('"wörld"')
    assert PY[slice(*_se(s.target("argument list", call)))] == '("wörld")'
    assert PY[slice(*_se(s.target("class", call)))].startswith("class Greeter:")
    assert PY[slice(*_se(s.target("expression", PY.index("upper()") + 5)))] == "msg.upper()"


def _se(span) -> tuple[int, int]:
    return span.start, span.end


def test_only_docstring_body_is_the_docstring() -> None:
    src = 'def f():\n    """Only."""\n'
    body = Structure(src, "python").target("function body", src.index("Only"))
    assert src[body.start:body.end] == '"""Only."""'


def test_expand_and_shrink_walk_one_path() -> None:
    s = Structure(PY, "python")
    at = PY.index("name} 😀")
    path = s.path(at)
    assert path[0].kind == "identifier" and path[-1].kind == "module"
    assert all(a.start >= b.start and a.end <= b.end and (a.start, a.end) != (b.start, b.end)
               for a, b in zip(path, path[1:]))
    span = path[0]
    grown = [span]
    while (bigger := s.expand(span.start, span.end)) is not None:
        grown.append(bigger)
        span = bigger
    assert [(g.start, g.end) for g in grown] == [(p.start, p.end) for p in path]
    for bigger, smaller in zip(reversed(grown), list(reversed(grown))[1:]):
        assert s.shrink(bigger.start, bigger.end, at) == smaller
    assert s.shrink(path[0].start, path[0].end, at) is None
    # A rough selection with surrounding spaces picks the node inside it.
    stmt = PY.index("return msg")
    assert s.enclosing(stmt - 3, stmt + len("return msg.upper()") + 1).kind == "return_statement"


@pytest.mark.parametrize("language", sorted(SNIPPETS))
def test_function_targets_in_each_language(language: str) -> None:
    src, needle, body_text, function_text = SNIPPETS[language]
    s = Structure(src, language)
    assert not s.tree.root_node.has_error
    at = src.index(needle)
    body = s.target("function body", at)
    assert src[body.start:body.end] == body_text
    assert src[slice(*_se(s.target("function", at)))] == function_text
    assert s.target("statement", at).kind in ("return_statement", "let_declaration")
    assert src[slice(*_se(s.target("expression", at)))] in ("a", "p")
    block = s.target("block", at)
    assert src[block.start] == "{" and src[block.end - 1] == "}"


@pytest.mark.parametrize(("language", "src", "needle", "what", "expected"), [
    ("json", '{"name": "é😀", "list": [1, {"k": true}]}', '"k"', "block", '{"k": true}'),
    ("json", '{"name": "é😀", "list": [1, {"k": true}]}', "é", "string", '"é😀"'),
    ("html", '<!-- é😀 -->\n<div class="x"><p>Hello</p></div>\n', "é", "comment", "<!-- é😀 -->"),
    ("html", '<!-- é😀 -->\n<div class="x"><p>Hello</p></div>\n', "Hello", "block", "<p>Hello</p>"),
    ("css", "/* é😀 */\n.box > p { color: red; margin: 0 auto; }\n", "red", "statement", "color: red;"),
    ("css", "/* é😀 */\n.box > p { color: red; }\n", "é", "comment", "/* é😀 */"),
    ("markdown", "# Tïtle 😀\n\nSome text.\n\n```py\nx = 1\n```\n", "x = 1", "block", "```py\nx = 1\n```\n"),
    ("rust", "struct P { x: i32 }\n", "x:", "class", "struct P { x: i32 }"),
    ("go", "package m\n\ntype P struct{ X int }\n", "X", "class", "type P struct{ X int }"),
])
def test_targets_in_data_and_markup_languages(language: str, src: str, needle: str, what: str, expected: str) -> None:
    span = Structure(src, language).target(what, src.index(needle))
    assert src[span.start:span.end] == expected


def test_no_target_and_bad_spans() -> None:
    with pytest.raises(NoTarget, match="no function body"):
        Structure("x = 1\n", "python").target("function body", 0)
    with pytest.raises(BadSpan, match="outside the document"):
        Structure("x = 1\n", "python").enclosing(3, 99)
    with pytest.raises(UnknownLanguage, match="no grammar"):
        Structure("hello", "text")
