"""Does a regenerated document still parse, and did the edited node keep its kind?"""

from __future__ import annotations

from dataclasses import dataclass

from tree_sitter import Node

from editor.compiles import new_compile_error
from editor.languages import get_language
from editor.structure import NoTarget, Structure
from editor.text import check_span


@dataclass(frozen=True)
class SyntaxProblem:
    line: int  # 1-based
    column: int  # 1-based, in characters
    message: str
    start: int  # character offsets in the checked text
    end: int


@dataclass(frozen=True)
class EditCheck:
    ok: bool  # parses and kept_kind
    parses: bool  # no syntax error that was not already in the document before the edit (for
                  # Python, its own compiler agrees on the block around the edit)
    kept_kind: bool  # the node around the edit has the same type before and after
    before_kind: str | None  # None for plain text
    after_kind: str | None
    errors: tuple[SyntaxProblem, ...]  # the new syntax errors, first one first

    @property
    def error(self) -> SyntaxProblem | None:
        return self.errors[0] if self.errors else None


def _problem(text: str, start: int, end: int, missing: str | None = None) -> SyntaxProblem:
    """A problem at characters [start, end) of `text`, its line and column those of `start` in the
    whole document; the message quotes the first line of what is there (or names what is missing)."""
    line = text.count("\n", 0, start) + 1
    column = start - (text.rfind("\n", 0, start) + 1) + 1
    if missing is not None:
        message = f"missing {missing!r}"
    else:
        snippet = text[start:end].strip().split("\n", 1)[0].rstrip()[:40]
        message = f"syntax error: unexpected {snippet!r}" if snippet else "syntax error"
    return SyntaxProblem(line, column, message, start, end)


def _problems(st: Structure) -> list[SyntaxProblem]:
    """Every ERROR and MISSING node of a parse, outermost only."""
    out: list[SyntaxProblem] = []

    def visit(node: Node) -> None:
        if node.is_error or node.is_missing:
            s = st.span(node)
            out.append(_problem(st.text, s.start, s.end, node.type if node.is_missing else None))
            return
        if node.has_error:
            for child in node.children:
                visit(child)

    visit(st.tree.root_node)
    return out


def check_edit(before_text: str, after_text: str, language: str, span: tuple[int, int],
               new_span: tuple[int, int], kind: str | None = None) -> EditCheck:
    """Compare a document before and after replacing `span` (in before) by `new_span` (in after).

    An error in the edited document counts as new unless the same kind of error sits at the same
    place (shifted by the edit's change in length) in the document before, or both the old and the
    new error touch the edited span. So a file that was already broken elsewhere can still be
    edited, and an edit that leaves a broken region broken is not blamed for it.

    The kind check finds the node around the span before the edit (`kind`, e.g. a target's
    NodeSpan.kind such as "block", or by default the smallest named node around it) and asks
    for a node of the same type around the new span that reaches as far beyond it on each side.
    """
    info = get_language(language)
    check_span(before_text, *span)
    check_span(after_text, *new_span)
    if info.module is None or info.prose:  # prose has no syntax to break
        return EditCheck(True, True, True, None, None, ())
    before, after = Structure(before_text, info.name), Structure(after_text, info.name)
    shift = new_span[1] - span[1]
    old = set()
    old_in_edit = False
    for p in _problems(before):
        if p.end >= span[0] and p.start <= span[1]:
            old_in_edit = True
        elif p.start >= span[1]:
            old.add((p.message, p.start + shift, p.end + shift))
        else:
            old.add((p.message, p.start, p.end))
    new = []
    for p in _problems(after):
        touches = p.end >= new_span[0] and p.start <= new_span[1]
        if (p.message, p.start, p.end) in old or (touches and old_in_edit):
            continue
        # An ERROR node that starts before the edit and reaches into it (tree-sitter may wrap a whole
        # module from line 1) is reported where the edit starts: that is where the text went wrong.
        new.append(_problem(after_text, new_span[0], p.end) if touches and p.start < new_span[0] else p)
    if info.name == "python" and not new:  # tree-sitter recovers where Python's compiler does not
        found = new_compile_error(before_text, after_text, span, new_span)
        if found is not None:
            p = _problem(after_text, found.start, found.start)
            new.append(SyntaxProblem(p.line, p.column, f"Python: {found.message.split(': ', 1)[-1]}",
                                     found.start, found.start))
    before_node = _anchor(before, span, kind)
    if before_node is None:
        raise NoTarget(f"no {kind!r} node around characters {span[0]}..{span[1]} before the edit")
    kind = before_node.type
    margins = _margins(before, before_node, span)
    after_node = _anchor(after, new_span, kind)
    kept = after_node is not None and _margins(after, after_node, new_span) == margins
    after_kind = kind if kept else after.enclosing(*new_span).kind
    return EditCheck(not new and kept, not new, kept, kind, after_kind, tuple(new))


def _anchor(st: Structure, span: tuple[int, int], kind: str | None) -> Node | None:
    """The node whose kind the edit must keep: the nearest of `kind` around the span, or by default
    the smallest named node around it (the outermost of those with that same extent, so a one-line
    Python body is its block rather than its only statement)."""
    chain = st.ancestors(st.node(*span))
    if kind is not None:
        return next((n for n in chain if n.type == kind), None)
    best = chain[0]
    for n in chain[1:]:
        if (n.start_byte, n.end_byte) != (best.start_byte, best.end_byte):
            break
        best = n
    return best


def _margins(st: Structure, node: Node, span: tuple[int, int]) -> tuple[int, int]:
    """How far the node reaches before and after the span: the same node wraps the new text alike."""
    s = st.span(node)
    return span[0] - s.start, s.end - span[1]
