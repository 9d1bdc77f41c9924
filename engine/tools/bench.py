"""`python -m engine.tools.bench`: span edits side by side, reference algorithm against Sharpen's fast paths.

Every configuration runs in this one process on the same model and the same edits, through the
one denoising loop (`engine.infill`, with its correction rounds: engine.correct). The reference is
LLaDA's algorithm: whole canvas every forward, one token committed per forward, most confident
first, no correction; `default` is the page's preset. Beside every speed figure, quality
(engine.tools.quality): the base model's causal NLL per token of the edited window (fluency), the
share of code edits whose block still parses, the defect rate (code that does not parse; prose
with a doubled word, a loop, a broken word or an inserted line break) and agreement with the
reference's tokens.
"""
from __future__ import annotations

import argparse
import ast
import json
import logging
import resource
import statistics
import sys
import time
from dataclasses import dataclass

import torch

from ..canvas import Span, build_canvas
from ..checker import checker_for, editor_checks
from ..codec import SIDE
from ..correct import corrected
from ..load import add_load_flags
from ..model import DiffusionLM, Fluency
from ..settings import DEFAULT_PRESET, PRESETS, SamplerSettings, parse_variant
from . import corpus, quality

log = logging.getLogger(__name__)

# LLaDA's algorithm as published: no correction rounds, no scope constraints.
REFERENCE = SamplerSettings(strategy="low_confidence", cache="none", correct_rounds=0, scope="off")
CONFIGS: dict[str, SamplerSettings] = {
    "reference": REFERENCE,
    "default": PRESETS[DEFAULT_PRESET],
    "threshold": REFERENCE.replace(strategy="threshold"),
    "dual_cache": REFERENCE.replace(cache="dual"),
    "window": REFERENCE.replace(context_window=128),
    "fast": PRESETS["fast"],
    "four_per_forward": PRESETS["four_per_forward"],
}
QUICK_CONFIGS = ("reference", "default")
FLUENCY_BUDGET = 0.05  # a config keeps the reference's quality within 5% fluency NLL...
PARSE_BUDGET = 0.05    # ...and 5 parse points


@dataclass(frozen=True)
class Edit:
    """One span edit of a workload; `answer` is the text the span held (held-out truth)."""

    workload: str
    text: str
    span: Span
    answer: str

    @property
    def code(self) -> bool:
        return self.workload.startswith("code")

    @property
    def language(self) -> str:
        return "python" if self.code else "text"


def documents(codec, tokens: int) -> dict[str, str]:
    """A prose and a code document of about `tokens` tokens, from text every Python ships and the
    corpus holds out: the English reference docs in pydoc_data and the stdlib's own source (PSF
    licence). The code is whole top-level functions and classes, so that it parses: an edit that
    breaks parsing shows."""
    prose = "\n\n".join(doc.text for doc in corpus.prose_documents())
    return {"prose": cut(codec, prose, tokens), "code": whole_definitions(codec, tokens)}


def whole_definitions(codec, tokens: int) -> str:
    """Top-level functions and classes of corpus.BENCH_FILES in order, those that fit in `tokens`."""
    code, used = [], 0
    for name in corpus.BENCH_FILES:
        source = (corpus.stdlib_root() / name).read_text()
        for node in ast.parse(source).body:
            if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
                text = (ast.get_source_segment(source, node) or "") + "\n\n\n"
                size = len(codec.encode(text))
                if used + size <= tokens:
                    code.append(text)
                    used += size
    return "".join(code)


def cut(codec, text: str, tokens: int) -> str:
    """The start of `text` that is `tokens` tokens long (ended at a line break where possible)."""
    head = codec.decode(codec.encode(text[: tokens * 8])[:tokens])
    return head[: head.rfind("\n") + 1] or head


def span_edits(codec, workload: str, text: str, span_tokens: int, count: int) -> list[Edit]:
    """`count` spans of `span_tokens` tokens spread around the middle of `text`."""
    ids = codec.encode(text)
    edits = []
    for k in range(count):
        at = int(len(ids) * (0.35 + 0.3 * k / max(1, count - 1))) - span_tokens // 2
        start, end = len(codec.decode(ids[:at])), len(codec.decode(ids[:at + span_tokens]))
        edits.append(Edit(workload, text, Span(start, end, length=span_tokens), text[start:end]))
    return edits


def generation_edits(codec, text: str, new_tokens: int, count: int) -> list[Edit]:
    """Plain generation: `new_tokens` after a prompt (the prompt's true continuation is the answer)."""
    ids = codec.encode(text)
    edits = []
    for k in range(count):
        at = len(ids) // 4 + k * 40
        prompt = codec.decode(ids[:at])
        answer = codec.decode(ids[at:at + new_tokens])
        edits.append(Edit(f"generate-{new_tokens}", prompt, Span(len(prompt), len(prompt), new_tokens), answer))
    return edits


def measure(model: DiffusionLM, edits: list[Edit], settings: SamplerSettings,
            fluency: Fluency | None) -> list[dict]:
    """Run every edit through the loop; per edit: forwards, seconds, the span's result and its
    quality (timed apart: scoring is not part of the edit)."""
    results = []
    for edit in edits:
        canvas = build_canvas(model.codec, edit.text, [edit.span], model.max_length)
        checker = checker_for(edit.language, model)  # made before the clock starts (it is cached)
        started, cpu = time.perf_counter(), time.process_time()
        elapsed = []
        for last in corrected(model, canvas, settings, checker):
            elapsed.append(last.elapsed)
        seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
        # Per-step times after the first (the first carries the full-canvas forward / cache fill).
        later = [b - a for a, b in zip(elapsed, elapsed[1:])]
        results.append({"forwards": last.forwards, "seconds": seconds, "cpu_seconds": cpu, "later_steps_s": later,
                        "tokens": edit.span.length, **judge(model, edit, last.texts[0], fluency)})
    return results


def judge(model: DiffusionLM, edit: Edit, document: str, fluency: Fluency | None) -> dict:
    """The span's new text and ids, the window's fluency, (code) whether its block parses, and
    whether it has a defect: code whose block does not parse; prose with a doubled word, a loop,
    a broken word or an inserted line break (editor.defects; None without the editor)."""
    start, after = edit.span.start, len(edit.text) - edit.span.end   # text outside the span is kept
    end = len(document) - after
    text = document[start:end]
    parses = quality.edit_parses(edit.text, document, start, edit.span.end) if edit.code else None
    checks = editor_checks()
    defect = (not parses if edit.code else None if checks is None else
              bool(checks.findings("text", edit.text, document, (edit.span.start, edit.span.end), (start, end))))
    return {"text": text, "ids": model.codec.encode(text),
            "fluency_nll": fluency.window_nll(document, start, end) if fluency else None,
            "parses": parses, "defect": defect}


def summarise(config: str, workload: str, edits: list[Edit], results: list[dict],
              reference: list[dict] | None, device: str, codec) -> dict:
    ms = sorted(r["seconds"] * 1000 for r in results)
    forwards = sum(r["forwards"] for r in results)
    tokens = sum(r["tokens"] for r in results)
    truth = [e.answer for e in edits]
    ids = [r["ids"] for r in results]
    row = {
        "config": config, "workload": workload, "edits": len(results),
        "forwards": forwards / len(results),
        "tokens_per_forward": tokens / forwards,
        "ms_per_forward": sum(ms) / forwards,
        "p50_ms": statistics.median(ms),
        "p90_ms": ms[min(len(ms) - 1, int(round(0.9 * (len(ms) - 1))))],
        # CPU seconds of the process: with --threads 1, the edit's cost on an idle core even while
        # other jobs share the machine (wall time then includes waiting for a core)
        "cpu_p50_ms": statistics.median(r["cpu_seconds"] * 1000 for r in results),
        "tokens_per_s": tokens / (sum(ms) / 1000),
        "later_step_ms": 1000 * statistics.median([t for r in results for t in r["later_steps_s"]] or [0.0]),
        "fluency_nll": mean(r["fluency_nll"] for r in results),
        "parse_rate": mean(r["parses"] for r in results),
        "defect_rate": mean(r["defect"] for r in results),
        "agreement": quality.agreement(ids, [r["ids"] for r in reference or results]),
        "exact_match": sum(r["text"] == t for r, t in zip(results, truth)) / len(results),
        "token_accuracy": quality.agreement(ids, [codec.encode(t) for t in truth]),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "device": device,
    }
    if device.startswith("cuda"):
        row["peak_gpu_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return row


def mean(values) -> float | None:
    """Mean of the values that are not None (None when none is: prose has no parse rate)."""
    known = [float(v) for v in values if v is not None]
    return sum(known) / len(known) if known else None


def against_reference(row: dict, ref: dict) -> dict:
    """Quality beside the reference's: relative fluency NLL, parse points, and whether both stay
    within the budget presets are chosen under (5% NLL, 5 parse points)."""
    nll = (row["fluency_nll"] / ref["fluency_nll"] - 1) if row["fluency_nll"] and ref["fluency_nll"] else None
    both_parsed = row["parse_rate"] is not None and ref["parse_rate"] is not None
    parse = row["parse_rate"] - ref["parse_rate"] if both_parsed else None
    ok = (nll is None or nll <= FLUENCY_BUDGET) and (parse is None or parse >= -PARSE_BUDGET)
    return {"fluency_vs_reference": nll, "parse_vs_reference": parse, "within_quality_budget": ok}


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="[%(module)s] %(message)s")  # progress to stderr
    parser = argparse.ArgumentParser(prog="python -m engine.tools.bench", description=__doc__)
    add_load_flags(parser)
    parser.add_argument("--quick", action="store_true",
                        help="only the 32-token span in a ~512-token document, reference and fast")
    parser.add_argument("--edits", type=int, help="edits per workload, p50/p90 over them (3; --quick 2)")
    parser.add_argument("--configs", help="comma-separated subset of " + ",".join(CONFIGS))
    parser.add_argument("--sizes", help="document sizes in tokens, comma-separated (512,2000; --quick 512)")
    parser.add_argument("--spans", help="span lengths in tokens, comma-separated (8,32,128; --quick 32)")
    parser.add_argument("--no-generate", action="store_true", help="skip the 256-token generation workload")
    parser.add_argument("--kinds", default="prose,code", help="document kinds to edit (prose,code)")
    parser.add_argument("--json", action="store_true", help="print a JSON list instead of a table")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--variant", action="append", default=[], metavar="NAME:KEY=VALUE,...",
                        help="also run the fast preset with these settings changed, as config fast+NAME "
                             "(e.g. w64:context_window=64,tokens_per_step=6); repeatable")
    args = parser.parse_args(argv)
    try:
        variants = dict(parse_variant(v, "fast") for v in args.variant)
    except ValueError as err:
        parser.error(str(err))
    if args.threads:
        torch.set_num_threads(args.threads)

    names = args.configs.split(",") if args.configs else list(QUICK_CONFIGS if args.quick else CONFIGS)
    unknown = [n for n in names if n not in CONFIGS]
    if unknown or "reference" not in names:
        parser.error(f"configs must include reference and come from {', '.join(CONFIGS)}")
    names = ["reference"] + [n for n in names if n != "reference"] + list(variants)  # reference first: ratios
    sizes, spans = (parse_counts(parser, v, "--" + n, d) for v, n, d in
                    ((args.sizes, "sizes", (512,) if args.quick else (512, 2000)),
                     (args.spans, "spans", (32,) if args.quick else (8, 32, 128))))
    from ..load import load_model
    model = load_model(args.model, device=args.device, dtype=args.dtype, compile=args.compile,
                       quantize=args.quantize)
    fluency = model.fluency()
    device = str(model.device) + (f" ({torch.cuda.get_device_name()})" if model.device.type == "cuda" else
                                  f" ({torch.get_num_threads()} threads)")
    workloads = plan(model, sizes, spans, generate=not (args.quick or args.no_generate),
                     edits=args.edits or (2 if args.quick else 3))
    kinds = args.kinds.split(",") + ["generate"]
    workloads = {w: e for w, e in workloads.items() if w.split("/")[0].split("-")[0] in kinds}
    rows = []
    for workload, edits in workloads.items():
        reference, ref_row = None, None
        original = mean(fluency.window_nll(e.text, e.span.start, e.span.end) for e in edits) if fluency else None
        for name in names:
            log.info(f"{workload}: {name} ...")
            results = measure(model, edits, CONFIGS.get(name) or variants[name], fluency)
            reference = reference or results
            row = summarise(name, workload, edits, results, reference, device, model.codec)
            ref_row = ref_row or row
            row.update(against_reference(row, ref_row), fluency_nll_original=original,
                       speedup_vs_reference=ref_row["p50_ms"] / row["p50_ms"],
                       cpu_speedup_vs_reference=ref_row["cpu_p50_ms"] / row["cpu_p50_ms"],
                       forward_ratio_vs_reference=ref_row["forwards"] / row["forwards"])
            rows.append(row)
    print(json.dumps(rows, indent=1) if args.json else table(rows, model.label))
    return 0


def parse_counts(parser: argparse.ArgumentParser, value: str | None, flag: str,
                 default: tuple[int, ...]) -> tuple[int, ...]:
    if value is None:
        return default
    try:
        counts = tuple(int(v) for v in value.split(","))
    except ValueError:
        counts = ()
    if not counts or min(counts) < 1:
        parser.error(f"{flag} takes whole numbers >= 1 separated by commas, got {value!r}")
    return counts


def plan(model: DiffusionLM, sizes: tuple[int, ...], spans: tuple[int, ...], generate: bool,
         edits: int) -> dict[str, list[Edit]]:
    codec = model.codec
    out: dict[str, list[Edit]] = {}
    for size in sizes:
        for kind, text in documents(codec, size).items():
            for n in spans:
                out[f"{kind}-{size}/span-{n}"] = span_edits(codec, f"{kind}-{size}", text, n, edits)
    if generate:
        out["generate-256"] = generation_edits(codec, documents(codec, 2000)["prose"], 256, edits)
    return out


def table(rows: list[dict], label: str) -> str:
    cols = [("workload", "{}"), ("config", "{}"), ("forwards", "{:.1f}"), ("later_step_ms", "{:.0f}"),
            ("p50_ms", "{:,.0f}"), ("p90_ms", "{:,.0f}"), ("cpu_p50_ms", "{:,.0f}"),
            ("cpu_speedup_vs_reference", "{:.1f}x"),
            ("fluency_nll", "{:.3f}"), ("fluency_vs_reference", "{:+.1%}"), ("parse_rate", "{:.2f}"),
            ("defect_rate", "{:.2f}"), ("agreement", "{:.2f}"), ("within_quality_budget", "{}"),
            ("exact_match", "{:.2f}"), ("token_accuracy", "{:.2f}"), ("peak_rss_mb", "{:.0f}")]
    lines = [f"model: {label}; device: {rows[0]['device'] if rows else '?'}; fluency = base model's NLL "
             f"per token of span +/- {SIDE} tokens (original text: "
             + ", ".join(sorted({f"{r['workload']} {cell(r['fluency_nll_original'], '{:.3f}')}" for r in rows})) + ")",
             "| " + " | ".join(c for c, _ in cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(cell(r.get(c), f) for c, f in cols) + " |" for r in rows]
    return "\n".join(lines)


def cell(value, form: str) -> str:
    return "-" if value is None else form.format(value)


if __name__ == "__main__":
    sys.exit(main())
