"""`python -m engine.tools.defects`: what correction rounds buy on held-out edits, and what they cost.

Two held-out sets, each edited with the page's default preset at every `--rounds` value:
  code   single-line Python infill (engine.tools.eval's cases: one statement of a held-out
         function, its true token count): the share of documents that parse (`ast`), the share
         whose span came back as one line, defect rate = the share whose block does not parse.
  prose  phrases of READMEs the corpus never holds (heldout_prose.json beside this file says whence):
         defect rate = the share with a doubled word, a loop, a broken word or a line break
         (editor.defects, the checker the rounds use).
Beside them: forwards and seconds per edit, and each edit's window fluency against the original's
(the base model's NLL per token, engine.score: the data the page's rough_margin is chosen on).
Prints a table; `--out` writes the JSON with every edit.
"""
from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import torch

from ..canvas import Span, build_canvas
from ..checker import checker_for, editor_checks
from ..correct import corrected
from ..load import load_model
from ..loop import run
from ..model import DiffusionLM
from ..score import Fluency, fluency_for
from ..settings import DEFAULT_PRESET, PRESETS, SamplerSettings
from . import eval as evaluation
from . import quality

log = logging.getLogger(__name__)
PROSE = Path(__file__).with_name("heldout_prose.json")


def prose_cases(count: int) -> list[dict]:
    return json.loads(PROSE.read_text(encoding="utf-8"))["cases"][:count]


def edit(model: DiffusionLM, text: str, span: Span, settings: SamplerSettings,
         language: str) -> tuple[str, tuple[int, int], int]:
    """The edited document, where the span's new text lies in it, and the forwards it took."""
    canvas = build_canvas(model.codec, text, [span], model.max_length)
    last = run(corrected(model, canvas, settings, checker_for(language, model)))
    return last.texts[0], canvas.placed(last.tokens[0])[0], last.forwards


def measure(model: DiffusionLM, kind: str, cases: list[dict], settings: SamplerSettings,
            fluency: Fluency | None) -> dict:
    """One row: defect rate (and for code parse rate, one-line rate), forwards, seconds, examples."""
    checks = editor_checks()
    assert checks is not None  # main refuses to run without the editor
    language = "python" if kind == "code" else "text"
    bad = parsed = one_line = forwards = 0
    examples = []
    started = time.perf_counter()
    for case in cases:
        n = len(model.codec.encode(case["text"][case["start"]:case["end"]])) if kind == "code" else None
        span = Span(case["start"], case["end"], n)
        after, (a, b), f = edit(model, case["text"], span, settings, language)
        forwards += f
        if kind == "code":
            ok = quality.parses(after)
            parsed += ok
            one_line += "\n" not in after[a:b].strip("\n")
            wrong = [] if ok else ["does not parse"]
        else:
            wrong = [x.kind for x in checks.findings("text", case["text"], after, (case["start"], case["end"]), (a, b))]
        bad += bool(wrong)
        worse = (fluency.window_nll(after, a, b) - fluency.window_nll(case["text"], case["start"], case["end"])
                 if fluency is not None else None)
        examples.append({"before": case["text"][case["start"]:case["end"]], "after": after[a:b], "defects": wrong,
                         "nll_vs_original": worse})
        log.info(json.dumps(examples[-1], ensure_ascii=False))
    n = max(1, len(cases))
    row = {"set": kind, "rounds": settings.correct_rounds, "cases": len(cases), "defect_rate": bad / n,
           "forwards_per_edit": forwards / n, "seconds_per_edit": (time.perf_counter() - started) / n,
           "examples": examples}
    if kind == "code":
        row.update(parse_rate=parsed / n, one_line_rate=one_line / n)
    log.info(json.dumps({k: v for k, v in row.items() if k != "examples"}))
    return row


def table(rows: list[dict]) -> str:
    lines = ["| set | correct_rounds | cases | parses | one line | defect rate | forwards/edit | s/edit |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        parse = f"{r['parse_rate']:.0%}" if "parse_rate" in r else "-"
        line = f"{r['one_line_rate']:.0%}" if "one_line_rate" in r else "-"
        lines.append(f"| {r['set']} | {r['rounds']} | {r['cases']} | {parse} | {line} | {r['defect_rate']:.0%} "
                     f"| {r['forwards_per_edit']:.1f} | {r['seconds_per_edit']:.1f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="[%(module)s] %(message)s")
    p = argparse.ArgumentParser(prog="python -m engine.tools.defects", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", default="0,2", help="correct_rounds values to compare (default: %(default)s)")
    p.add_argument("--cases", type=int, default=40, help="edits per set (default: %(default)s)")
    p.add_argument("--sets", default="code,prose", help="code, prose or both (default: %(default)s)")
    p.add_argument("--model", help="model folder (default: the bundled model)")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--out", type=Path, default=None, help="JSON results with every edit")
    args = p.parse_args(argv)
    if editor_checks() is None:
        p.error("this tool needs the editor package (tree-sitter) for its checks")
    if args.threads:
        torch.set_num_threads(args.threads)
    model = load_model(args.model, device="cpu")
    sets = {"code": evaluation.infill_cases(args.cases, lines=1), "prose": prose_cases(args.cases)}
    rows = []
    for kind in args.sets.split(","):
        for r in (int(x) for x in args.rounds.split(",")):
            rows.append(measure(model, kind, sets[kind], PRESETS[DEFAULT_PRESET].replace(correct_rounds=r),
                                fluency_for(model)))
    if args.out:
        args.out.write_text(json.dumps(rows, indent=1, ensure_ascii=False))
    print(table(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
