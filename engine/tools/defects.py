"""`python -m engine.tools.defects`: what correction rounds buy on held-out edits, and what they cost.

Two held-out sets, each edited with the page's default preset for the model (or `--preset`), read
after each correction round 0..`--rounds` (round 0 is the edit with correct_rounds 0: one run measures every count):
  code   single-line Python infill (engine.tools.eval's cases: one statement of a held-out
         function, its true token count): the share of documents that parse (`ast`), the share
         whose span came back as one line, defect rate = the share whose block does not parse.
  prose  phrases of READMEs the corpus never holds (heldout_prose.json beside this file says whence):
         defect rate = the share with a doubled word, a loop, a broken word or a line break
         (editor.defects, the checker the rounds use).
Beside them: forwards and seconds (the loop's own clock) per edit, and each edit's window fluency against the original's
(the base model's NLL per token, engine.model.Fluency: the data the page's rough_margin is chosen on).
Prints a table; `--out` writes the JSON with every edit.
"""
from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import torch

from ..canvas import Span, build_canvas
from ..checker import checker_for, editor_checks
from ..correct import corrected
from ..guide import default_preset
from ..load import add_model_flag, load_model
from ..loop import Step
from ..model import DiffusionLM, Fluency
from ..settings import PRESETS, SamplerSettings
from . import eval as evaluation
from . import quality

log = logging.getLogger(__name__)
PROSE = Path(__file__).with_name("heldout_prose.json")


def prose_cases(count: int) -> list[dict]:
    return json.loads(PROSE.read_text(encoding="utf-8"))["cases"][:count]


def edit(model: DiffusionLM, text: str, span: Span, settings: SamplerSettings,
         language: str) -> list[tuple[str, tuple[int, int], Step]]:
    """Per round 0..correct_rounds: the edited document as that round left it, where the span's new
    text lies in it, and its last step (forwards and seconds so far). A run that stopped early
    (nothing left to correct) gives its final state for the later rounds. Round 0 is exactly the
    edit with correct_rounds 0 (same seed, the rounds only follow it), so one run measures both."""
    canvas = build_canvas(model.codec, text, [span], model.max_length)
    ends: list[Step] = []
    for step in corrected(model, canvas, settings, checker_for(language, model)):
        if step.done:
            ends[step.round:] = [step]
    ends += ends[-1:] * (settings.correct_rounds + 1 - len(ends))
    return [(s.texts[0], canvas.placed(s.tokens[0])[0], s) for s in ends]


def measure(model: DiffusionLM, kind: str, cases: list[dict], settings: SamplerSettings,
            fluency: Fluency | None) -> list[dict]:
    """One row per round count 0..correct_rounds: defect rate (and for code parse rate, one-line
    rate), forwards and seconds per edit, every edit with its window NLL against the original's."""
    checks = editor_checks()
    assert checks is not None  # main refuses to run without the editor
    language = "python" if kind == "code" else "text"
    rounds = settings.correct_rounds + 1
    examples: list[list[dict]] = [[] for _ in range(rounds)]
    spent = [[0.0, 0] for _ in range(rounds)]
    for case in cases:
        n = len(model.codec.encode(case["text"][case["start"]:case["end"]])) if kind == "code" else None
        original = (case["start"], case["end"])
        base = fluency.window_nll(case["text"], *original) if fluency is not None else None
        for r, (after, (a, b), last) in enumerate(edit(model, case["text"], Span(*original, n), settings, language)):
            spent[r][0] += last.elapsed
            spent[r][1] += last.forwards
            ok = quality.parses(after) if kind == "code" else None
            wrong = ((["does not parse"] if not ok else []) if kind == "code" else
                     [x.kind for x in checks.findings("text", case["text"], after, original, (a, b))])
            worse = fluency.window_nll(after, a, b) - base if fluency is not None and base is not None else None
            examples[r].append({"before": case["text"][slice(*original)], "after": after[a:b], "defects": wrong,
                                "parses": ok, "one_line": "\n" not in after[a:b].strip("\n"),
                                "nll_vs_original": worse})
        log.info(json.dumps([e[-1] for e in examples], ensure_ascii=False))
    n = max(1, len(cases))
    rows = []
    for r in range(rounds):
        defects = sum(bool(e["defects"]) for e in examples[r])
        row = {"set": kind, "rounds": r, "cases": len(cases), "defect_rate": defects / n,
               "forwards_per_edit": spent[r][1] / n, "seconds_per_edit": spent[r][0] / n, "examples": examples[r]}
        if kind == "code":
            row.update(parse_rate=sum(e["parses"] for e in examples[r]) / n,
                       one_line_rate=sum(e["one_line"] for e in examples[r]) / n)
        rows.append(row)
    return rows


def table(rows: list[dict]) -> str:
    lines = ["| set | correct_rounds | cases | parses | one line | defect rate | forwards/edit | s/edit |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        parse = f"{r['parse_rate']:.0%}" if "parse_rate" in r else "-"
        line = f"{r['one_line_rate']:.0%}" if "one_line_rate" in r else "-"
        lines.append(f"| {r['set']} | {r['rounds']} | {r['cases']} | {parse} | {line} | {r['defect_rate']:.0%} "
                     f"| {r['forwards_per_edit']:.1f} | {r['seconds_per_edit']:.1f} |")
    return "\n".join(lines)


def rounds_parser(prog: str, doc: str | None, rounds: int) -> argparse.ArgumentParser:
    """The flags of a tool that measures after each correction round: --rounds, --model, --threads,
    --preset, --out (the caller adds its own)."""
    logging.basicConfig(level=logging.INFO, format="[%(module)s] %(message)s")
    p = argparse.ArgumentParser(prog=prog, description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=rounds, help="measure after each of 0..this many correction "
                   "rounds (default: %(default)s)")
    add_model_flag(p)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--preset", choices=sorted(PRESETS),
                   help="the preset to edit with (default: the model's own, as on the page)")
    p.add_argument("--out", type=Path, default=None, help="JSON results with every edit")
    return p


def rounds_setup(p: argparse.ArgumentParser, argv: list[str] | None) -> tuple[argparse.Namespace, DiffusionLM,
                                                                               SamplerSettings]:
    """The flags read, the model loaded (CPU) and the settings: the preset with correct_rounds = --rounds."""
    args = p.parse_args(argv)
    if editor_checks() is None:
        p.error("this tool needs the editor package (tree-sitter) for its checks")
    if args.threads:
        torch.set_num_threads(args.threads)
    model = load_model(args.model, device="cpu")
    return args, model, PRESETS[args.preset or default_preset(model)].replace(correct_rounds=args.rounds)


def report(rows: list[dict], out: Path | None, shown: str) -> int:
    """Every row to `out` (JSON) when asked, the table to stdout."""
    if out:
        out.write_text(json.dumps(rows, indent=1, ensure_ascii=False))
    print(shown)
    return 0


def main(argv: list[str] | None = None) -> int:
    p = rounds_parser("python -m engine.tools.defects", __doc__, 2)
    p.add_argument("--cases", type=int, default=40, help="edits per set (default: %(default)s)")
    p.add_argument("--sets", default="code,prose", help="code, prose or both (default: %(default)s)")
    args, model, settings = rounds_setup(p, argv)
    sets = {"code": evaluation.infill_cases(args.cases, lines=1), "prose": prose_cases(args.cases)}
    rows = []
    for kind in args.sets.split(","):
        rows += measure(model, kind, sets[kind], settings, model.fluency())
    return report(rows, args.out, table(rows))


if __name__ == "__main__":
    raise SystemExit(main())
