"""`python -m engine.tools.batching`: N concurrent edits through the scheduler, batched against one
at a time (`max_batch=1`), on the same model and edits, in one process.

Edits are the benchmark's (engine.tools.bench): spans around the middle of a prose and a code
document of about `--tokens` tokens. Prints wall time, edits/s, per-edit latency (submit to last
step), the process's CPU seconds (less sensitive than wall time to whatever else shares the
machine) and whether every edit came back with the same text in both modes.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import threading
import time

import torch

from ..canvas import Canvas, build_canvas
from ..load import load_model
from ..model import DiffusionLM
from ..scheduler import ForwardReport, Job, Scheduler
from ..settings import DEFAULT_PRESET, PRESETS, SamplerSettings
from .bench import documents, span_edits


def edits(model: DiffusionLM, count: int, tokens: int, span: int) -> list[Canvas]:
    """`count` canvases, alternating prose and code, each with one span of `span` tokens."""
    docs = documents(model.codec, tokens)
    each = {name: span_edits(model.codec, name, text, span, -(-count // 2)) for name, text in docs.items()}
    mixed = [e for pair in zip(each["prose"], each["code"]) for e in pair][:count]
    return [build_canvas(model.codec, e.text, [e.span], model.max_length) for e in mixed]


def serve(model: DiffusionLM, canvases: list[Canvas], settings: SamplerSettings, max_batch: int) -> dict:
    """Submit every canvas at once; wall time, latencies, forwards and the final texts."""
    reports: list[ForwardReport] = []
    done, texts = [0.0] * len(canvases), [""] * len(canvases)

    def finish(i: int, job: Job) -> None:  # one reader per edit, as each client would be
        texts[i] = list(job)[-1].texts[0]
        done[i] = time.perf_counter() - start

    start, cpu = time.perf_counter(), time.process_time()
    with Scheduler(model, max_batch=max_batch, max_queue=len(canvases), on_forward=reports.append) as scheduler:
        readers = [threading.Thread(target=finish, args=(i, scheduler.submit(canvas, settings)))
                   for i, canvas in enumerate(canvases)]
        for reader in readers:
            reader.start()
        for reader in readers:
            reader.join()
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    done.sort()
    return {"max_batch": max_batch, "wall_s": round(wall, 2), "edits_per_s": round(len(canvases) / wall, 3),
            "cpu_s": round(cpu, 1),
            "p50_s": round(statistics.median(done), 2), "max_s": round(done[-1], 2),
            "forwards": len(reports), "mean_batch": round(statistics.mean(r.batch_size for r in reports), 2),
            "texts": texts}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=8)
    parser.add_argument("--max-batch", type=int, default=8)
    parser.add_argument("--tokens", type=int, default=512, help="document length in tokens")
    parser.add_argument("--span", type=int, default=32, help="span length in tokens")
    parser.add_argument("--preset", default=DEFAULT_PRESET, choices=sorted(PRESETS))
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    model = load_model(None)
    canvases = edits(model, args.jobs, args.tokens, args.span)
    settings = PRESETS[args.preset]
    rows = [serve(model, canvases, settings, 1), serve(model, canvases, settings, args.max_batch)]
    same = rows[0].pop("texts") == rows[1].pop("texts")
    summary = {"jobs": args.jobs, "canvas_tokens": [c.length for c in canvases], "preset": args.preset,
               "threads": torch.get_num_threads(), "same_texts": same,
               "speedup": round(rows[0]["wall_s"] / rows[1]["wall_s"], 2),
               "cpu_speedup": round(rows[0]["cpu_s"] / rows[1]["cpu_s"], 2), "runs": rows}
    sys.stdout.write(json.dumps(summary, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
