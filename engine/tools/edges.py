"""Span-edge healing measured on the bundled model, with healing off and on: held-out prose
phrases selected without the space before them (doubled spaces at the edges), and held-out
single-line Python infills selected without their indentation (share of documents that parse).

    python -m engine.tools.edges [--prose 50] [--code 32] [--preset NAME] [--threads 2]
"""
from __future__ import annotations

import argparse
import json
import random
import re
import sys
import time

import torch

from ..canvas import Span, build_canvas
from ..infill import infill
from ..loop import run
from ..model import DiffusionLM
from ..settings import PRESETS, SamplerSettings
from . import corpus
from .eval import infill_cases
from .quality import parses


def prose_edits(count: int, seed: int = 0, window: int = 150, length: tuple[int, int] = (1, 4)
                ) -> list[tuple[str, Span]]:
    """`count` phrases of `length` (fewest, most) words from held-out prose, each selected without
    the space before it (as a double-click or a drag over whole words selects), in a window of
    whole lines."""
    _, held = corpus.split()
    docs = sorted((d for d in held if d.kind == "prose"), key=lambda d: d.name)
    rng, edits = random.Random(seed), []
    for k in range(count):
        text = docs[k % len(docs)].text
        lines = [m for m in re.finditer(r"(?m)^(?! ).+$", text)]  # unindented lines: prose, not examples
        words = [line.start() + m.start() for line in lines
                 for m in re.finditer(r"(?<=[A-Za-z,] )[A-Za-z]", line.group())]
        while True:
            at = rng.choice(words)
            more = rng.randrange(length[0] - 1, length[1])
            phrase = re.match(rf"[A-Za-z]+(?: [A-Za-z]+){{{more}}}", text[at:])
            if phrase is None:
                continue
            end = at + len(phrase.group())
            if text[end:end + 1] in (" ", ",", ".", ";", ":") and text[end:end + 2] != "  ":
                break
        lo = text.find("\n", max(0, at - window)) + 1 if at > window else 0
        hi = text.find("\n", end + window)
        hi = len(text) if hi < 0 else hi
        edits.append((text[lo:hi], Span(at - lo, end - lo)))
    return edits


def code_edits(count: int) -> list[tuple[str, Span]]:
    """The held-out single-line infill cases of `engine.tools.eval`, each statement selected
    without its indentation (as a user selects a line's code)."""
    edits = []
    for case in infill_cases(count, 1):
        line = case["text"][case["start"] + 1:case["end"]]
        indent = len(line) - len(line.lstrip(" \t"))
        edits.append((case["text"], Span(case["start"] + 1 + indent, case["end"])))
    return edits


def doubled_edges(text: str, span: Span, out: str) -> int:
    """Edges (0-2) where `out` has two spaces that `text` did not have there."""
    new_end = len(out) - (len(text) - span.end)
    count = 0
    for at, before in ((span.start, text[span.start - 1:span.start + 1]), (new_end, text[span.end - 1:span.end + 1])):
        count += out[max(0, at - 1):at + 1] == "  " and before != "  "
    return count


def measure(model: DiffusionLM, edits: list[tuple[str, Span]], settings: SamplerSettings, heal: bool,
            code: bool) -> dict:
    doubled = parsed = same = 0
    examples: list[str] = []
    started = time.perf_counter()
    for text, span in edits:
        canvas = build_canvas(model.codec, text, [span], model.max_length, heal=heal)
        out = run(infill(model, canvas, settings)).texts[0]
        doubled += doubled_edges(text, span, out) > 0
        parsed += code and parses(out)
        same += out == text
        if len(examples) < 6:
            new = out[span.start:len(out) - (len(text) - span.end)]
            examples.append(f"{text[max(0, span.start - 12):span.start]!r} [{new!r}] {text[span.end:span.end + 12]!r}")
    row = {"heal": heal, "edits": len(edits), "doubled_space_edits": doubled, "unchanged": same,
           "seconds": round(time.perf_counter() - started, 1)}
    if code:
        row["parses"] = parsed
    return row | {"examples": examples}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m engine.tools.edges", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--prose", type=int, default=50, help="prose phrases (0: none)")
    p.add_argument("--code", type=int, default=32, help="single-line Python infills (0: none)")
    p.add_argument("--preset", choices=sorted(PRESETS), help="sampler preset (default: the CLI's defaults)")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    from ..load import load_model
    model = load_model(None)
    settings = PRESETS[args.preset] if args.preset else SamplerSettings()
    for name, edits, code in (("prose", prose_edits(args.prose), False), ("code", code_edits(args.code), True)):
        if not edits:
            continue
        for heal in (False, True):
            row = measure(model, edits, settings, heal, code)
            print(json.dumps({"workload": name, "preset": args.preset or "cli-default", **row}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
