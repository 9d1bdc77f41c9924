"""`python -m engine.tools.holes`: JSON templates with three holes, filled in one run each: how often
the result is valid JSON after each correction round 0..`--rounds` (the parse checker's, editor.checks
for "json"), with forwards and seconds per template.

Round 0 is exactly the fill with correct_rounds 0 (same seed; the rounds only follow it), so one run
measures both. Prints a table; `--out` writes every filled document.
"""
from __future__ import annotations

import json
import logging
from typing import Any

from ..canvas import build_canvas
from ..checker import checker_for
from ..correct import corrected
from ..loop import Step
from ..model import DiffusionLM
from ..settings import SamplerSettings
from ..template import holes
from .defects import report, rounds_parser, rounds_setup

log = logging.getLogger(__name__)

# Three keys each: a name-like string, a number and a word or phrase, as forms and API payloads hold.
KEYS = [("name", "age", "city"), ("title", "year", "author"), ("product", "price", "color"),
        ("user", "id", "email"), ("country", "population", "capital"), ("language", "version", "license"),
        ("host", "port", "protocol"), ("animal", "legs", "habitat"), ("song", "length", "artist"),
        ("team", "wins", "coach"), ("fruit", "calories", "season"), ("planet", "moons", "star"),
        ("course", "credits", "teacher"), ("book", "pages", "genre"), ("car", "seats", "brand"),
        ("recipe", "minutes", "cuisine"), ("city", "elevation", "river"), ("package", "downloads", "owner"),
        ("movie", "rating", "director"), ("river", "length_km", "sea")]


def templates(count: int) -> list[str]:
    """`count` one-line JSON objects, each with three holes: a quoted string, a number, a quoted string."""
    return ['{{"{}": "⟨⟩", "{}": ⟨2⟩, "{}": "⟨⟩"}}\n'.format(*keys) for keys in KEYS[:count]]


def fill(model: DiffusionLM, template: str, settings: SamplerSettings) -> list[Step]:
    """The last step after each round 0..correct_rounds (a run that stopped early repeats its end)."""
    canvas = build_canvas(model.codec, template, holes(template), model.max_length)
    ends: list[Step] = []
    for step in corrected(model, canvas, settings, checker_for("json", model)):
        if step.done:
            ends[step.round:] = [step]
    return ends + ends[-1:] * (settings.correct_rounds + 1 - len(ends))


def valid(text: str) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return False
    return True


def measure(model: DiffusionLM, cases: list[str], settings: SamplerSettings) -> list[dict]:
    rounds = settings.correct_rounds + 1
    rows: list[dict[str, Any]] = [{"rounds": r, "cases": len(cases), "valid": 0, "forwards": 0, "seconds": 0.0,
                                   "examples": []} for r in range(rounds)]
    for i, template in enumerate(cases):
        for row, last in zip(rows, fill(model, template, settings.replace(seed=i))):
            ok = valid(last.texts[0])
            row["valid"] += ok
            row["forwards"] += last.forwards
            row["seconds"] += last.elapsed
            row["examples"].append({"template": template, "filled": last.texts[0], "valid": ok})
        log.info(json.dumps([r["examples"][-1]["filled"] for r in rows], ensure_ascii=False))
    return rows


def table(rows: list[dict]) -> str:
    lines = ["| correct_rounds | templates | valid JSON | forwards/template | s/template |", "|---|---|---|---|---|"]
    for r in rows:
        n = max(1, r["cases"])
        lines.append(f"| {r['rounds']} | {r['cases']} | {r['valid']}/{r['cases']} ({r['valid'] / n:.0%}) "
                     f"| {r['forwards'] / n:.1f} | {r['seconds'] / n:.1f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = rounds_parser("python -m engine.tools.holes", __doc__, 3)
    p.add_argument("--cases", type=int, default=20, help=f"templates, at most {len(KEYS)} (default: %(default)s)")
    args, model, settings = rounds_setup(p, argv)
    rows = measure(model, templates(args.cases), settings)
    return report(rows, args.out, table(rows))


if __name__ == "__main__":
    raise SystemExit(main())
