"""What `python app.py` keeps off the terminal: lines a person cannot act on (Gradio prints one line
per file of a custom component on every page load, with print(), so a logging filter cannot catch it)."""
from __future__ import annotations

import re
import sys
from typing import TextIO

# gradio/routes.py's custom_component_path: "id=<hash>, environment=client, type=component, file_name=index.js"
NOISE = re.compile(r"^id=\w+, environment=\w+, type=\w+, file_name=\S+$")


class WithoutNoise:
    """A text stream that passes every line on except those matching NOISE."""

    def __init__(self, stream: TextIO) -> None:
        self.stream, self.pending = stream, ""

    def write(self, text: str) -> int:
        *lines, self.pending = (self.pending + text).split("\n")
        kept = [line for line in lines if not NOISE.match(line)]
        if kept:
            self.stream.write("\n".join(kept) + "\n")
        return len(text)

    def flush(self) -> None:
        self.stream.flush()

    def __getattr__(self, name: str) -> object:  # isatty, encoding, fileno...: the stream's own
        return getattr(self.stream, name)


def quiet_stdout() -> None:
    """Drop Gradio's per-page-load lines from this process's standard output."""
    if not isinstance(sys.stdout, WithoutNoise):
        sys.stdout = WithoutNoise(sys.stdout)  # type: ignore[assignment]
