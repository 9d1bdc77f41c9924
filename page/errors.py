"""How a handler refuses: a `Refusal` the page shows in its message line (demo.answer_refusals), the
traceback of anything unexpected in the log."""
from __future__ import annotations

import ctypes
import logging
from html import escape

from sqlalchemy.exc import SQLAlchemyError

from editor.text import EditorError

log = logging.getLogger("page")

# What a handler turns into a message in the page instead of a stack trace.
REFUSALS = (EditorError, ValueError, OSError, SQLAlchemyError)

# glibc keeps freed heap pages (a run's transient logits, its per-step documents) in the process
# unless asked; None where the C library has no malloc_trim.
_MALLOC_TRIM = getattr(ctypes.CDLL(None), "malloc_trim", None)


class Refusal(Exception):
    """An expected condition (nothing to undo, a bad constraint, a stale save): the page says so in its
    message line and leaves every other output as it was; an API caller gets it as an error."""

    def __init__(self, message: str, title: str = "Error") -> None:
        super().__init__(message)
        self.message, self.title = message, title


def error(message: str, title: str = "Error") -> Refusal:
    """A refusal to raise. Messages quote what people typed (a constraint, a file name) or what a
    model wrote, and the page renders them as markup, so every message is escaped, here."""
    return Refusal(escape(message), title)


def fail(err: Exception) -> Refusal:
    """The message for a refusal caught in a handler; call it inside `except`. An expected refusal
    (a name too long, no such revision) is one line in the log; a database failure logs its traceback."""
    if isinstance(err, SQLAlchemyError):
        log.exception("refused: %s", err)
        return error(f"The database refused: {getattr(err, 'orig', None) or err}", "Database error")
    log.info("refused: %s", err)
    return error(str(err), type(err).__name__)


def trim_heap() -> None:
    """Give memory freed by a finished or forgotten run back to the OS (docs/PERFORMANCE.md)."""
    if _MALLOC_TRIM is not None:
        _MALLOC_TRIM(0)
