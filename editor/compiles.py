"""Python's own parser on the block around an edit, and bracket balance of an edited span.

tree-sitter recovers from errors and can read a broken statement as some other valid tree (a
condition rewritten into `i < len(chunks):` with an `else:` under it); `compile()` cannot be talked
round. The block compiled is the top-level statement(s) around the edit, at column 0, so no
indentation has to be guessed; an edit is blamed only when that block compiled before it.
"""
from __future__ import annotations

import re
import warnings
from dataclasses import dataclass

# A line at column 0 that starts a statement of its own (not a continuation of the one above).
_CONTINUES = re.compile(r"(else|elif|except|finally|case)\b|[)\]}#'\"]")
OPENERS, CLOSERS = "([{", ")]}"
QUOTES = "\"'`"


@dataclass(frozen=True)
class CompileError:
    start: int  # character offset of the error in the document
    message: str


def top_level_block(text: str, start: int, end: int) -> tuple[int, int]:
    """Characters [a, b) of the top-level statements around [start, end): from the last statement
    line at column 0 at or before `start` (with its decorators) to the next one after `end`."""
    heads = [m.start() for m in re.finditer(r"^(?=\S)", text, re.M)
             if not _CONTINUES.match(text, m.start())]
    a = max((h for h in heads if h <= start), default=0)
    while a > 0:  # decorators belong to the definition under them
        prev = text.rfind("\n", 0, a - 1) + 1
        if not text.startswith("@", prev):
            break
        a = prev
    b = min((h for h in heads if h > max(end, a)), default=len(text))
    return a, b


def compile_error(source: str) -> tuple[int, int, str] | None:
    """(line, column, message) of the first error Python's compiler finds (1-based), or None."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # an invalid escape is a warning, not a broken edit
            compile(source, "<edit>", "exec", dont_inherit=True)
    except SyntaxError as err:
        return err.lineno or 1, err.offset or 1, err.msg
    except (ValueError, RecursionError, MemoryError) as err:  # NUL bytes, absurd nesting
        return 1, 1, str(err)
    return None


def new_compile_error(before: str, after: str, span: tuple[int, int], new_span: tuple[int, int]) -> CompileError | None:
    """The error Python's compiler finds in the block around the edit in `after`, when the same
    block in `before` compiled; None when it compiles, or was already broken before the edit."""
    a, b = top_level_block(before, *span)
    if compile_error(before[a:b]) is not None:
        return None
    a, b = top_level_block(after, *new_span)
    found = compile_error("\n" * after.count("\n", 0, a) + after[a:b])  # line numbers as in the document
    if found is None:
        return None
    line, column, message = found
    at = 0
    for _ in range(line - 1):
        at = after.find("\n", at) + 1 or len(after)
    return CompileError(min(at + column - 1, len(after)), message)


def unbalanced(before: str, after: str) -> list[tuple[int, int]]:
    """Where `after` (a span's new text) breaks the balance `before` (its old text) had: unmatched
    closers, unclosed openers (and the end, where their closers are missing), and an odd quote.
    Empty when `before` was itself unbalanced (a selection that cut a bracket pair may keep it cut)."""
    if _bracket_faults(before) or any(before.count(q) % 2 for q in QUOTES):
        return []
    out = [(i, i + 1) for i in _bracket_faults(after)]
    for q in QUOTES:
        if after.count(q) % 2:
            out.append((after.rindex(q), after.rindex(q) + 1))
    if any(after[i] in OPENERS for i, _ in out) or any(after.count(q) % 2 for q in QUOTES):
        out.append((len(after), len(after)))
    return out


def _bracket_faults(text: str) -> list[int]:
    """Offsets of closers with no opener and openers never closed (quoted text skipped)."""
    stack: list[int] = []
    faults: list[int] = []
    quote: str | None = None
    for i, c in enumerate(text):
        if quote is not None:
            quote = None if c == quote and text[i - 1] != "\\" else quote
        elif c in QUOTES:
            quote = c
        elif c in OPENERS:
            stack.append(i)
        elif c in CLOSERS:
            if stack and text[stack[-1]] == OPENERS[CLOSERS.index(c)]:
                stack.pop()
            else:
                faults.append(i)
    return faults + stack
