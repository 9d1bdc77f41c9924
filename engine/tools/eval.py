"""`python -m engine.tools.eval [--quick]`: the bundled model before and after adaptation, on held-out text.

1. Masked-token accuracy at 15/50/90% masking, prose and code (engine.tools.corpus held-out rows).
   adapted: bidirectional, all masked tokens predicted in one forward (what the sampler sees first).
   base AR: causal attention, masked tokens filled left to right greedily, each from its left
   context (the model's own earlier guesses included): the base model used the way it was trained.
   base AR, true left context: the same but every earlier token is the true one (an upper bound
   for any left-to-right decoder; one forward per row).
2. Infill on held-out Python functions: one single-line statement, or a block of 2-4 lines, of a
   function body masked (its true token count given). adapted: the real loop with its correction
   rounds and Python checker (engine.correct; quality preset, the reference; adapted_default: the
   page's default preset); base: greedy left-to-right decoding, causal. Exact match, share that
   parse, defect rate (the share whose block does not parse), fluency (the base model's NLL
   per token of the line(s) and 64 tokens either side, engine.tools.quality) and agreement with
   the reference's tokens.
3. Quality against denoising steps: token accuracy of a 32-token hole for 1..32 forwards.
4. The training run's held-out curve. 3 and 4 are plotted to a PNG beside the JSON (matplotlib).
"""
from __future__ import annotations

import argparse
import ast
import dataclasses
import json
import logging
import textwrap
import time
from pathlib import Path

import torch

from ..canvas import Span, build_canvas
from ..checker import checker_for
from ..correct import corrected
from ..families.bundled import ADAPTER, DefaultModel, cache_folder, load_default
from ..families.score import LlamaFluency
from ..loop import banned_bias, denoise, run
from ..settings import DEFAULT_PRESET, PRESETS, SamplerSettings, parse_variant
from . import corpus, quality

log = logging.getLogger(__name__)

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
    guess = model.logits(noisy).argmax(-1)                                       # (R, L)
    return (guess[masked] == rows[masked]).float().mean().item()


@torch.inference_mode()
def accuracy_causal_true_left(model: DefaultModel, masked: torch.Tensor, rows: torch.Tensor) -> float:
    guess = (model.logits(rows, causal=True) + banned_bias(model, model.device)).argmax(-1)
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
def accuracy_causal_greedy(model: DefaultModel, masked: torch.Tensor, rows: torch.Tensor) -> float:
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
                   "base_ar_greedy": accuracy_causal_greedy(base, masked, rows),
                   "base_ar_true_left": accuracy_causal_true_left(base, masked, rows),
                   "base_bidirectional": accuracy_bidirectional(base, noisy, masked, rows)}
            if adapted is not None:
                row["adapted"] = accuracy_bidirectional(adapted, noisy, masked, rows)
            row["seconds"] = time.perf_counter() - started
            log.info(f"masked {json.dumps(row)}")
            out.append(row)
    return out


# ---- single-line infill -----------------------------------------------------------------------

def infill_cases(count: int, lines: int = 1, max_lines: int = 30, per_file: int = 2) -> list[dict]:
    """Held-out functions (dedented source) with a run of body statements chosen: one single-line
    statement (lines=1), or consecutive statements covering 2..`lines` lines (a block).
    The span is "\n" + the lines (indentation included): SmolLM2's BPE merges a newline with the
    indentation after it, so a prefix ending in "\n" or in spaces would cut a token in two."""
    _, held = corpus.split()
    cases = []
    for doc in sorted((d for d in held if d.kind == "code"), key=lambda d: corpus.hash_share(d.name)):
        try:
            tree = ast.parse(doc.text)
        except SyntaxError:
            continue
        src = doc.text.splitlines(keepends=True)
        taken = 0
        for node in ast.walk(tree):
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) or node.decorator_list:
                continue
            if not 4 <= node.end_lineno - node.lineno + 1 <= max_lines:
                continue
            first, last = chosen_lines(node.body[1:], lines)  # body[0] may be the docstring
            if first is None:
                continue
            source = textwrap.dedent("".join(src[node.lineno - 1:node.end_lineno]))
            rows = source.splitlines(keepends=True)
            k, m = first - node.lineno, last - first + 1
            start = sum(len(x) for x in rows[:k]) - 1   # at the previous line's newline
            end = start + 1 + len("".join(rows[k:k + m]).rstrip("\n"))
            cases.append({"file": doc.name, "function": node.name, "text": source, "lines": m,
                          "start": start, "end": end, "answer": source[start:end]})
            taken += 1
            if taken == per_file:  # a few per file, so the cases spread over files
                break
        if len(cases) >= count:
            break
    return cases[:count]


def chosen_lines(body: list[ast.stmt], lines: int) -> tuple[int | None, int | None]:
    """First and last line of the statement run to mask, from the middle of `body`: one
    single-line non-expression statement, or (lines > 1) the shortest run of 2..lines lines."""
    if lines == 1:
        ones = [s for s in body if s.lineno == s.end_lineno and not isinstance(s, ast.Expr)]
        return (ones[len(ones) // 2].lineno,) * 2 if ones else (None, None)
    middle = len(body) // 2
    for i in list(range(middle, len(body))) + list(range(middle - 1, -1, -1)):
        for j in range(i, len(body)):
            span = body[j].end_lineno - body[i].lineno + 1
            if span > lines:
                break
            if span >= 2:
                return body[i].lineno, body[j].end_lineno
    return None, None


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


def infill_eval(base: DefaultModel, adapted: DefaultModel | None, count: int, lines: int,
                samplers: dict[str, SamplerSettings] | None = None) -> dict:
    """Exact match (lines compared without trailing spaces), share that parses, fluency and
    agreement with the reference (`adapted`), per model. Every model gets the true token count
    and keeps the first `case["lines"]` lines it writes. Fluency reads `base` causally as it is
    (this tool loads the base model anyway, so it is no extra copy)."""
    cases = infill_cases(count, lines)
    fluency = LlamaFluency(base)
    results = {"cases": len(cases), "lines": lines, "examples": [], "original": {
        "fluency_nll": mean(fluency.window_nll(c["text"], c["start"], c["end"]) for c in cases)}}
    runs = [("base_ar", base, None)]
    if adapted is not None:  # the reference sampler, the page's default preset, any asked for
        samplers = {"adapted": PRESETS["quality"], "adapted_default": PRESETS[DEFAULT_PRESET], **(samplers or {})}
        runs += [(name, adapted, settings) for name, settings in samplers.items()]
    spans: dict[str, list[list[int]]] = {}
    for name, model, settings in runs:
        exact = ok = 0
        nll, spans[name] = [], []
        started = time.perf_counter()
        for case in cases:
            n = len(model.codec.encode(case["answer"]))
            prefix, suffix = case["text"][:case["start"]], case["text"][case["end"]:]
            if settings is None:
                span = ar_text(model, prefix, n)
            else:  # through the correction rounds, as the page and the CLI run an edit
                canvas = build_canvas(model.codec, case["text"], [Span(case["start"], case["end"], n)],
                                      model.max_length)
                doc = run(corrected(model, canvas, settings, checker_for("python", model))).texts[0]
                span = doc[len(prefix):len(doc) - len(suffix)]
            got = "\n".join(span.removeprefix("\n").split("\n")[:case["lines"]])
            exact += same_lines(got, case["answer"].removeprefix("\n"))
            ok += quality.parses(prefix + "\n" + got + suffix)
            nll.append(fluency.window_nll(prefix + "\n" + got + suffix, len(prefix), len(prefix) + 1 + len(got)))
            spans[name].append(base.codec.encode(got))
            if sum(e["model"] == name for e in results["examples"]) < 4:
                results["examples"].append({"model": name, "truth": case["answer"].removeprefix("\n"), "got": got})
        results[name] = {"exact_match": exact / max(1, len(cases)), "parses": ok / max(1, len(cases)),
                         "defect_rate": 1 - ok / max(1, len(cases)),  # code: blocks that do not parse
                         "fluency_nll": mean(nll), "seconds": time.perf_counter() - started}
        if "adapted" in spans:
            results[name]["agreement"] = quality.agreement(spans[name], spans["adapted"])
        log.info(f"infill {lines} line(s) {name} {json.dumps(results[name])}")
    if "adapted" in spans:  # base_ar ran before the reference
        results["base_ar"]["agreement"] = quality.agreement(spans["base_ar"], spans["adapted"])
    return results


def mean(values) -> float | None:
    values = list(values)
    return sum(values) / len(values) if values else None


def same_lines(a: str, b: str) -> bool:
    return [x.rstrip() for x in a.strip("\n").split("\n")] == [x.rstrip() for x in b.strip("\n").split("\n")]


# ---- quality vs denoising steps ---------------------------------------------------------------

@torch.inference_mode()
def steps_curve(base: DefaultModel, adapted: DefaultModel, rows_per_kind: int,
                steps: tuple[int, ...], span: int = 32, side: int = 48) -> list[dict]:
    """Token accuracy of a `span`-token hole between `side` clean tokens on each side, filled by
    the real loop (quality preset) with a budget of `steps` forwards; base AR greedy (one forward
    per token, left context only) as the reference point."""
    out = []
    for kind in ("prose", "code"):
        rows = heldout_rows(base, kind, 2 * side + span, rows_per_kind, seed=11)
        holes = (torch.arange(rows.shape[1]) >= side) & (torch.arange(rows.shape[1]) < side + span)
        ar = accuracy_causal_greedy(base, holes.expand_as(rows), rows)
        for s in steps:
            started, hits = time.perf_counter(), 0
            settings = dataclasses.replace(PRESETS["quality"], steps=s)
            for row in rows:
                final = run(denoise(adapted, row, ((side, side + span),), torch.zeros_like(holes), settings))
                hits += int((final.tokens[0] == row[holes]).sum())  # the one span's slots
            out.append({"kind": kind, "steps": s, "adapted": hits / (span * rows.shape[0]), "base_ar_greedy": ar,
                        "rows": rows.shape[0], "seconds": time.perf_counter() - started})
            log.info(f"steps {json.dumps(out[-1])}")
    return out


# ---- training curve and plot ------------------------------------------------------------------

def training_curve(checkpoint: Path) -> list[dict]:
    """The held-out curve the training run recorded in its checkpoint (empty without one)."""
    if not checkpoint.is_file():
        log.info(f"no training checkpoint at {checkpoint}: no curve")
        return []
    history = torch.load(checkpoint, weights_only=False)["history"]
    return [{k: h[k] for k in ("step", "train_loss", "heldout_ce", "heldout_acc")} for h in history]


def plot(report: dict, png: Path) -> None:
    """Two panels: accuracy against denoising steps, held-out CE against training step."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 4))
    for kind, colour in (("prose", "tab:blue"), ("code", "tab:orange")):
        points = [r for r in report["steps_curve"] if r["kind"] == kind]
        if points:
            left.plot([r["steps"] for r in points], [r["adapted"] for r in points], "o-", color=colour,
                      label=f"{kind}: adapted, denoising")
            left.axhline(points[0]["base_ar_greedy"], color=colour, linestyle="--",
                         label=f"{kind}: base, left to right")
    left.set_xscale("log", base=2)
    left.set_xlabel("denoising steps for a 32-token hole"), left.set_ylabel("token accuracy")
    left.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.22), ncol=2)
    curve = [c for c in report["curve"] if c["step"] > 0]
    if curve:
        right.plot([c["step"] for c in curve], [c["heldout_ce"] for c in curve], ".-", color="tab:green")
    right.set_xlabel("training step"), right.set_ylabel("held-out masked CE")
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=100)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="[%(module)s] %(message)s")  # progress to stderr
    p = argparse.ArgumentParser(prog="python -m engine.tools.eval", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="few rows and cases (a few minutes on CPU)")
    p.add_argument("--adapter", type=Path, default=ADAPTER)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--out", type=Path, default=None, help="JSON results (default: <data>/eval.json)")
    p.add_argument("--sampler", action="append", default=[], metavar="NAME:KEY=VALUE,...",
                   help="also infill with the quality preset so changed, as quality+NAME (repeatable)")
    p.add_argument("--only-infill", action="store_true", help="skip masked accuracy and the steps curve")
    p.add_argument("--png", type=Path, default=None,
                   help="plot of quality against steps (default: next to the JSON; needs matplotlib)")
    args = p.parse_args(argv)
    try:
        samplers = dict(parse_variant(v, "quality") for v in args.sampler)
    except ValueError as err:
        p.error(str(err))
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.quick:
        length, rows, single, multi, curve_rows, steps = 64, 4, 3, 2, 1, (1, 4, 32)
    else:
        length, rows, single, multi, curve_rows, steps = 128, 16, 32, 16, 6, (1, 2, 4, 8, 16, 32)
    base = load_default(adapter=None)
    adapted = load_default(adapter=args.adapter) if args.adapter.is_file() else None
    if adapted is None:
        log.info(f"no adapter at {args.adapter}: base model only")
    data = cache_folder().parents[1]
    report = {"quick": args.quick, "adapter": str(args.adapter) if adapted else None,
              "threads": torch.get_num_threads(),
              "masked_accuracy": [] if args.only_infill else masked_accuracy(base, adapted, length, rows),
              "line_infill": infill_eval(base, adapted, single, lines=1, samplers=samplers),
              "block_infill": infill_eval(base, adapted, multi, lines=4, samplers=samplers),
              "steps_curve": steps_curve(base, adapted, curve_rows, steps) if adapted and not args.only_infill else [],
              "curve": training_curve(data / "train" / (args.adapter.stem + ".pt"))}
    out = args.out or data / ("eval-quick.json" if args.quick else "eval.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1))
    png = args.png or out.with_suffix(".png")
    try:
        plot(report, png)
        log.info(f"plot: {png}")
    except ImportError:
        log.info("matplotlib is not installed: no PNG (the figures are in the JSON)")
    print(table(report))
    return 0


def fmt(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def table(report: dict) -> str:
    lines = ["| text | mask | base AR greedy | base AR true left | base bidirectional | adapted |",
             "|---|---|---|---|---|---|"]
    for r in report["masked_accuracy"]:
        lines.append(f"| {r['kind']} | {r['mask']:.0%} | {r['base_ar_greedy']:.3f} | {r['base_ar_true_left']:.3f} "
                     f"| {r['base_bidirectional']:.3f} | {r.get('adapted', float('nan')):.3f} |")
    for key, what in (("line_infill", "single-line"), ("block_infill", "multi-line (2-4 lines)")):
        li = report[key]
        lines += ["", f"{what} infill, {li['cases']} held-out functions (fluency: base model's NLL per "
                  "token, line(s) +/- 64 tokens; agreement: tokens equal to the reference `adapted`):",
                  "| model | exact | parses | defect rate | fluency NLL | agreement |", "|---|---|---|---|---|---|"]
        lines += [f"| {name} | {fmt(r.get('exact_match'))} | {fmt(r.get('parses'))} | {fmt(r.get('defect_rate'))} "
                  f"| {fmt(r.get('fluency_nll'), 3)} | {fmt(r.get('agreement'))} |"
                  for name, r in li.items() if isinstance(r, dict)]
    if report["steps_curve"]:
        lines += ["", "| text | denoising steps (32-token hole) | adapted acc | base AR greedy acc |",
                  "|---|---|---|---|"]
        lines += [f"| {r['kind']} | {r['steps']} | {r['adapted']:.3f} | {r['base_ar_greedy']:.3f} |"
                  for r in report["steps_curve"]]
    if report["curve"]:  # about a dozen rows; the JSON and the PNG hold every point
        curve = report["curve"]
        shown = curve[::max(1, len(curve) // 12)]
        if shown[-1] is not curve[-1]:
            shown.append(curve[-1])
        lines += ["", "| step | train loss | held-out CE | held-out acc |", "|---|---|---|---|"]
        lines += [f"| {c['step']} | {c['train_loss']:.3f} | {c['heldout_ce']:.3f} | {c['heldout_acc']:.3f} |"
                  for c in shown]
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
