"""The checker for a document's language, for entry points that live in engine/ (the CLI, the
service, the tools). The engine knows no languages: editor.checks does, and it is imported here by
name, only when asked for, so the engine runs without it (the GPU machine has no tree-sitter)."""
from __future__ import annotations

import importlib
from typing import Any

from .correct import Checker
from .model import DiffusionLM
from .scope import whole_words


def editor_checks() -> Any | None:
    """The editor.checks module, or None where the editor is not installed."""
    try:
        return importlib.import_module("editor.checks")
    except ImportError:
        return None


def checker_for(language: str, model: DiffusionLM) -> Checker | None:
    """The correction rounds' checker for `language` (ValueError for a language editor.checks does
    not know); None without the editor (the edit is then not corrected)."""
    checks = editor_checks()
    if checks is None:
        return None
    return checks.checker_for(language, whole_words(model.codec))
