"""Which frontend sources the shipped build was made from: `python -m page.document_editor.sources`
prints their hash, `--write` records it next to the build (scripts/build_frontend.sh does)."""
from __future__ import annotations

import hashlib
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
FRONTEND = HERE / "frontend"
BUILD = HERE / "templates" / "component"
RECORDED = HERE / "templates" / "SOURCES.sha256"
# Everything the build reads from the repository (node_modules comes from package-lock.json).
SOURCES = ("package.json", "package-lock.json", "build.config.mjs", "tsconfig.json", "Index.svelte", "src")


def source_files() -> list[Path]:
    files: list[Path] = []
    for name in SOURCES:
        path = FRONTEND / name
        files.extend(sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path])
    return files


def source_hash() -> str:
    """sha256 over the sources' paths and bytes, in a fixed order."""
    digest = hashlib.sha256()
    for path in source_files():
        digest.update(path.relative_to(FRONTEND).as_posix().encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()


def recorded_hash() -> str | None:
    return RECORDED.read_text().strip() if RECORDED.exists() else None


if __name__ == "__main__":
    if sys.argv[1:] == ["--write"]:
        RECORDED.write_text(source_hash() + "\n")
    sys.stdout.write(source_hash() + "\n")
