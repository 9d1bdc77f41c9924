"""Downloads: a revision written once, straight into the page's file cache, under a checked name.

Gradio serves a download from its cache folder and copies any other file there first; writing the
export into the cache itself leaves one file, not a temp copy plus Gradio's copy. The Blocks' own
`delete_cache` removes export files after EXPORT_AGE seconds (and all of them at shutdown); each
export also removes the folders of older ones.
"""
from __future__ import annotations

import os
import secrets
import shutil
import time
from pathlib import Path

from editor.history import History
from editor.text import EditorError

EXPORT_AGE = 900  # seconds a download link stays valid
NAME_MAX = 255  # bytes in one file name on Linux, macOS and Windows file systems
FOLDER = "sharpen-exports"


def file_name(name: str) -> str:
    """The download's file name: the last part of `name`, checked before anything is recorded."""
    base = Path(name or "").name.strip() or "untitled.txt"
    if "\x00" in base or base in (".", ".."):
        raise EditorError(f"{base!r} cannot be a file name")
    size = len(base.encode("utf-8", "surrogatepass"))
    if size > NAME_MAX:
        raise EditorError(f"the file name is {size} bytes of UTF-8; file systems allow {NAME_MAX}: shorten the name")
    return base


def export(history: History, document_id: int, revision_id: int, name: str, cache: str | Path) -> Path:
    """Write one revision to `<cache>/sharpen-exports/<random>/<name>` (the random part keeps
    another user from guessing the link); removes exports older than EXPORT_AGE."""
    root = Path(cache) / FOLDER
    _prune(root, time.time() - EXPORT_AGE)
    folder = root / secrets.token_urlsafe(16)
    folder.mkdir(parents=True)
    try:
        return history.export(document_id, folder / file_name(name), revision_id)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise


def _prune(root: Path, before: float) -> None:
    if not root.is_dir():
        return
    for folder in root.iterdir():
        try:
            if folder.is_dir() and os.stat(folder).st_mtime < before:
                shutil.rmtree(folder, ignore_errors=True)
        except FileNotFoundError:  # another request pruned it first
            continue
