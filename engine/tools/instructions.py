"""`python -m engine.tools.instructions`: how often an instruction edit does what it was told.

Held-out cases (heldout_instructions.json beside this file): a sentence of a README paragraph that
the training corpus never holds, an instruction ("Make it a question.", "Mention pip.", "Use the
past tense.") and a check a script can apply to the sentence's new text. Each sentence is
regenerated at its own token count under each condition: without the instruction, then with it
at each guidance scale (engine/instruct.py). The hit rate is the share of new sentences that pass
their check; beside it forwards and seconds per edit. Prints a table (docs/PERFORMANCE.md);
`--out` writes every edit.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import re
from collections.abc import Callable
from pathlib import Path

import torch

from ..canvas import Span, build_canvas
from ..checker import checker_for, editor_checks
from ..correct import corrected
from ..guide import default_preset
from ..instruct import with_instruction
from ..load import add_model_flag, load_model
from ..loop import run
from ..model import DiffusionLM
from ..settings import PRESETS, SamplerSettings

HERE = Path(__file__).parent
CASES, PARAGRAPHS = HERE / "heldout_instructions.json", HERE / "heldout_prose.json"
PAST = re.compile(r"\b(was|were|had|did)\b", re.I)  # not "used to": "is used to describe" is no past
NEGATIVE = re.compile(r"\b(not|no|never|cannot|nothing|none)\b|n't\b", re.I)
FRENCH = re.compile(r"\b(le|la|les|est|et|un|une|des|du|de|peut|être|dans|pour|avec|sont|il|qui)\b", re.I)


def _upper(new: str, old: str) -> bool:
    letters = [c for c in new if c.isalpha()]
    return len(letters) >= 5 and sum(c.isupper() for c in letters) >= 0.8 * len(letters)


# check name -> (new sentence, original sentence, argument) -> did it do what it was told
CHECKS: dict[str, Callable[[str, str, str], bool]] = {
    "question": lambda new, old, _: new.rstrip().endswith("?"),
    "exclaims": lambda new, old, _: new.rstrip().endswith("!"),
    "mentions": lambda new, old, word: word.lower() in new.lower(),
    "starts": lambda new, old, word: new.lstrip().startswith(word),
    "digit": lambda new, old, _: any(c.isdigit() for c in new),
    "upper": lambda new, old, _: _upper(new, old),
    "past": lambda new, old, _: len(PAST.findall(new)) > len(PAST.findall(old)),
    "negative": lambda new, old, _: len(NEGATIVE.findall(new)) > len(NEGATIVE.findall(old)),
    "french": lambda new, old, _: len(FRENCH.findall(new)) >= 3,
    "commas": lambda new, old, _: new.count(",") >= 2 + old.count(","),
}


def passes(check: list[str], new: str, old: str) -> bool:
    name, *arg = check
    return CHECKS[name](new, old, arg[0] if arg else "")


def cases(count: int | None = None) -> list[dict]:
    """Each case with its paragraph and the sentence's [start, end) in it (matched across line breaks)."""
    paragraphs = list(dict.fromkeys(c["text"] for c in json.loads(PARAGRAPHS.read_text("utf-8"))["cases"]))
    out = []
    for case in json.loads(CASES.read_text("utf-8"))["cases"][:count]:
        pattern = re.compile(r"\s+".join(map(re.escape, case["sentence"].split())))
        found = next((m for m in map(pattern.search, paragraphs) if m), None)
        if found is None:
            raise ValueError(f"no held-out paragraph holds {case['sentence']!r}")
        out.append({**case, "text": found.string, "start": found.start(), "end": found.end()})
    return out


def edit(model: DiffusionLM, case: dict, settings: SamplerSettings, instruction: str | None) -> dict:
    """The case's sentence regenerated (at its own token count), as the CLI runs an edit."""
    text, span = case["text"], Span(case["start"], case["end"])
    canvas = with_instruction(build_canvas(model.codec, text, [span], model.max_length), instruction,
                              model.max_length)
    last = run(corrected(model, canvas, settings, checker_for("text", model)))
    a, b = canvas.placed(last.tokens[0])[0]
    new, checks = last.texts[0][a:b], editor_checks()
    found = checks.findings("text", text, last.texts[0], (span.start, span.end), (a, b)) if checks else []
    return {"new": new, "hit": passes(case["check"], new, text[span.start:span.end]),
            "defects": sorted({f.kind for f in found}), "forwards": last.forwards, "seconds": last.elapsed}


def measure(model: DiffusionLM, todo: list[dict], settings: SamplerSettings,
            scales: list[float], out: Path | None = None) -> dict[str, list[dict]]:
    """Every case under each condition: "none" (no instruction), then "w=<scale>" per guidance scale;
    written to `out` after each case (a long run can be read before it ends)."""
    conditions: list[tuple[str, str | None, float]] = [("none", None, 0.0)]
    conditions += [(f"w={w:g}", "yes", w) for w in scales]
    rows: dict[str, list[dict]] = {name: [] for name, _, _ in conditions}
    for i, case in enumerate(todo):
        for name, instructed, w in conditions:
            done = edit(model, case, settings.replace(guidance=w), case["instruction"] if instructed else None)
            rows[name].append(done)
            mark = 'HIT ' if done['hit'] else 'miss'
            print(f"[{i + 1}/{len(todo)}] {name:6} {done['seconds']:5.1f}s {mark} {done['defects'] or ''} "
                  f"{case['instruction']!r}: {done['new']!r}", flush=True)
        if out is not None:
            out.write_text(json.dumps({"settings": dataclasses.asdict(settings), "cases": todo[:i + 1], "rows": rows},
                                      indent=1, ensure_ascii=False))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_flag(parser)
    parser.add_argument("--preset", choices=sorted(PRESETS), help="default: the model's default preset")
    parser.add_argument("--guidance", type=float, nargs="+", default=[0.0, 1.0, 2.0])
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                        help="a sampler setting over the preset (JSON value), e.g. correct_rounds=0")
    parser.add_argument("--count", type=int, help="the first COUNT cases (default: all)")
    parser.add_argument("--skip", type=int, default=0, help="leave out the first SKIP of them (runs in parts)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", help="write every edit as JSON here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = load_model(args.model)
    preset = args.preset or default_preset(model)
    todo = cases(args.count)[args.skip:]
    for case in todo:
        old = case["text"][case["start"]:case["end"]]
        assert not passes(case["check"], old, old), f"the original already passes: {old!r}"
    changes = dict(item.split("=", 1) for item in args.set)
    settings = PRESETS[preset].with_values({k: json.loads(v) for k, v in changes.items()})
    rows = measure(model, todo, settings, args.guidance, Path(args.out) if args.out else None)
    print(f"\n{model.label}, preset {preset} {changes or ''}, {len(todo)} held-out instructions")
    print(table(rows))


def table(rows: dict[str, list[dict]]) -> str:
    """Per condition: hits, rate, hits without a defect (editor.defects), forwards and seconds per edit."""
    lines = [f"{'condition':10} {'hits':>6} {'rate':>6} {'hit, no defect':>15} {'forwards':>9} {'s/edit':>7}"]
    for name, got in rows.items():
        hits, clean, n = sum(r["hit"] for r in got), sum(r["hit"] and not r["defects"] for r in got), len(got)
        lines.append(f"{name:10} {hits:>3}/{n:<2} {hits / n:>6.0%} {clean:>11}/{n:<3} "
                     f"{sum(r['forwards'] for r in got) / n:>9.1f} {sum(r['seconds'] for r in got) / n:>7.1f}")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
