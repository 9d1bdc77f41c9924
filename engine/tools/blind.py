"""Edits for a blind reading, and the measures that need no reader, for two or more sampler
configurations on the bundled model (held-out prose phrases and single-line Python statements):

    python -m engine.tools.blind --variant plain --variant guided:guide=1.5 --out DIR [--prose 30] [--code 20]
    python -m engine.tools.blind --score DIR ANSWERS.json
    python -m engine.tools.blind --variant plain --variant guided:guide=1 --cost 3

DIR/sheet.md shows each edit's original passage, then one version per configuration in a shuffled
order labelled A, B, ...; nothing says which configuration wrote which. DIR/key.json says it;
DIR/measures.json holds per configuration: prose edits with a visible defect (a doubled word, a
repeated 2-4 word run, a line break inside the phrase), code documents that parse, statements equal
to the original's (AST), and seconds per edit. `--score` reads the reader's answers
({"7": {"A": true, "B": false}, ...}) and counts the kept edits per configuration. `--cost N`
instead times each variant on the benchmark's 32-token spans in ~512-token documents (N prose and
N code edits, each run twice, the variants alternating so that the machine's load falls on all
alike) and prints CPU and wall seconds and each variant's median ratio to the first.
"""
from __future__ import annotations

import argparse
import ast
import json
import random
import re
import statistics
import sys
import textwrap
import time
from pathlib import Path

import torch

from ..canvas import Span, build_canvas
from ..infill import infill, infill_text
from ..load import load_model
from ..loop import run
from ..model import DiffusionLM
from ..settings import DEFAULT_PRESET, PRESETS, SamplerSettings, parse_variant
from .edges import code_edits, prose_edits
from .quality import parses

QUESTION = {
    "prose": "Would a careful writer keep this version of the marked phrase in their text: it reads "
             "fluently, is grammatical and fits the sentence (it need not mean what the original meant)?",
    "code": "Would a programmer keep this version of the marked line in the function: it is valid "
            "Python, fits the surrounding code and does something sensible there?",
}


def prose_defect(before: str, phrase: str, after: str) -> bool:
    """A doubled word or a repeated run of 2-4 words in the phrase with the word either side of it
    ("is that» that"), or a line break inside the phrase."""
    edge = re.compile(r"[A-Za-z']+")
    words = edge.findall(before)[-1:] + edge.findall(phrase) + edge.findall(after)[:1]
    words = [w.lower() for w in words]
    doubled = any(a == b for a, b in zip(words, words[1:]))
    loop = any(words[i:i + n] == words[i + n:i + 2 * n] for n in (2, 3, 4) for i in range(len(words) - 2 * n + 1))
    return doubled or loop or "\n" in phrase


def same_statement(got: str, want: str) -> bool:
    try:
        return ast.dump(ast.parse(textwrap.dedent(got).strip())) == ast.dump(ast.parse(textwrap.dedent(want).strip()))
    except (SyntaxError, ValueError):
        return False


def edit(model: DiffusionLM, text: str, span: Span, settings: SamplerSettings) -> tuple[str, str]:
    """The edited document and the span's new text."""
    doc = infill_text(model, text, [span], settings)
    return doc, doc[span.start:len(doc) - (len(text) - span.end)]


def passage(kind: str, text: str, span: Span, new: str, side: int = 160) -> str:
    """The edit in context, the new text between « and »: prose as a quote, code as its lines."""
    before, after = text[:span.start], text[span.end:]
    if kind == "code":
        head = "\n".join(before.split("\n")[-4:])
        tail = "\n".join(after.split("\n")[:4])
        return "```python\n" + head + "«" + new + "»" + tail + "\n```"
    quote = before[-side:] + "«" + new + "»" + after[:side]
    return "> " + " ".join(quote.split())


def measure(model: DiffusionLM, variants: dict[str, SamplerSettings], n_prose: int, n_code: int) -> dict:
    edits = [("prose", *e) for e in prose_edits(n_prose, seed=11, length=(3, 6))]
    edits += [("code", *e) for e in code_edits(n_code)]
    out: dict = {"edits": [], "measures": {}}
    for kind, text, span in edits:
        out["edits"].append({"kind": kind, "text": text, "start": span.start, "end": span.end, "new": {}})
    for name, settings in variants.items():
        started, defects, parsed, same = time.perf_counter(), 0, 0, 0
        for item, (kind, text, span) in zip(out["edits"], edits):
            doc, new = edit(model, text, span, settings)
            item["new"][name] = new
            if kind == "prose":
                defects += prose_defect(text[:span.start], new, text[span.end:])
            else:
                parsed += parses(doc)
                same += same_statement(new, text[span.start:span.end])
        seconds = time.perf_counter() - started
        out["measures"][name] = {"prose_defects": f"{defects}/{n_prose}", "code_parses": f"{parsed}/{n_code}",
                                 "code_same_as_original": f"{same}/{n_code}",
                                 "seconds_per_edit": round(seconds / max(1, len(edits)), 2)}
        print(name, json.dumps(out["measures"][name]), file=sys.stderr, flush=True)
    return out


def cost(model: DiffusionLM, variants: dict[str, SamplerSettings], edits: int) -> dict:
    """CPU and wall seconds per edit, interleaved; each variant's per-pair median ratio to the first."""
    from .bench import plan
    times: dict[str, list[tuple[float, float, int]]] = {name: [] for name in variants}
    for work in plan(model, (512,), (32,), generate=False, edits=edits).values():
        for e in work:
            for _ in range(2):
                for name, settings in variants.items():
                    cpu, wall = time.process_time(), time.perf_counter()
                    forwards = infill_forwards(model, e.text, e.span, settings)
                    times[name].append((time.process_time() - cpu, time.perf_counter() - wall, forwards))
    first = next(iter(times.values()))
    return {name: {"cpu_p50_s": round(statistics.median(t[0] for t in rows), 2),
                   "wall_p50_s": round(statistics.median(t[1] for t in rows), 2),
                   "forwards": round(statistics.mean(t[2] for t in rows), 1),
                   "cpu_ratio_p50": round(statistics.median(a[0] / b[0] for a, b in zip(rows, first)), 2),
                   "wall_ratio_p50": round(statistics.median(a[1] / b[1] for a, b in zip(rows, first)), 2)}
            for name, rows in times.items()}


def infill_forwards(model: DiffusionLM, text: str, span: Span, settings: SamplerSettings) -> int:
    canvas = build_canvas(model.codec, text, [span], model.max_length)
    return run(infill(model, canvas, settings)).forwards


def write_sheet(result: dict, folder: Path, seed: int = 0) -> None:
    rng, names = random.Random(seed), list(result["measures"])
    lines, key = ["# Blind reading", "", "For each edit, answer each lettered version on its own.", ""], {}
    for i, item in enumerate(result["edits"], 1):
        order = rng.sample(names, len(names))
        key[str(i)] = {chr(65 + j): name for j, name in enumerate(order)}
        span = Span(item["start"], item["end"])
        lines += [f"## Edit {i} ({item['kind']})", "", QUESTION[item["kind"]], "", "Original:", "",
                  passage(item["kind"], item["text"], span, item["text"][span.start:span.end]), ""]
        for j, name in enumerate(order):
            lines += [f"{chr(65 + j)}:", "", passage(item["kind"], item["text"], span, item["new"][name]), ""]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "sheet.md").write_text("\n".join(lines))
    (folder / "key.json").write_text(json.dumps(key, indent=1))
    (folder / "measures.json").write_text(json.dumps(result, indent=1))


def score(folder: Path, answers_path: Path) -> dict:
    """Per configuration and kind: edits kept / edits read."""
    key = json.loads((folder / "key.json").read_text())
    edits = json.loads((folder / "measures.json").read_text())["edits"]
    answers = json.loads(answers_path.read_text())
    kept: dict[str, dict[str, list[int]]] = {}
    for i, labels in key.items():
        kind = edits[int(i) - 1]["kind"]
        for label, name in labels.items():
            tally = kept.setdefault(name, {}).setdefault(kind, [0, 0])
            tally[0] += bool(answers.get(i, {}).get(label, False))
            tally[1] += 1
    return {name: {kind: f"{a}/{b}" for kind, (a, b) in kinds.items()} for name, kinds in kept.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m engine.tools.blind", description=__doc__.split("\n\n")[0])
    parser.add_argument("--variant", action="append", default=[],
                        help="NAME (the preset as is) or NAME:KEY=VALUE,... over --preset")
    parser.add_argument("--preset", default=DEFAULT_PRESET, choices=sorted(PRESETS))
    parser.add_argument("--prose", type=int, default=30)
    parser.add_argument("--code", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--cost", type=int, metavar="N", help="time the variants instead (N edits per kind)")
    parser.add_argument("--score", nargs=2, type=Path, metavar=("DIR", "ANSWERS"))
    args = parser.parse_args(argv)
    if args.score:
        print(json.dumps(score(*args.score), indent=1))
        return 0
    if len(args.variant) < 2 or (args.out is None and not args.cost):
        parser.error("give two or more --variant and --out or --cost (or --score DIR ANSWERS)")
    variants = dict(parse_variant(v, args.preset) if ":" in v else (v, PRESETS[args.preset]) for v in args.variant)
    torch.set_num_threads(args.threads)
    if args.cost:
        print(json.dumps(cost(load_model(None), variants, args.cost), indent=1))
        return 0
    result = measure(load_model(None), variants, args.prose, args.code)
    write_sheet(result, args.out)
    print(json.dumps(result["measures"], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
