"""`python -m engine.tools.bench`: span edits side by side, reference algorithm against Sharpen's fast paths.

Every configuration runs in this one process on the same model and the same edits, through the
one denoising loop (`engine.infill`). The reference is LLaDA's algorithm: whole canvas every
forward, one token committed per forward, most confident first.
"""
from __future__ import annotations

import argparse
import json
import logging
import resource
import statistics
import sys
import sysconfig
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from ..canvas import Span, build_canvas
from ..infill import infill
from ..model import DiffusionLM
from ..settings import PRESETS, SamplerSettings, parse_variant

log = logging.getLogger(__name__)

REFERENCE = SamplerSettings(strategy="low_confidence")
CONFIGS: dict[str, SamplerSettings] = {
    "reference": REFERENCE,
    "threshold": REFERENCE.replace(strategy="threshold"),
    "dual_cache": REFERENCE.replace(cache="dual"),
    "window": REFERENCE.replace(context_window=PRESETS["fast"].context_window or 128),
    "fast": PRESETS["fast"],
}
QUICK_CONFIGS = ("reference", "fast")


@dataclass(frozen=True)
class Edit:
    """One span edit of a workload; `answer` is the text the span held (held-out truth)."""

    workload: str
    text: str
    span: Span
    answer: str


def documents(codec, tokens: int) -> dict[str, str]:
    """A prose and a code document of about `tokens` tokens, from text every Python ships:
    the English reference docs in pydoc_data (PSF licence) and the stdlib's own source."""
    from pydoc_data.topics import topics
    prose = "\n\n".join(topics[k].strip() for k in sorted(topics))
    code = "\n\n".join((Path(sysconfig.get_paths()["stdlib"]) / name).read_text()
                       for name in ("textwrap.py", "string.py", "bisect.py"))
    return {kind: cut(codec, text, tokens) for kind, text in (("prose", prose), ("code", code))}


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


def measure(model: DiffusionLM, edits: list[Edit], settings: SamplerSettings) -> list[dict]:
    """Run every edit through the loop; per edit: forwards, seconds, the span's result."""
    results = []
    for edit in edits:
        canvas = build_canvas(model.codec, edit.text, [edit.span], model.max_length)
        started = time.perf_counter()
        elapsed = []
        for last in infill(model, canvas, settings):
            elapsed.append(last.elapsed)
        seconds = time.perf_counter() - started
        ids = canvas.span_ids(last.tokens[0], 0)
        # Per-step times after the first (the first carries the full-canvas forward / cache fill).
        later = [b - a for a, b in zip(elapsed, elapsed[1:])]
        results.append({"forwards": last.forwards, "seconds": seconds, "ids": ids, "later_steps_s": later,
                        "tokens": edit.span.length, "text": model.codec.decode(ids)})
    return results


def summarise(config: str, workload: str, edits: list[Edit], results: list[dict],
              reference: list[dict] | None, device: str) -> dict:
    ms = sorted(r["seconds"] * 1000 for r in results)
    forwards = sum(r["forwards"] for r in results)
    tokens = sum(r["tokens"] for r in results)
    truth = [e.answer for e in edits]
    row = {
        "config": config, "workload": workload, "edits": len(results),
        "forwards": forwards / len(results),
        "tokens_per_forward": tokens / forwards,
        "ms_per_forward": sum(ms) / forwards,
        "p50_ms": statistics.median(ms),
        "p90_ms": ms[min(len(ms) - 1, int(round(0.9 * (len(ms) - 1))))],
        "tokens_per_s": tokens / (sum(ms) / 1000),
        "later_step_ms": 1000 * statistics.median([t for r in results for t in r["later_steps_s"]] or [0.0]),
        "exact_match": sum(r["text"] == t for r, t in zip(results, truth)) / len(results),
        "token_accuracy": token_agreement(results, [{"ids": None, "text": t} for t in truth]),
        "agreement_with_reference": token_agreement(results, reference) if reference else 1.0,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "device": device,
    }
    if device.startswith("cuda"):
        row["peak_gpu_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return row


def token_agreement(results: list[dict], others: list[dict]) -> float:
    """Share of character positions where two results agree (ids when both have them)."""
    same = total = 0
    for a, b in zip(results, others):
        x, y = (a["ids"], b["ids"]) if b.get("ids") is not None else (a["text"], b["text"])
        total += max(len(x), len(y), 1)
        same += sum(p == q for p, q in zip(x, y))
    return same / max(total, 1)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="[%(module)s] %(message)s")  # progress to stderr
    parser = argparse.ArgumentParser(prog="python -m engine.tools.bench", description=__doc__)
    parser.add_argument("--model", help="model folder (default: the bundled model)")
    parser.add_argument("--device", help="cpu or cuda")
    parser.add_argument("--quick", action="store_true",
                        help="only the 32-token span in a ~512-token document, reference and fast")
    parser.add_argument("--edits", type=int, help="edits per workload, p50/p90 over them (3; --quick 2)")
    parser.add_argument("--configs", help="comma-separated subset of " + ",".join(CONFIGS))
    parser.add_argument("--sizes", help="document sizes in tokens, comma-separated (512,2000; --quick 512)")
    parser.add_argument("--spans", help="span lengths in tokens, comma-separated (8,32,128; --quick 32)")
    parser.add_argument("--no-generate", action="store_true", help="skip the 256-token generation workload")
    parser.add_argument("--json", action="store_true", help="print a JSON list instead of a table")
    parser.add_argument("--variant", action="append", default=[], metavar="NAME:KEY=VALUE,...",
                        help="also run the fast preset with these settings changed, as config fast+NAME "
                             "(e.g. w64:context_window=64,tokens_per_step=6); repeatable")
    args = parser.parse_args(argv)
    try:
        variants = dict(parse_variant(v, "fast") for v in args.variant)
    except ValueError as err:
        parser.error(str(err))

    names = args.configs.split(",") if args.configs else list(QUICK_CONFIGS if args.quick else CONFIGS)
    unknown = [n for n in names if n not in CONFIGS]
    if unknown or "reference" not in names:
        parser.error(f"configs must include reference and come from {', '.join(CONFIGS)}")
    names = ["reference"] + [n for n in names if n != "reference"] + list(variants)  # reference first: ratios
    sizes, spans = (parse_counts(parser, v, "--" + n, d) for v, n, d in
                    ((args.sizes, "sizes", (512,) if args.quick else (512, 2000)),
                     (args.spans, "spans", (32,) if args.quick else (8, 32, 128))))
    from ..load import load_model
    model = load_model(args.model, device=args.device)
    device = str(model.device) + (f" ({torch.cuda.get_device_name()})" if model.device.type == "cuda" else
                                  f" ({torch.get_num_threads()} threads)")
    workloads = plan(model, sizes, spans, generate=not (args.quick or args.no_generate),
                     edits=args.edits or (2 if args.quick else 3))
    rows = []
    for workload, edits in workloads.items():
        reference = None
        for name in names:
            log.info(f"{workload}: {name} ...")
            results = measure(model, edits, CONFIGS.get(name) or variants[name])
            if name == "reference":
                reference, ref_ms = results, statistics.median(r["seconds"] for r in results)
            row = summarise(name, workload, edits, results, reference, device)
            row["speedup_vs_reference"] = ref_ms * 1000 / row["p50_ms"]
            row["forward_ratio_vs_reference"] = rows_forwards(rows, workload, row)
            rows.append(row)
    print(json.dumps(rows, indent=1) if args.json else table(rows, model.label))
    return 0


def rows_forwards(rows: list[dict], workload: str, row: dict) -> float:
    ref = next((r for r in rows if r["workload"] == workload and r["config"] == "reference"), row)
    return ref["forwards"] / row["forwards"]


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
    cols = [("workload", "{}"), ("config", "{}"), ("forwards", "{:.1f}"), ("tokens_per_forward", "{:.2f}"),
            ("ms_per_forward", "{:.0f}"), ("later_step_ms", "{:.0f}"), ("p50_ms", "{:.0f}"), ("p90_ms", "{:.0f}"),
            ("tokens_per_s", "{:.1f}"), ("exact_match", "{:.2f}"), ("token_accuracy", "{:.2f}"),
            ("agreement_with_reference", "{:.2f}"), ("speedup_vs_reference", "{:.1f}x"),
            ("forward_ratio_vs_reference", "{:.1f}x"), ("peak_rss_mb", "{:.0f}")]
    lines = [f"model: {label}; device: {rows[0]['device'] if rows else '?'}",
             "| " + " | ".join(c for c, _ in cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(f.format(r[c]) for c, f in cols) + " |" for r in rows]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
