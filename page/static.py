"""The page's files in static/: the browser scripts events run, and the style sheet."""
from __future__ import annotations

from pathlib import Path

STATIC = Path(__file__).resolve().parents[1] / "static"
CSS = STATIC / "sharpen.css"
SCRIPTS = ("tokens", "history", "ready", "download", "focus", "instruct", "instruct_close")
JS = {name: (STATIC / f"{name}.js").read_text() for name in SCRIPTS}
