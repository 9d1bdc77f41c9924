"""The page's own timings on the bundled model, through the handlers the page calls (no browser):

1. first step: seconds from the key press (the handler called) to the first drawn denoising step, "keep"
   (with the guide over cached context, the denoiser's draft: engine/guide.py), and to the first commit;
2. "auto" against "keep": wall time, CPU time and rows through the net (blocks, head) of a whole
   regeneration each way, same phrases, one at a time, each as a fresh edit (--repeated: not);
3. one queue: 4 sessions (4 users) regenerating at once against the same 4 one after another.

    python scripts/page_timings.py [--phrases 4] [--threads 1]

Held-out prose phrases (engine.tools.edges.prose_edits), the page's default preset for the model, one candidate.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from editor.history import History  # noqa: E402
from engine import PRESETS, load_model  # noqa: E402
from engine.guide import default_preset  # noqa: E402
from engine.tools.edges import prose_edits  # noqa: E402
from page import runs  # noqa: E402
from page.dial import dial_values  # noqa: E402
from page.document_editor import EditorValue  # noqa: E402
from page.state import NEW_DOC, Page  # noqa: E402

PRESET: list[str] = []  # --preset, else the page's default for the model
FRESH = True  # --repeated clears it
ROWS = [0, 0]  # rows through the net's blocks, through its head (count_rows)


def regenerate(page: Page, text: str, a: int, b: int, mode: str, user: str = "one") -> dict:
    """One regeneration through `runs.run_action` as the page calls it: seconds to the first drawn
    step, to the first step that commits a token, and to the end."""
    request = SimpleNamespace(username=user, session_hash=user)
    remembered = getattr(page.model.causal_view(), "remembered", None)  # engine.families.causal
    if FRESH and remembered is not None:  # each edit as if its text were new: no read kept from the one before
        remembered.forget()
    dial = dial_values(PRESETS[PRESET[0] if PRESET else default_preset(page.model)])
    started, cpu, first, commit, first_cpu = time.perf_counter(), time.process_time(), None, None, None
    rows = ROWS.copy()
    # inputs as demo.py wires them: ..., length mode, N, the constraint row (starts, ends, includes), heatmap, dial
    for out in runs.run_action(page, "selection", request, None, EditorValue(text, a, b), NEW_DOC, "text", mode, 8, "",
                               "", "", False, *dial):
        run = out[2]
        if run is not None and not isinstance(run, dict) and run.steps:
            if first is None:  # CPU seconds too: steadier than wall time on a shared machine
                first, first_cpu = time.perf_counter() - started, time.process_time() - cpu
            commit = commit or (time.perf_counter() - started if run.steps[-1].committed.any() else None)
    return {"first_step_s": first, "first_step_cpu_s": first_cpu, "first_commit_s": commit,
            "total_s": time.perf_counter() - started, "cpu_s": time.process_time() - cpu,
            "rows": ROWS[0] - rows[0], "head_rows": ROWS[1] - rows[1]}


def count_rows(net: torch.nn.Module) -> None:
    """ROWS: rows through the net's blocks (its final norm sees each once) and through its head: a
    cost that the machine's load does not change."""
    width = net.norm.weight.shape[0]

    def blocks(module: torch.nn.Module, inputs: tuple, out: torch.Tensor) -> None:
        ROWS[0] += out.numel() // width
    net.norm.register_forward_hook(blocks)
    project = net.project

    def head(h: torch.Tensor) -> torch.Tensor:
        ROWS[1] += h.numel() // width
        return project(h)
    net.project = head


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--phrases", type=int, default=4)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--preset", choices=sorted(PRESETS), help="default: the page's own for the model")
    parser.add_argument("--session-tokens", type=int,
                        help="the sessions edit spans of this many tokens in the benchmark's 512-token prose "
                             "document instead of the phrases")
    parser.add_argument("--repeated", action="store_true",
                        help="keep the causal reads remembered from the edit before (by default each edit starts "
                             "fresh: the timings of auto and keep would otherwise share the same phrase's reads)")
    args = parser.parse_args()
    global FRESH
    FRESH = not args.repeated
    PRESET.extend([args.preset] if args.preset else [])
    torch.set_num_threads(args.threads)
    page = Page.for_model(load_model(None), History("sqlite://"))
    count_rows(page.model.net)  # type: ignore[attr-defined]
    edits = [(text, span.start, span.end) for text, span in prose_edits(args.phrases, seed=1)]
    regenerate(page, *edits[0], "keep")  # warm up (the first forward allocates)
    report: dict = {"load_before": os.getloadavg(), "threads": args.threads,
                    "preset": args.preset or default_preset(page.model)}
    keep = [regenerate(page, *e, "keep") for e in edits]
    auto = [regenerate(page, *e, "auto") for e in edits]
    report["first_step_keep_s"] = [round(r["first_step_s"], 3) for r in keep]
    report["first_step_keep_cpu_s"] = [round(r["first_step_cpu_s"], 3) for r in keep]
    report["first_commit_keep_s"] = [round(r["first_commit_s"], 3) for r in keep]
    report["first_step_auto_s"] = [round(r["first_step_s"], 3) for r in auto]
    report["keep_s"] = [round(r["total_s"], 2) for r in keep]
    report["auto_s"] = [round(r["total_s"], 2) for r in auto]
    report["auto_over_keep"] = [round(a["total_s"] / k["total_s"], 2) for a, k in zip(auto, keep)]
    report["auto_over_keep_median"] = statistics.median(report["auto_over_keep"])
    # CPU seconds of the process (every thread): steadier than wall time on a shared machine
    report["auto_over_keep_cpu"] = [round(a["cpu_s"] / k["cpu_s"], 2) for a, k in zip(auto, keep)]
    report["auto_over_keep_cpu_median"] = statistics.median(report["auto_over_keep_cpu"])
    report["keep_cpu_s"] = round(sum(r["cpu_s"] for r in keep), 2)
    report["auto_cpu_s"] = round(sum(r["cpu_s"] for r in auto), 2)
    report["keep_rows"] = [sum(r[k] for r in keep) for k in ("rows", "head_rows")]
    report["auto_rows"] = [sum(r[k] for r in auto) for k in ("rows", "head_rows")]
    if args.session_tokens:
        from engine.tools import bench
        doc = bench.documents(page.model.codec, 512)["prose"]
        spans = bench.span_edits(page.model.codec, "prose-512", doc, args.session_tokens, len(edits))
        edits = [(doc, e.span.start, e.span.end) for e in spans]
        report["session_tokens"] = args.session_tokens
    started, cpu = time.perf_counter(), time.process_time()
    for i, e in enumerate(edits):
        regenerate(page, *e, "keep", user=f"user{i}")
    one_by_one, one_by_one_cpu = time.perf_counter() - started, time.process_time() - cpu
    threads = [threading.Thread(target=regenerate, args=(page, *e, "keep", f"user{i}")) for i, e in enumerate(edits)]
    started, cpu = time.perf_counter(), time.process_time()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    together, together_cpu = time.perf_counter() - started, time.process_time() - cpu
    report.update(sessions=len(edits), one_after_another_s=round(one_by_one, 2), at_once_s=round(together, 2),
                  at_once_speedup=round(one_by_one / together, 2), one_after_another_cpu_s=round(one_by_one_cpu, 2),
                  at_once_cpu_s=round(together_cpu, 2), load_after=os.getloadavg())
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
