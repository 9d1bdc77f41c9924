"""How a handler refuses: an escaped message in the page's popup, the traceback in the log."""
from __future__ import annotations

import ctypes
import logging
from html import escape

import gradio as gr
from sqlalchemy.exc import SQLAlchemyError

from editor.text import EditorError

log = logging.getLogger("page")

# What a handler turns into a message in the page instead of a stack trace.
REFUSALS = (EditorError, ValueError, OSError, SQLAlchemyError)

# glibc keeps freed heap pages (a run's transient logits, its per-step documents) in the process
# unless asked; None where the C library has no malloc_trim.
_MALLOC_TRIM = getattr(ctypes.CDLL(None), "malloc_trim", None)


def error(message: str, title: str = "Error") -> gr.Error:
    """The page's error popup. gr.Error renders its message as HTML and messages quote what people
    typed (a constraint, a file name) or what a model wrote, so every message is escaped, here."""
    return gr.Error(escape(message), title=title)


def fail(err: Exception) -> gr.Error:
    """The message for a refusal caught in a handler; call it inside `except`: the traceback goes to the log."""
    log.exception("refused: %s", err)
    if isinstance(err, SQLAlchemyError):
        return error(f"The database refused: {getattr(err, 'orig', None) or err}", "Database error")
    return error(str(err), type(err).__name__)


def trim_heap() -> None:
    """Give memory freed by a finished or forgotten run back to the OS (docs/PERFORMANCE.md)."""
    if _MALLOC_TRIM is not None:
        _MALLOC_TRIM(0)
