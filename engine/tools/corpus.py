"""Training text for the bundled model: the Python stdlib's source and its English reference docs.

Sources (both ship with every CPython, both under the PSF License Agreement, which permits
use, modification and redistribution of derived works):
  code   the stdlib's own .py files (`sysconfig.get_paths()["stdlib"]`), test folders and
         site-packages skipped;
  prose  `pydoc_data.topics.topics`, the language reference sections `help()` shows.

Held-out split BY DOCUMENT (a file, or one pydoc topic): a document is held out when the first
8 hex digits of sha1(its name) fall in the lowest `HELDOUT_SHARE`, and always when engine.tools.bench
reads it (textwrap.py, string.py, bisect.py; the first pydoc topics in sorted order). So no
benchmark or eval text is ever trained on.
"""
from __future__ import annotations

import hashlib
import sysconfig
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

LICENCES = {
    "code": "Python standard library source, PSF License Agreement (Python Software Foundation)",
    "prose": "pydoc_data.topics (Python reference documentation), PSF License Agreement",
}
HELDOUT_SHARE = 0.05
BENCH_FILES = ("textwrap.py", "string.py", "bisect.py")   # engine.tools.bench's code document
BENCH_PROSE_CHARS = 40_000   # engine.tools.bench reads the start of the sorted topics (2000 tokens at most)
SKIP_DIRS = {"test", "tests", "idle_test", "site-packages", "dist-packages", "__pycache__"}


@dataclass(frozen=True)
class Document:
    kind: str       # "code" or "prose"
    name: str       # path relative to the stdlib folder, or "pydoc:<topic>"
    text: str


def stdlib_root() -> Path:
    return Path(sysconfig.get_paths()["stdlib"])


def code_documents(root: Path | None = None) -> list[Document]:
    """Every stdlib .py file outside test folders, sorted by relative path."""
    root = root or stdlib_root()
    docs = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root)
        if any(part in SKIP_DIRS or part.startswith("test_") for part in rel.parts):
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        if text.strip():
            docs.append(Document("code", rel.as_posix(), text))
    return docs


def prose_documents() -> list[Document]:
    """One document per pydoc topic, in sorted topic order (engine.tools.bench's order)."""
    from pydoc_data.topics import topics
    return [Document("prose", f"pydoc:{key}", topics[key].strip()) for key in sorted(topics)]


def bench_prose_names(prose: Sequence[Document]) -> set[str]:
    """The leading topics (in sorted order) that engine.tools.bench's prose document is cut from."""
    names, total = set(), 0
    for doc in sorted(prose, key=lambda d: d.name):
        if total >= BENCH_PROSE_CHARS:
            break
        names.add(doc.name)
        total += len(doc.text) + 2
    return names


def hash_share(name: str) -> float:
    """A stable number in [0, 1) for a document name (same on every machine and run)."""
    return int(hashlib.sha1(name.encode()).hexdigest()[:8], 16) / 16**8


def is_heldout(doc: Document, forced: Collection[str] = frozenset()) -> bool:
    base = doc.name.rsplit("/", 1)[-1]
    if doc.kind == "code" and "/" not in doc.name and base in BENCH_FILES:
        return True
    return doc.name in forced or hash_share(doc.name) < HELDOUT_SHARE


def split(docs: Iterable[Document] | None = None) -> tuple[list[Document], list[Document]]:
    """(train, heldout) documents."""
    if docs is None:
        prose = prose_documents()
        docs = code_documents() + prose
    docs = list(docs)
    forced = bench_prose_names([d for d in docs if d.kind == "prose"])
    train = [d for d in docs if not is_heldout(d, forced)]
    heldout = [d for d in docs if is_heldout(d, forced)]
    return train, heldout


def chunks(docs: Sequence[Document], encode: Callable[[str], list[int]], length: int,
           separator: int) -> torch.Tensor:
    """(N, length) token chunks: each document's ids followed by `separator`, packed end to end
    in document order and cut into rows (a row can hold the end of one document and the start of
    the next, as in pre-training)."""
    stream: list[int] = []
    for doc in docs:
        stream.extend(encode(doc.text))
        stream.append(separator)
    n = len(stream) // length
    return torch.tensor(stream[: n * length], dtype=torch.long).view(n, length)


def cached_chunks(docs: Sequence[Document], encode: Callable[[str], list[int]], length: int,
                  separator: int, path: Path) -> torch.Tensor:
    """`chunks`, kept in `path` (keyed by the document names and sizes) to skip re-tokenising."""
    key = hashlib.sha1("\n".join(f"{d.name}:{len(d.text)}" for d in docs).encode()
                       + f"|{length}|{separator}".encode()).hexdigest()
    if path.is_file():
        saved = torch.load(path, weights_only=True)
        if saved.get("key") == key:
            return saved["chunks"]
    out = chunks(docs, encode, length, separator)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save({"key": key, "chunks": out}, tmp)
    tmp.replace(path)
    return out
