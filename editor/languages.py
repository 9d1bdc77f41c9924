"""Registry of supported languages: file extensions and tree-sitter grammars from single-language wheels."""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from functools import cache

from tree_sitter import Language, Parser, Tree

from editor.text import EditorError


class UnknownLanguage(EditorError):
    """A language name the registry does not know."""


@dataclass(frozen=True)
class LanguageInfo:
    name: str
    extensions: tuple[str, ...]  # lower case, with the dot
    prose: bool  # edited by words, sentences and paragraphs rather than syntax nodes
    module: str | None  # Python module of the grammar wheel; None: no grammar (plain text)
    function: str = "language"  # the module's function that returns the compiled grammar


_LANGUAGES: tuple[LanguageInfo, ...] = (
    LanguageInfo("python", (".py", ".pyi", ".pyw"), False, "tree_sitter_python"),
    LanguageInfo("javascript", (".js", ".mjs", ".cjs", ".jsx"), False, "tree_sitter_javascript"),
    LanguageInfo("typescript", (".ts", ".mts", ".cts"), False, "tree_sitter_typescript", "language_typescript"),
    LanguageInfo("tsx", (".tsx",), False, "tree_sitter_typescript", "language_tsx"),
    LanguageInfo("rust", (".rs",), False, "tree_sitter_rust"),
    LanguageInfo("go", (".go",), False, "tree_sitter_go"),
    LanguageInfo("c", (".c", ".h"), False, "tree_sitter_c"),
    LanguageInfo("cpp", (".cc", ".cpp", ".cxx", ".hpp", ".hh", ".hxx"), False, "tree_sitter_cpp"),
    LanguageInfo("json", (".json",), False, "tree_sitter_json"),
    LanguageInfo("html", (".html", ".htm"), False, "tree_sitter_html"),
    LanguageInfo("css", (".css",), False, "tree_sitter_css"),
    # The markdown wheel ships two grammars: blocks (sections, paragraphs, code) and inline
    # (emphasis, links). Blocks are what the editor selects; inline is there for callers that need it.
    LanguageInfo("markdown", (".md", ".markdown"), True, "tree_sitter_markdown"),
    LanguageInfo("markdown_inline", (), True, "tree_sitter_markdown", "inline_language"),
    LanguageInfo("text", (".txt", ".text", ""), True, None),
)
LANGUAGES: dict[str, LanguageInfo] = {info.name: info for info in _LANGUAGES}
_BY_EXTENSION: dict[str, str] = {ext: info.name for info in _LANGUAGES for ext in info.extensions}


def supported() -> list[str]:
    """Names of every supported language, sorted."""
    return sorted(LANGUAGES)


def get_language(name: str) -> LanguageInfo:
    """The registry entry for a language name (case-insensitive); UnknownLanguage lists the choices."""
    info = LANGUAGES.get(name.strip().lower()) if isinstance(name, str) else None
    if info is None:
        raise UnknownLanguage(f"unknown language {name!r}; supported: {', '.join(supported())}")
    return info


def language_for(filename: str) -> str:
    """Language name for a file name by its extension; anything unrecognised is plain "text"."""
    ext = os.path.splitext(os.path.basename(filename))[1].lower()
    return _BY_EXTENSION.get(ext, "text")


@cache
def grammar(name: str) -> Language:
    """The compiled tree-sitter grammar of a language (UnknownLanguage for "text")."""
    info = get_language(name)
    if info.module is None:
        raise UnknownLanguage(f"language {info.name!r} has no grammar; grammars: "
                              f"{', '.join(n for n in supported() if LANGUAGES[n].module)}")
    return Language(getattr(importlib.import_module(info.module), info.function)())


def parse(text: str, name: str) -> Tree:
    """Parse text with the language's grammar. A Parser is cheap; a new one keeps this thread-safe."""
    return Parser(grammar(get_language(name).name)).parse(text.encode("utf-8"))
