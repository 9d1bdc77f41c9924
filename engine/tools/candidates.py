"""`python -m engine.tools.candidates`: how often N candidates are N distinct texts, without and with
drawing repeats again (engine/distinct.py), on held-out prose phrases (engine.tools.edges).

    python -m engine.tools.candidates [--spans 10] [--candidates 3] [--preset fast] [--threads 1]
"""
from __future__ import annotations

import argparse
import functools
import json
import sys
import time

import torch

from ..canvas import build_canvas
from ..distinct import distinct
from ..infill import infill
from ..load import add_model_flag, load_model
from ..loop import run
from ..settings import DEFAULT_PRESET, PRESETS
from .edges import prose_edits


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m engine.tools.candidates", description=__doc__)
    parser.add_argument("--spans", type=int, default=10)
    parser.add_argument("--candidates", type=int, default=3)
    parser.add_argument("--candidate-temperature", type=float, default=PRESETS[DEFAULT_PRESET].candidate_temperature)
    parser.add_argument("--preset", default=DEFAULT_PRESET, choices=sorted(PRESETS))
    parser.add_argument("--threads", type=int)
    add_model_flag(parser)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    model = load_model(args.model)
    settings = PRESETS[args.preset].replace(candidates=args.candidates,
                                            candidate_temperature=args.candidate_temperature)
    report = {}
    for name, redraws in (("once", 0), ("distinct", 3)):
        started, full, forwards, rows = time.perf_counter(), 0, 0, []
        for text, span in prose_edits(args.spans):
            canvas = build_canvas(model.codec, text, [span], model.max_length)
            last = run(distinct(functools.partial(infill, model, canvas), settings, redraws))
            pieces = [t[span.start:len(t) - (len(text) - span.end)] for t in last.texts]
            full += len(set(pieces)) == args.candidates
            forwards += last.forwards
            rows.append({"original": text[span.start:span.end], "candidates": pieces})
        report[name] = {"all_distinct": full, "runs": args.spans, "forwards": forwards / args.spans,
                        "seconds": time.perf_counter() - started, "examples": rows}
        print(f"{name}: {full}/{args.spans} runs with {args.candidates} distinct texts, "
              f"{forwards / args.spans:.1f} forwards per run, {report[name]['seconds']:.0f} s", file=sys.stderr)
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
