"""`python -m engine.eval [--quick]`: the bundled model before and after adaptation, on held-out text.

1. Masked-token accuracy at 15/50/90% masking, prose and code (engine.corpus held-out rows).
   adapted: bidirectional, all masked tokens predicted in one forward (what the sampler sees first).
   base AR: causal attention, masked tokens filled left to right greedily, each from its left
   context (the model's own earlier guesses included): the base model used the way it was trained.
   base AR, true left context: the same but every earlier token is the true one (an upper bound
   for any left-to-right decoder; one forward per row).
2. Single-line infill on held-out Python functions: one line of a function body masked (its true
   token count given). adapted: engine.infill with the real loop (quality preset); base: greedy
   left-to-right decoding, causal. Exact match of the line, and share of results that parse.
3. Quality vs training step: the held-out curve the training run recorded (PNG with matplotlib).
"""
from __future__ import annotations

import argparse
import ast
import json
import sys
import textwrap
import time
from pathlib import Path

import torch

from . import corpus
from .canvas import Span
from .default_model import ADAPTER, DefaultModel, cache_folder, load_default
from .infill import infill_text
from .loop import banned_bias
from .settings import PRESETS

RATIOS = (0.15, 0.5, 0.9)


def heldout_rows(model: DefaultModel, kind: str, length: int, count: int, seed: int = 7) -> torch.Tensor:
    """(count, length) held-out token rows of one kind, picked deterministically."""
    _, held = corpus.split()
    rows = corpus.chunks([d for d in held if d.kind == kind], model.codec.encode, length, model.start_id)
    g = torch.Generator().manual_seed(seed)
    return rows[torch.randperm(rows.shape[0], generator=g)[:count]]


def mask_rows(rows: torch.Tensor, ratio: float, mask_id: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    masked = torch.rand(rows.shape, generator=g) < ratio                         # (R, L)
    masked[:, 0] |= ~masked.any(-1)  # at least one per row
    return torch.where(masked, torch.full_like(rows, mask_id), rows), masked


@torch.inference_mode()
def accuracy_bidirectional(model: DefaultModel, noisy: torch.Tensor, masked: torch.Tensor,
                           rows: torch.Tensor) -> float:
    model.causal = False
    guess = model.logits(noisy).argmax(-1)                                       # (R, L)
    return (guess[masked] == rows[masked]).float().mean().item()


@torch.inference_mode()
def accuracy_causal_true_left(model: DefaultModel, masked: torch.Tensor, rows: torch.Tensor) -> float:
    model.causal = True
    guess = (model.logits(rows) + banned_bias(model, model.device)).argmax(-1)
    model.causal = False
    return (guess[masked] == rows[masked]).float().mean().item()


class CausalDecoder:
    """Left-to-right decoding of the base net with a key/value cache (what an AR model does).
    The first `feed` may take many tokens (one causal forward); later ones take one token, which
    attends to every cached key and itself: exactly causal attention, at one token's cost."""

    def __init__(self, model: DefaultModel, batch: int):
        self.net, self.kv, self.length = model.net, None, 0
        start = torch.full((batch, 1), model.start_id, dtype=torch.long, device=model.device)
        self.pending = start  # net input not yet run (the shifted head's start token first)

    @torch.inference_mode()
    def next_logits(self) -> torch.Tensor:
        """(B, V) scores of the next canvas token; runs what was fed since the last call."""
        x, n = self.pending, self.pending.shape[1]
        positions = torch.arange(self.length, self.length + n, device=x.device)
        kvs: list = []
        if self.kv is None:
            h = self.net.hidden(x, positions, causal=True, kv_out=kvs)
        else:
            if n != 1:
                raise ValueError("after the first call, feed one token at a time")
            h = self.net.hidden(x, positions, contexts=self.kv, kv_out=kvs)
        self.kv = kvs if self.kv is None else [(torch.cat([k0, k], 2), torch.cat([v0, v], 2))
                                              for (k0, v0), (k, v) in zip(self.kv, kvs)]
        self.length += n
        self.pending = x[:, :0]
        return self.net.project(h[:, -1])

    def feed(self, ids: torch.Tensor) -> None:
        """Append (B, n) canvas tokens."""
        self.pending = torch.cat([self.pending, ids], dim=1)


@torch.inference_mode()
def accuracy_causal_greedy(model: DefaultModel, noisy: torch.Tensor, masked: torch.Tensor,
                           rows: torch.Tensor) -> float:
    """Left to right: each masked slot gets the argmax given the (partly guessed) prefix."""
    ban = banned_bias(model, model.device)
    decoder, filled = CausalDecoder(model, rows.shape[0]), rows.clone()
    for p in range(rows.shape[1]):
        guess = (decoder.next_logits() + ban).argmax(-1)                         # (R,)
        filled[:, p] = torch.where(masked[:, p], guess, rows[:, p])
        decoder.feed(filled[:, p:p + 1])
    return (filled[masked] == rows[masked]).float().mean().item()


def masked_accuracy(base: DefaultModel, adapted: DefaultModel | None, length: int, count: int) -> list[dict]:
    out = []
    for kind in ("prose", "code"):
        rows = heldout_rows(base, kind, length, count)
        for i, ratio in enumerate(RATIOS):
            noisy, masked = mask_rows(rows, ratio, base.mask_id, seed=100 + i)
            started = time.perf_counter()
            row = {"kind": kind, "mask": ratio, "rows": rows.shape[0], "length": length,
                   "masked_tokens": int(masked.sum()),
                   "base_ar_greedy": accuracy_causal_greedy(base, noisy, masked, rows),
                   "base_ar_true_left": accuracy_causal_true_left(base, masked, rows),
                   "base_bidirectional": accuracy_bidirectional(base, noisy, masked, rows)}
            if adapted is not None:
                row["adapted"] = accuracy_bidirectional(adapted, noisy, masked, rows)
            row["seconds"] = time.perf_counter() - started
            print(f"[eval] masked {json.dumps(row)}", file=sys.stderr, flush=True)
            out.append(row)
    return out


# ---- single-line infill -----------------------------------------------------------------------

def infill_cases(count: int, max_lines: int = 30) -> list[dict]:
    """Held-out functions (dedented source) with one single-line statement of their body chosen.
    The span is "\n" + the line (indentation included): SmolLM2's BPE merges a newline with the
    indentation after it, so a prefix ending in "\n" or in spaces would cut a token in two."""
    _, held = corpus.split()
    cases = []
    for doc in sorted((d for d in held if d.kind == "code"), key=lambda d: corpus.hash_share(d.name)):
        try:
            tree = ast.parse(doc.text)
        except SyntaxError:
            continue
        lines = doc.text.splitlines(keepends=True)
        for node in ast.walk(tree):
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) or node.decorator_list:
                continue
            if not 4 <= node.end_lineno - node.lineno + 1 <= max_lines:
                continue
            body = [s for s in node.body[1:] if s.lineno == s.end_lineno
                    and not isinstance(s, ast.Expr)] or []
            if not body:
                continue
            stmt = body[len(body) // 2]
            source = textwrap.dedent("".join(lines[node.lineno - 1:node.end_lineno]))
            src_lines = source.splitlines(keepends=True)
            k = stmt.lineno - node.lineno
            start = sum(len(x) for x in src_lines[:k]) - 1   # at the previous line's newline
            end = start + 1 + len(src_lines[k].rstrip("\n"))
            cases.append({"file": doc.name, "function": node.name, "text": source,
                          "start": start, "end": end, "answer": source[start:end]})
            break  # one function per file, so the cases spread over files
        if len(cases) >= count:
            break
    return cases


@torch.inference_mode()
def ar_text(model: DefaultModel, prefix: str, tokens: int) -> str:
    """Greedy causal decoding of `tokens` tokens after `prefix`."""
    ban = banned_bias(model, model.device)
    decoder, out = CausalDecoder(model, 1), []
    decoder.feed(torch.tensor([model.codec.encode(prefix)], dtype=torch.long))
    for _ in range(tokens):
        nxt = (decoder.next_logits() + ban).argmax(-1)                           # (1,)
        out.append(int(nxt))
        decoder.feed(nxt.view(1, 1))
    return model.codec.decode(out)


def parses(text: str) -> bool:
    try:
        ast.parse(text)
        return True
    except SyntaxError:
        return False


def line_infill(base: DefaultModel, adapted: DefaultModel | None, count: int) -> dict:
    cases = infill_cases(count)
    results = {"cases": len(cases), "examples": []}
    for name, model in (("base_ar", base), ("adapted", adapted)):
        if model is None:
            continue
        exact = ok = 0
        started = time.perf_counter()
        for case in cases:
            n = len(model.codec.encode(case["answer"]))
            prefix, suffix = case["text"][:case["start"]], case["text"][case["end"]:]
            if name == "base_ar":
                span = ar_text(model, prefix, n)
            else:
                doc = infill_text(model, case["text"], [Span(case["start"], case["end"], n)], PRESETS["quality"])
                span = doc[len(prefix):len(doc) - len(suffix)]
            line = span.removeprefix("\n").split("\n", 1)[0]
            doc = prefix + "\n" + line + suffix
            exact += line.strip() == case["answer"].strip()
            ok += parses(doc)
            if sum(e["model"] == name for e in results["examples"]) < 4:
                results["examples"].append({"model": name, "truth": case["answer"].removeprefix("\n"), "got": line})
        results[name] = {"exact_match": exact / max(1, len(cases)), "parses": ok / max(1, len(cases)),
                         "seconds": time.perf_counter() - started}
        print(f"[eval] infill {name} {json.dumps(results[name])}", file=sys.stderr, flush=True)
    return results


# ---- quality vs steps -------------------------------------------------------------------------

def training_curve(checkpoint: Path, png: Path | None) -> list[dict]:
    if not checkpoint.is_file():
        print(f"[eval] no training checkpoint at {checkpoint}: no curve", file=sys.stderr)
        return []
    history = torch.load(checkpoint, weights_only=False)["history"]
    if png is not None:
        try:
            import matplotlib
            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
        except ImportError:
            print("[eval] matplotlib is not installed: no PNG (the curve is in the JSON)", file=sys.stderr)
        else:
            fig, ax = plt.subplots(figsize=(5, 3))
            ax.plot([h["step"] for h in history], [h["heldout_acc"] for h in history], marker="o")
            ax.set_xlabel("training step"), ax.set_ylabel("held-out masked accuracy")
            fig.tight_layout()
            fig.savefig(png, dpi=100)
    return [{k: h[k] for k in ("step", "train_loss", "heldout_ce", "heldout_acc")} for h in history]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m engine.eval", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="few rows and cases (a few minutes on CPU)")
    p.add_argument("--adapter", type=Path, default=ADAPTER)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--out", type=Path, default=None, help="JSON results (default: <data>/eval.json)")
    p.add_argument("--png", type=Path, default=None, help="quality-vs-steps plot (needs matplotlib)")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    length, rows, cases = (64, 4, 3) if args.quick else (128, 16, 16)
    base = load_default(adapter=None)
    adapted = load_default(adapter=args.adapter) if args.adapter.is_file() else None
    if adapted is None:
        print(f"[eval] no adapter at {args.adapter}: base model only", file=sys.stderr)
    data = cache_folder().parents[1]
    report = {"quick": args.quick, "adapter": str(args.adapter) if adapted else None,
              "threads": torch.get_num_threads(),
              "masked_accuracy": masked_accuracy(base, adapted, length, rows),
              "line_infill": line_infill(base, adapted, cases),
              "curve": training_curve(data / "train" / (args.adapter.stem + ".pt"), args.png)}
    out = args.out or data / ("eval-quick.json" if args.quick else "eval.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1))
    print(table(report))
    return 0


def table(report: dict) -> str:
    lines = ["| text | mask | base AR greedy | base AR true left | base bidirectional | adapted |",
             "|---|---|---|---|---|---|"]
    for r in report["masked_accuracy"]:
        lines.append(f"| {r['kind']} | {r['mask']:.0%} | {r['base_ar_greedy']:.3f} | {r['base_ar_true_left']:.3f} "
                     f"| {r['base_bidirectional']:.3f} | {r.get('adapted', float('nan')):.3f} |")
    li = report["line_infill"]
    lines += ["", f"single-line infill, {li['cases']} held-out functions:", "| model | exact | parses |", "|---|---|---|"]
    for name in ("base_ar", "adapted"):
        if name in li:
            lines.append(f"| {name} | {li[name]['exact_match']:.2f} | {li[name]['parses']:.2f} |")
    if report["curve"]:
        lines += ["", "| step | train loss | held-out CE | held-out acc |", "|---|---|---|---|"]
        lines += [f"| {c['step']} | {c['train_loss']:.3f} | {c['heldout_ce']:.3f} | {c['heldout_acc']:.3f} |"
                  for c in report["curve"]]
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
