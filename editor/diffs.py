"""Text diffs for people and rebasing an edit onto a newer revision (diff-match-patch)."""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass

from diff_match_patch import diff_match_patch

from editor.text import EditorError

EQUAL, INSERT, DELETE = "equal", "insert", "delete"
_OPS = {diff_match_patch.DIFF_EQUAL: EQUAL, diff_match_patch.DIFF_INSERT: INSERT, diff_match_patch.DIFF_DELETE: DELETE}


@dataclass(frozen=True)
class FailedHunk:
    index: int  # position of the hunk in the patch
    header: str  # "@@ -a,b +c,d @@"
    expected: str  # text the hunk looked for in the target


class PatchConflict(EditorError):
    """Some changes of an edit collide with changes made meanwhile; nothing was applied."""

    def __init__(self, failed: list[FailedHunk]) -> None:
        self.failed = failed
        lines = "; ".join(f"hunk {h.index + 1} {h.header} expected {h.expected[:60]!r}" for h in failed)
        super().__init__(f"{len(failed)} hunk(s) of the patch did not apply: {lines}")


def _dmp() -> diff_match_patch:
    d = diff_match_patch()
    d.Diff_Timeout = 2.0  # seconds; the editor limit is 1 MiB, so a diff never blocks long
    return d


def diff(a: str, b: str) -> list[tuple[str, str]]:
    """Diff for people: [(op, text)] with op in "equal"/"insert"/"delete", semantically cleaned."""
    d = _dmp()
    ops = d.diff_main(a, b)
    d.diff_cleanupSemantic(ops)
    return [(_OPS[op], text) for op, text in ops]


def word_diff(a: str, b: str) -> list[tuple[str, str]]:
    """`diff` by whole words (a word or a single sign, with the spaces after it), for
    short texts people compare at a glance: "narrow strait" -> "window, but" is one word replaced by
    others, not letters kept from both ("strai|t", "bu|t")."""
    x, y = _WORDS.findall(a), _WORDS.findall(b)
    ops: list[tuple[str, str]] = []
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(None, x, y, autojunk=False).get_opcodes():
        if tag in ("delete", "replace"):
            ops.append((DELETE, "".join(x[i1:i2])))
        if tag in ("insert", "replace"):
            ops.append((INSERT, "".join(y[j1:j2])))
        if tag == "equal":
            ops.append((EQUAL, "".join(x[i1:i2])))
    return ops


_WORDS = re.compile(r"\w+\s*|[^\w\s]\s*|\s+")  # a word (or a sign) with the spaces after it


def _changes(a: str, b: str) -> list[tuple[int, int, str]]:
    """The edits that turn a into b as (start, end, replacement) in a's characters, in order."""
    d = _dmp()
    ops = d.diff_main(a, b)
    d.diff_cleanupSemantic(ops)
    out: list[tuple[int, int, str]] = []
    pos = 0
    for op, piece in ops:
        if op == diff_match_patch.DIFF_EQUAL:
            pos += len(piece)
            continue
        start, end, new = (pos, pos + len(piece), "") if op == diff_match_patch.DIFF_DELETE else (pos, pos, piece)
        if out and out[-1][1] == start:  # a delete next to an insert is one replacement
            start, new = out[-1][0], out.pop()[2] + new
        out.append((start, end, new))
        pos = end
    return out


def rebase_edit(base: str, edited: str, newest: str) -> str:
    """Apply the change base -> edited to newest, a later revision of base (a three-way merge).

    Both sides are diffed against base; changes that touch different characters of base are
    combined exactly (no fuzzy matching, so nothing lands in the wrong place). Changes that
    overlap, or insert at the same place, conflict unless they are identical: PatchConflict
    lists the edited side's hunks that collided.
    """
    mine, theirs = _changes(base, edited), _changes(base, newest)
    failed: list[FailedHunk] = []
    for i, (s, e, new) in enumerate(mine):
        for s2, e2, new2 in theirs:
            same = (s, e, new) == (s2, e2, new2)
            if not same and ((s < e2 and s2 < e) or s == s2 or (s == e and s2 < s < e2) or (s2 == e2 and s < s2 < e)):
                failed.append(FailedHunk(i, f"@@ -{s + 1},{e - s} @@", base[s:e] or f"(insert {new[:40]!r})"))
                break
    if failed:
        raise PatchConflict(failed)
    merged = sorted({*mine, *theirs}, reverse=True)
    out = base
    for s, e, new in merged:
        out = out[:s] + new + out[e:]
    return out
