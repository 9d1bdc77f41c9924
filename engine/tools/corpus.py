"""Training text for the bundled model: Python source and English prose that ship on the machine.

Sources:
  stdlib    code: the stdlib's own .py files (`sysconfig.get_paths()["stdlib"]`), test folders
            and site-packages skipped. PSF License Agreement.
  pydoc     prose: `pydoc_data.topics.topics`, the language reference sections `help()` shows. PSF.
  packages  the installed distributions whose metadata names only permissive licences (MIT, BSD,
            Apache-2.0, PSF and the like; `permissive_licence`): code, their .py files from the
            RECORD; prose, the long description in METADATA (the README) and .md/.rst files.
            Test and vendored folders are skipped (vendored code has its own licence).
  folders   prose shipped outside Python where present (`DOC_FOLDERS`: Node.js's API docs, MIT).
`split()` alone reads stdlib + pydoc: the fixed held-out set that engine.tools.eval and bench read.
`split(extended_documents())` adds the packages for training.

Held-out split BY DOCUMENT (a file, one pydoc topic, one README): a document is held out when the
first 8 hex digits of sha1(its name) fall in the lowest `HELDOUT_SHARE`, and always when
engine.tools.bench reads it (textwrap.py, string.py, bisect.py; the first pydoc topics in sorted
order). A package file that copies a held-out file (same text, or the same basename and half its
lines) is held out with it. So no benchmark or eval text is ever trained on.
"""
from __future__ import annotations

import csv
import hashlib
import importlib.metadata
import re
import sysconfig
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

LICENCES = {
    "stdlib": "Python standard library source, PSF License Agreement (Python Software Foundation)",
    "pydoc": "pydoc_data.topics (Python reference documentation), PSF License Agreement",
}
HELDOUT_SHARE = 0.05
BENCH_FILES = ("textwrap.py", "string.py", "bisect.py")   # engine.tools.bench's code document
BENCH_PROSE_CHARS = 40_000   # engine.tools.bench reads the start of the sorted topics (2000 tokens at most)
SKIP_DIRS = {"test", "tests", "idle_test", "site-packages", "dist-packages", "__pycache__"}
VENDORED = {"_vendor", "vendor", "vendored", "_vendored", "third_party", "thirdparty", "extern",
            "_extern", "externals"}
MAX_FILE_CHARS = 300_000    # larger .py files are generated tables, not code to learn from
MAX_LINE_CHARS = 1_000      # a longer line marks generated or minified text
MIN_PROSE_CHARS = 400
# Prose that ships outside Python packages, read where present: source -> (folder, files, licence).
DOC_FOLDERS = {
    "nodejs-api": (Path("/usr/share/doc/nodejs/api"), "*.md",
                   "MIT (Node.js core documentation; /usr/share/doc/nodejs/copyright, first section)"),
}


@dataclass(frozen=True)
class CorpusText:
    """One text of the training corpus (a file, a pydoc topic, a README) and the licence record it falls under."""

    kind: str       # "code" or "prose"
    name: str       # path relative to the stdlib folder, "pydoc:<topic>", "pkg:<path>", "readme:<dist>"
    text: str
    source: str = ""  # a key of the licence record: "stdlib", "pydoc" or a distribution's name


def stdlib_root() -> Path:
    return Path(sysconfig.get_paths()["stdlib"])


def code_documents(root: Path | None = None) -> list[CorpusText]:
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
            docs.append(CorpusText("code", rel.as_posix(), text, "stdlib"))
    return docs


def prose_documents() -> list[CorpusText]:
    """One document per pydoc topic, in sorted topic order (engine.tools.bench's order)."""
    from pydoc_data.topics import topics
    return [CorpusText("prose", f"pydoc:{key}", topics[key].strip(), "pydoc") for key in sorted(topics)]


def bench_prose_names(prose: Sequence[CorpusText]) -> set[str]:
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


def is_heldout(doc: CorpusText, forced: Collection[str] = frozenset()) -> bool:
    base = doc.name.rsplit("/", 1)[-1]
    if doc.kind == "code" and "/" not in doc.name and base in BENCH_FILES:
        return True
    return doc.name in forced or hash_share(doc.name) < HELDOUT_SHARE


def split(docs: Iterable[CorpusText] | None = None, also: Iterable[str] = ()
          ) -> tuple[list[CorpusText], list[CorpusText]]:
    """(train, heldout) documents; without `docs`, of stdlib + pydoc (the eval's fixed set).
    `also`: names held out besides (another machine's held-out set: its Python's pydoc topics
    differ in length, so the leading topics engine.tools.bench reads can differ)."""
    if docs is None:
        docs = code_documents() + prose_documents()
    docs = list(docs)
    forced = bench_prose_names([d for d in docs if d.kind == "prose" and d.name.startswith("pydoc:")])
    forced |= set(also)
    held = {d.name for d in docs if is_heldout(d, forced)}
    held |= copies_of(held, docs)
    return [d for d in docs if d.name not in held], [d for d in docs if d.name in held]


def _lines(text: str) -> set[str]:
    return {line.strip() for line in text.splitlines() if len(line.strip()) >= 12}


def copies_of(held: set[str], docs: Sequence[CorpusText]) -> set[str]:
    """Names of the documents outside stdlib and pydoc that copy a held-out document: the same
    text, or the same file name (not __init__.py) and at least half the longer lines of either
    (a package's copy of a stdlib module, edited a little). stdlib and pydoc are never moved, so
    the eval's held-out set stays what the hash alone makes it."""
    texts = {hashlib.sha1(d.text.encode()).digest() for d in docs if d.name in held}
    by_base: dict[str, list[set[str]]] = {}
    for d in docs:
        base = d.name.rsplit("/", 1)[-1]
        if d.name in held and base != "__init__.py":
            by_base.setdefault(base.removeprefix("pkg:"), []).append(_lines(d.text))
    out = set()
    for d in docs:
        if d.name in held or d.source in ("stdlib", "pydoc"):
            continue
        if hashlib.sha1(d.text.encode()).digest() in texts:
            out.add(d.name)
            continue
        others = by_base.get(d.name.rsplit("/", 1)[-1].removeprefix("pkg:"), ())
        mine = _lines(d.text) if others else set()
        for other in others:
            if mine and other and len(mine & other) >= 0.5 * min(len(mine), len(other)):
                out.add(d.name)
                break
    return out


# ---- installed packages -------------------------------------------------------------------------

PERMISSIVE_SPDX = {"mit", "mit-0", "mit-cmu", "0bsd", "bsd-2-clause", "bsd-3-clause", "apache-2.0",
                   "llvm-exception", "psf-2.0", "python-2.0", "cnri-python", "isc", "zlib", "bsl-1.0",
                   "cc0-1.0", "unlicense", "hpnd"}
PERMISSIVE_CLASSIFIERS = {
    "MIT License": "MIT", "MIT No Attribution License (MIT-0)": "MIT-0", "BSD License": "BSD",
    "Apache Software License": "Apache", "Python Software Foundation License": "PSF",
    "ISC License (ISCL)": "ISC", "zlib/libpng License": "Zlib", "The Unlicense (Unlicense)": "Unlicense",
    "Boost Software License 1.0 (BSL-1.0)": "BSL-1.0",
    "Historical Permission Notice and Disclaimer (HPND)": "HPND"}
FREE_TEXT = ((r"\bmit\b", "MIT"), (r"\bbsd\b", "BSD"), (r"\bapache\b", "Apache"),
             (r"\bpsf\b|python software foundation", "PSF"))
NOT_PERMISSIVE = re.compile(r"gpl|mpl|mozilla|eupl|cddl|eclipse|proprietary|commercial|"
                            r"non-commercial|sspl|\bosl\b|unknown", re.I)


def permissive_licence(meta) -> str | None:
    """The licence a distribution's metadata declares, when every licence it names is permissive
    (MIT, BSD, Apache-2.0, PSF, ISC, Zlib, BSL-1.0, CC0, Unlicense, HPND); else None.
    Read in order: License-Expression (SPDX, PEP 639), the License :: classifiers, the License
    field's first line."""
    expression = (meta.get("License-Expression") or "").strip()
    if expression:
        ids = {t.lower() for t in re.findall(r"[A-Za-z0-9.+-]+", expression)} - {"and", "or", "with"}
        return expression if ids and ids <= PERMISSIVE_SPDX else None
    named = [c.split("::")[-1].strip() for c in meta.get_all("Classifier") or []
             if c.startswith("License ::") and c.split("::")[-1].strip() != "OSI Approved"]
    if named:
        labels = [PERMISSIVE_CLASSIFIERS[n] for n in named if n in PERMISSIVE_CLASSIFIERS]
        return " OR ".join(sorted(set(labels))) if len(labels) == len(named) else None
    first = (meta.get("License") or "").strip().split("\n")[0]
    if not first or NOT_PERMISSIVE.search(first):
        return None
    labels = [label for pattern, label in FREE_TEXT if re.search(pattern, first, re.I)]
    return " OR ".join(labels) if labels else None


def _readable(path: Path) -> str | None:
    """The file's text, unless it is not UTF-8, empty, too large, or has a generated-looking line."""
    try:
        if path.stat().st_size > MAX_FILE_CHARS:
            return None
        text = path.read_text(encoding="utf-8")
    except (UnicodeDecodeError, OSError):
        return None
    if not text.strip() or max(map(len, text.splitlines())) > MAX_LINE_CHARS:
        return None
    return text


def _wanted(rel: str) -> str | None:
    """"code", "prose" or None for a path from a distribution's RECORD."""
    parts = rel.split("/")
    if parts[0] == ".." or any(p.endswith((".dist-info", ".egg-info")) or p in SKIP_DIRS
                               or p in VENDORED or p.startswith("test_") for p in parts):
        return None
    if rel.endswith(".py"):
        return "code"
    if rel.endswith((".md", ".rst")) and not parts[-1].upper().startswith(("LICEN", "COPYING", "NOTICE")):
        return "prose"
    return None


def distribution_documents(dist, name: str, max_chars: int | None = None,
                           kinds: tuple[str, ...] = ("code", "prose")) -> list[CorpusText]:
    """A distribution's README (METADATA's description) if it fits `max_chars`, and its code and
    prose files, visited in name-hash order (a spread over its sub-packages) until `max_chars`."""
    docs, total = [], 0
    readme = (dist.metadata.get_payload() or dist.metadata.get("Description") or "").strip()
    if "prose" in kinds and MIN_PROSE_CHARS <= len(readme) <= (max_chars or len(readme)):
        docs.append(CorpusText("prose", f"readme:{name}", readme, name))
        total += len(readme)
    record = dist.read_text("RECORD") or ""  # its first column; dist.files is ~10x slower
    files = sorted((row[0] for row in csv.reader(record.splitlines()) if row and _wanted(row[0]) in kinds),
                   key=lambda f: hash_share(f"pkg:{f}"))
    for rel in files:
        if max_chars is not None and total >= max_chars:
            break
        kind, text = _wanted(rel), _readable(Path(str(dist.locate_file(rel))))
        if kind is not None and text is not None:
            docs.append(CorpusText(kind, f"pkg:{rel}", text, name))
            total += len(text)
    return sorted(docs, key=lambda d: d.name)


def package_documents(max_chars_per_source: int | None = None, dists: Iterable | None = None,
                      kinds: tuple[str, ...] = ("code", "prose")) -> tuple[list[CorpusText], dict[str, str]]:
    """Documents of every installed distribution with a permissive licence (first on sys.path
    wins; each text once), and the licence record {distribution: licence}."""
    found: dict[str, importlib.metadata.Distribution] = {}
    for dist in importlib.metadata.distributions() if dists is None else dists:
        name = dist.metadata["Name"]
        if name and name.lower() not in found:
            found[name.lower()] = dist
    docs, licences, seen = [], {}, set()
    for key in sorted(found):
        dist = found[key]
        licence = permissive_licence(dist.metadata)
        if licence is None:
            continue
        name = dist.metadata["Name"]
        for doc in distribution_documents(dist, name, max_chars_per_source, kinds):
            digest = hashlib.sha1(doc.text.encode()).digest()
            if digest not in seen:
                seen.add(digest)
                docs.append(doc)
                licences[name] = licence
    return docs, licences


def sample(docs: Sequence[CorpusText], max_chars: int | None) -> list[CorpusText]:
    """The documents visited in name-hash order (a spread, held-out ones first) until `max_chars`."""
    if max_chars is None:
        return list(docs)
    out, total = [], 0
    for doc in sorted(docs, key=lambda d: hash_share(d.name)):
        if total >= max_chars:
            break
        out.append(doc)
        total += len(doc.text)
    return sorted(out, key=lambda d: d.name)


def folder_documents(folders: dict[str, tuple[Path, str, str]] = DOC_FOLDERS
                     ) -> tuple[list[CorpusText], dict[str, str]]:
    """Prose files of the `folders` that exist on this machine, and their licences."""
    docs, licences = [], {}
    for source, (root, pattern, licence) in folders.items():
        for path in sorted(root.glob(pattern)) if root.is_dir() else ():
            text = _readable(path)
            if text is not None and len(text) >= MIN_PROSE_CHARS:
                docs.append(CorpusText("prose", f"{source}:{path.name}", text, source))
                licences[source] = licence
    return docs, licences


def extended_documents(max_chars_per_source: int | None = None, kinds: tuple[str, ...] = ("code", "prose")
                       ) -> tuple[list[CorpusText], dict[str, str]]:
    """stdlib + pydoc + the permissively licensed installed packages + DOC_FOLDERS (those of
    `kinds`), at most `max_chars_per_source` characters from each source, and the licences."""
    docs, licences = package_documents(max_chars_per_source, kinds=kinds)
    if "code" in kinds:
        docs = sample(code_documents(), max_chars_per_source) + docs
    if "prose" in kinds:
        folders, folder_licences = folder_documents()
        licences.update(folder_licences)
        docs += sample(prose_documents(), max_chars_per_source)
        for source in sorted(folder_licences):
            docs += sample([d for d in folders if d.source == source], max_chars_per_source)
    return docs, {**LICENCES, **licences}


def chunks(docs: Sequence[CorpusText], encode: Callable[[str], list[int]], length: int,
           separator: int, encode_many: Callable[[list[str]], list[list[int]]] | None = None,
           batch: int = 256) -> torch.Tensor:
    """(N, length) token chunks: each document's ids followed by `separator`, packed end to end
    in document order and cut into rows (a row can hold the end of one document and the start of
    the next, as in pre-training). `encode_many`, if given, encodes `batch` texts at a time."""
    parts: list[torch.Tensor] = []
    for i in range(0, len(docs), batch):
        texts = [d.text for d in docs[i:i + batch]]
        for ids in encode_many(texts) if encode_many else map(encode, texts):
            parts.append(torch.tensor(list(ids) + [separator], dtype=torch.long))
    stream = torch.cat(parts) if parts else torch.zeros(0, dtype=torch.long)
    n = len(stream) // length
    return stream[: n * length].view(n, length)


def cached_chunks(docs: Sequence[CorpusText], encode: Callable[[str], list[int]], length: int,
                  separator: int, path: Path,
                  encode_many: Callable[[list[str]], list[list[int]]] | None = None) -> torch.Tensor:
    """`chunks`, kept in `path` (keyed by the document names and sizes) to skip re-tokenising."""
    key = hashlib.sha1("\n".join(f"{d.name}:{len(d.text)}" for d in docs).encode()
                       + f"|{length}|{separator}".encode()).hexdigest()
    if path.is_file():
        saved = torch.load(path, weights_only=True)
        if saved.get("key") == key:
            return saved["chunks"]
    out = chunks(docs, encode, length, separator, encode_many)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save({"key": key, "chunks": out}, tmp)
    tmp.replace(path)
    return out


def summary(train: Sequence[CorpusText], heldout: Sequence[CorpusText]) -> dict:
    """CorpusText counts and characters per kind and split (for the data card)."""
    out = {}
    for split_name, docs in (("train", train), ("heldout", heldout)):
        for kind in ("code", "prose"):
            sel = [d for d in docs if d.kind == kind]
            out[f"{split_name}/{kind}"] = {"documents": len(sel), "chars": sum(len(d.text) for d in sel)}
    return out


def by_source(train: Sequence[CorpusText], licences: dict[str, str]) -> list[dict]:
    """One row per source of the training split: licence, code and prose characters."""
    rows: dict[str, dict] = {}
    for d in train:
        row = rows.setdefault(d.source, {"source": d.source, "licence": licences.get(d.source, "?"),
                                         "documents": 0, "code": 0, "prose": 0})
        row["documents"] += 1
        row[d.kind] += len(d.text)
    return sorted(rows.values(), key=lambda r: -(r["code"] + r["prose"]))


def card(max_chars_per_source: int | None = None) -> str:
    """The data card's tables for the extended corpus on this machine (markdown)."""
    docs, licences = extended_documents(max_chars_per_source)
    train, heldout = split(docs)
    lines = ["| source | licence | documents | code chars | prose chars |", "|---|---|---|---|---|"]
    lines += [f"| {r['source']} | {r['licence']} | {r['documents']} | {r['code']:,} | {r['prose']:,} |"
              for r in by_source(train, licences)]
    lines += ["", "| split | kind | documents | characters |", "|---|---|---|---|"]
    lines += [f"| {key.split('/')[0]} | {key.split('/')[1]} | {v['documents']:,} | {v['chars']:,} |"
              for key, v in summary(train, heldout).items()]
    return "\n".join(lines)


if __name__ == "__main__":  # python -m engine.tools.corpus: print the data card's tables
    print(card())  # noqa: T201 (the command's output)
