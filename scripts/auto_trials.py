"""What "auto" length chooses on held-out phrases, and whether its trials could be cut short.

    python scripts/auto_trials.py [--cases 45] [--threads 1] [--out trials.json]

Each held-out prose phrase (engine/tools/heldout_prose.json) is regenerated at every length "auto"
tries (engine.length.lengths_around), alone, through the page's engine with the page's preset and
correction rounds; each result is scored as the page picks (`page.trials.pick`: the base model's window
NLL, normalised by length). Printed: which offset from the phrase's own length wins, and how often a
rule that keeps only some trials after their first forward (ranked by the denoiser's own confidence
then) would have kept the winner, with the mean loss in score when it does not (docs/PERFORMANCE.md).
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from editor.history import History  # noqa: E402
from engine import PRESETS, Span, build_canvas, load_model  # noqa: E402
from engine.codec import SIDE, window  # noqa: E402
from engine.guide import default_preset  # noqa: E402
from engine.length import length_score, lengths_around  # noqa: E402
from engine.tools.defects import prose_cases  # noqa: E402
from page.state import Page  # noqa: E402


def trials(page: Page, case: dict) -> dict:
    """Every length's result for one phrase: its first step's confidences, its text and its score."""
    model, text, a, b = page.model, case["text"], case["start"], case["end"]
    keep, settings, out = len(model.codec.encode(text[a:b])), PRESETS[default_preset(model)], []
    for length in lengths_around(keep):
        canvas = build_canvas(model.codec, text, [Span(a, b, length)], model.max_length)
        steps = list(page.engine_client.steps(canvas, settings, "text"))
        document = steps[-1].texts[0]
        end = len(document) - (len(text) - b)
        assert page.score is not None
        nll, tokens = page.score(document, a, end), len(model.codec.encode(window(model.codec, document, a, end, SIDE)))
        out.append({"length": length, "first_confidence": steps[0].confidence[0].tolist(), "text": document[a:end],
                    "score": length_score(nll, tokens), "forwards": steps[-1].forwards})
    return {"phrase": text[a:b], "keep": keep, "trials": out}


def kept_rule(rows: list[dict], survivors: int, key) -> tuple[int, float]:
    """How often keeping the `survivors` trials with the lowest `key` (first step only) keeps the winner,
    and the mean score lost where it does not."""
    same, lost = 0, 0.0
    for row in rows:
        ts = row["trials"]
        best = min(ts, key=lambda t: t["score"])
        chosen = min(sorted(ts, key=key)[:survivors], key=lambda t: t["score"])
        same += chosen is best
        lost += chosen["score"] - best["score"]
    return same, lost / max(1, len(rows))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", type=int, default=45)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    page = Page.for_model(load_model(None), History("sqlite://"))
    rows = [trials(page, case) for case in prose_cases(args.cases)]
    if args.out:
        args.out.write_text(json.dumps(rows, indent=1, ensure_ascii=False))
    wins = Counter(min(r["trials"], key=lambda t: t["score"])["length"] - r["keep"] for r in rows)
    print("winning offset from the phrase's own length:", dict(sorted(wins.items())))

    def unsure(t: dict) -> float:  # mean -log confidence of the first forward's guesses
        return sum(-math.log(max(c, 1e-9)) for c in t["first_confidence"]) / len(t["first_confidence"])

    def last_unsure(t: dict) -> float:  # how unsure the first forward was of the span's last slot
        return -math.log(max(t["first_confidence"][-1], 1e-9))
    for name, key in (("mean confidence", unsure), ("last slot's confidence", last_unsure)):
        for survivors in (1, 2, 3):
            same, lost = kept_rule(rows, survivors, key)
            print(f"keep {survivors} by {name}: winner kept {same}/{len(rows)}, mean score lost {lost:.2f}")
    own = sum(min(r["trials"], key=lambda t: t["score"])["length"] == r["keep"] for r in rows)
    print(f"the phrase's own length wins {own}/{len(rows)}")

if __name__ == "__main__":
    main()
