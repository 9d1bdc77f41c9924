"""`python -m engine.tools.servebench`: what the HTTP service adds to an edit, and what concurrent
edits gain from sharing forwards (docs/PERFORMANCE.md, "Engine service")."""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import threading
import time
from pathlib import Path

import httpx
import torch

from ..canvas import Span, build_canvas
from ..infill import infill
from ..load import add_model_flag, load_model
from ..loop import run
from ..settings import DEFAULT_PRESET, PRESETS
from .service import metrics

DOCUMENT = Path(__file__).resolve().parents[1] / "loop.py"  # ~8 k characters of real code


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    add_model_flag(parser)
    parser.add_argument("--tokens", type=int, default=32, help="span length in tokens (default: %(default)s)")
    parser.add_argument("--chars", type=int, default=2000, help="document length in characters (default: %(default)s)")
    parser.add_argument("--concurrent", type=int, default=4, help="edits sent at once (default: %(default)s)")
    parser.add_argument("--preset", choices=sorted(PRESETS), default=DEFAULT_PRESET)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default: %(default)s)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    model = load_model(args.model, device="cpu")
    text = DOCUMENT.read_text()[:args.chars]
    at = text.index("\n", len(text) // 2) + 1  # an insertion at a line start mid-document
    body = {"text": text, "spans": [[at, at, args.tokens]]}
    settings = PRESETS[args.preset]
    canvas = build_canvas(model.codec, text, [Span(at, at, args.tokens)], model.max_length)
    rows: dict[str, list[tuple[float, float]]] = {"in process": [], "service, streamed": [], "service, plain": []}
    forwards = run(infill(model, canvas, settings)).forwards  # warm-up, and the forwards per edit

    from ..serve.app import create_app
    from ..serve.command import in_thread
    with in_thread(create_app(model, defaults=settings, max_batch=args.concurrent)) as url:
        line_bytes = []
        for _ in range(args.repeats):
            rows["in process"].append(costed(lambda: run(infill(model, canvas, settings))))
            rows["service, plain"].append(costed(lambda: httpx.post(f"{url}/v1/edits", json=body, timeout=600)))
            rows["service, streamed"].append(costed(lambda: line_bytes.extend(stream(url, body))))
        one_by_one = timed(lambda: [httpx.post(f"{url}/v1/edits", json={**body, "seed": s}, timeout=600)
                                    for s in range(args.concurrent)])
        before = metrics(url)
        together = timed(lambda: concurrently(url, body, args.concurrent))
        after = metrics(url)
    report(args, model.label, forwards, rows, statistics.mean(line_bytes), one_by_one, together, before, after)


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def costed(fn) -> tuple[float, float]:
    """(wall, CPU) seconds of `fn`. The service runs in a thread of this process, so the process's
    CPU time counts the server's work and the client's alike, whatever else shares the machine."""
    cpu = time.process_time()
    wall = timed(fn)
    return wall, time.process_time() - cpu


def stream(url: str, body: dict) -> list[int]:
    """Stream one edit to its end; the size of each step line."""
    with httpx.stream("POST", f"{url}/v1/edits", json={**body, "stream": True}, timeout=600) as response:
        sizes = [len(line) for line in response.iter_lines()]
    return sizes[:-1]


def concurrently(url: str, body: dict, n: int) -> None:
    threads = [threading.Thread(target=httpx.post, args=(f"{url}/v1/edits",),
                                kwargs={"json": {**body, "seed": s}, "timeout": 600}) for s in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def report(args, label, forwards, rows, line_bytes, one_by_one, together, before, after) -> None:
    def delta(name: str) -> float:
        return after[name] - before[name]
    batched = delta("sharpen_forwards_total")
    out = {"model": label, "preset": args.preset, "tokens": args.tokens, "chars": args.chars,
           "threads": args.threads, "forwards_per_edit": forwards,
           "median_ms": {name: round(1000 * statistics.median(w for w, _ in v), 1) for name, v in rows.items()},
           "median_cpu_ms": {name: round(1000 * statistics.median(c for _, c in v), 1) for name, v in rows.items()},
           "step_line_bytes": round(line_bytes),
           f"{args.concurrent}_edits_one_by_one_s": round(one_by_one, 2),
           f"{args.concurrent}_edits_at_once_s": round(together, 2),
           "forwards_at_once": int(batched),
           "mean_batch": round(delta("sharpen_batch_size_sum") / max(delta("sharpen_batch_size_count"), 1), 2)}
    sys.stdout.write(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
