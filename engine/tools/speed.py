"""`python -m engine.tools.speed`: ms per forward of Sharpen's loop on a random model of a real model's
shape, against the weight-read limit, beside an autoregressive peer of the same size.

Speed does not depend on the weights for a fixed schedule, so no checkpoint is needed: the net has
LLaDA-8B's shape (or a toy one) with random weights, made on the device in the run's dtype. One edit
is a `span`-token span in the middle of a `tokens`-token document through the one denoising loop
(engine.loop.denoise), `batch` candidates at once:
  reference      LLaDA's algorithm (PRESETS["quality"]): whole canvas, one token per forward
  fast           the page's default preset (DualCache, window, threshold commits)
  two_apart      two slots per forward, never neighbours (a fixed schedule: span / 2 forwards)
  +compiled      the same with the forwards compiled in length buckets (engine/families/compiled.py)
  ar             transformers' LlamaForCausalLM of the same shape: generate() of `span` tokens after
                 a `tokens - span` prompt, static KV cache (+compiled: transformers' own compile)
Random weights are never confident, so the threshold rule commits about one token per forward and
every config runs about `span` forwards: compare ms per forward. An edit on a trained model takes
its forwards (docs/PERFORMANCE.md) x ms per forward.
Limits: a forward reads every weight but the embedding table (it gathers a few rows of it), so no
forward beats those bytes / HBM bandwidth; nor 2 x block parameters x tokens / peak FLOP/s.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

from ..codec import TextCodec
from ..families.compiled import BucketedRows, compile_model
from ..families.llada import llada_shape
from ..families.llama import LlamaDiffusionLM
from ..families.llama_net import KV, LlamaNet
from ..families.rows import Context, EagerRows
from ..load import DTYPES, add_device_flag, pick_device
from ..loop import denoise
from ..memory import ModelSize, check, plan
from ..quantize import QUANTIZE, quantize_model
from ..settings import DEFAULT_PRESET, PRESETS, SamplerSettings

# GSAI-ML/LLaDA-8B-Instruct's config.json (the keys llada_shape reads), and a toy of the same layout.
LLADA_8B = {"d_model": 4096, "n_layers": 32, "n_heads": 32, "n_kv_heads": 32, "mlp_hidden_size": 12288,
            "vocab_size": 126464, "embedding_size": 126464, "max_sequence_length": 4096,
            "rope_theta": 500000.0, "mask_token_id": 126336, "eos_token_id": 126081}
TOY = {"d_model": 64, "n_layers": 2, "n_heads": 4, "n_kv_heads": 4, "mlp_hidden_size": 128,
       "vocab_size": 512, "embedding_size": 512, "max_sequence_length": 1024, "rope_theta": 500000.0,
       "mask_token_id": 511, "eos_token_id": 510}
SHAPES = {"llada-8b": LLADA_8B, "toy": TOY}
# Vendor figures by device name, first match wins: HBM TB/s and dense 16-bit tensor TFLOP/s.
HBM_TBPS = (("H100 PCIe", 2.0), ("H100 NVL", 3.9), ("H100", 3.35), ("H200", 4.8))
PEAK_TFLOPS = (("H100 PCIe", 756.0), ("H100", 989.0), ("H200", 989.0))
FORBIDDEN = ("gradio", "sqlalchemy", "tree_sitter", "gguf")  # absent on the GPU machine
STARTED = time.monotonic()


def lookup(table: tuple[tuple[str, float], ...], device: torch.device, override: float | None) -> float | None:
    """The override, else the first figure whose name the GPU's name contains, else None (unknown)."""
    if override is not None or device.type != "cuda":
        return override
    name = torch.cuda.get_device_name(device)
    return next((value for key, value in table if key in name), None)


def random_model(config: dict, device: torch.device, dtype: torch.dtype, seed: int = 0) -> LlamaDiffusionLM:
    """A LLaDA-layout model with random weights, made on `device` in `dtype` (never in float32 first)."""
    with torch.device("meta"):
        net = LlamaNet(llada_shape(config))
    net = net.to(dtype=dtype).to_empty(device=device).eval().requires_grad_(False)
    g = torch.Generator(device).manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():  # norms at 1, matrices at LLaDA's init scale
            p.fill_(1.0) if p.dim() == 1 else p.normal_(0.0, 0.02, generator=g)
    mask, eos = config["mask_token_id"], config["eos_token_id"]
    codec = TextCodec(tokenizer=None, frame_prefix=(), frame_suffix=(), eos_id=eos, pad_id=None, mask_id=mask,
                      banned_ids=(mask,))  # ids only: the loop never needs text
    return LlamaDiffusionLM(net, codec, label=f"random {net.shape.layers}-layer LLaDA shape", shifted=False)


class CountingRows(EagerRows):
    """The model's runner, counting the token rows each forward runs (for the compute limit)."""

    def __init__(self, inner: EagerRows):
        super().__init__(inner.net)
        self.inner, self.rows = inner, 0

    def __call__(self, x: torch.Tensor, *args, **kwargs) -> tuple[torch.Tensor, list[KV]]:
        self.rows += x.numel()
        return self.inner(x, *args, **kwargs)

    def context(self, kvs: list[KV], keep: torch.Tensor) -> Context:
        return self.inner.context(kvs, keep)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


WARMUPS = 2  # untimed compiled edits first: compiled graphs run slow for their first few calls


def time_edits(model: LlamaDiffusionLM, ids: torch.Tensor, span: tuple[int, int], settings: SamplerSettings,
               repeats: int) -> dict:
    """The edit `repeats` times after one untimed edit (WARMUPS when compiled: they also compile new
    buckets): p50 of the edit, forwards, rows per forward, the median step after each run's first."""
    counter = model.runner = CountingRows(model.runner)
    forced = torch.zeros(ids.shape[0], dtype=torch.bool)
    edits, later, forwards, rows = [], [], 0, 0
    try:
        warmups = WARMUPS if isinstance(counter.inner, BucketedRows) else 1
        for i in range(warmups + repeats):
            counter.rows = 0
            sync(model.device)
            start = time.perf_counter()
            elapsed = [step.elapsed for step in denoise(model, ids, (span,), forced, settings)]
            sync(model.device)
            if i >= warmups:
                edits.append(time.perf_counter() - start)
                later += [b - a for a, b in zip(elapsed, elapsed[1:])]
                forwards, rows = len(elapsed), counter.rows
    finally:
        model.runner = counter.inner
    edit_ms = 1000 * statistics.median(edits)
    return {"forwards": forwards, "edit_ms_p50": edit_ms, "ms_per_forward": edit_ms / forwards,
            "later_step_ms": 1000 * statistics.median(later) if later else None, "rows_per_forward": rows / forwards}


def time_generate(peer, batch: int, prompt_tokens: int, new_tokens: int, compiled: bool, repeats: int) -> dict:
    """transformers generate() of `new_tokens` after a random prompt, static KV cache; the prefill
    (a 1-token generate) is timed apart so that ms per forward is the decoding forwards'."""
    device = peer.device
    prompt = torch.randint(0, peer.config.vocab_size - 1, (batch, prompt_tokens), device=device,
                           generator=torch.Generator(device).manual_seed(0))

    def generate(n: int) -> float:
        sync(device)
        start = time.perf_counter()
        peer.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=n, min_new_tokens=n,
                      do_sample=False, cache_implementation="static", disable_compile=not compiled,
                      pad_token_id=0)
        sync(device)
        return time.perf_counter() - start

    for n in (new_tokens, 1):  # warm-up: allocation, compiled graphs
        generate(n)
    total = statistics.median(generate(new_tokens) for _ in range(repeats))
    prefill = statistics.median(generate(1) for _ in range(repeats))
    return {"forwards": new_tokens, "edit_ms_p50": 1000 * total, "prefill_ms": 1000 * prefill,
            "ms_per_forward": 1000 * (total - prefill) / max(1, new_tokens - 1), "rows_per_forward": batch}


def ar_peer(config: dict, device: torch.device, dtype: torch.dtype):
    """transformers' causal Llama of the same shape as `config`, random weights, made on `device`."""
    from transformers import LlamaConfig, LlamaForCausalLM

    shape = llada_shape(config)
    hf = LlamaConfig(vocab_size=shape.vocab, hidden_size=shape.width, intermediate_size=shape.ffn,
                     num_hidden_layers=shape.layers, num_attention_heads=shape.heads,
                     num_key_value_heads=shape.kv_heads, max_position_embeddings=shape.max_length,
                     rope_parameters={"rope_type": "default", "rope_theta": shape.rope_theta},
                     rms_norm_eps=shape.norm_eps, tie_word_embeddings=False)
    with torch.device(device):
        return LlamaForCausalLM._from_config(hf, dtype=dtype).eval().requires_grad_(False)


class Run:
    """The rows measured so far, written to `out` after each one (a run cut short keeps them)."""

    def __init__(self, out: Path | None, budget_s: float, limits: dict):
        self.out, self.budget_s, self.limits = out, budget_s, limits
        self.rows: list[dict] = []

    def left(self) -> bool:
        return time.monotonic() - STARTED < self.budget_s

    def add(self, config: str, batch: int, measure) -> None:
        row: dict = {"config": config, "batch": batch}
        if not self.left():
            row["skipped"] = f"past the {self.budget_s:.0f} s budget"
        else:
            print(f"[speed] {config} batch {batch} ...", file=sys.stderr, flush=True)
            row.update(measure())
            self.judge(row)
        self.rows.append(row)
        if self.out:
            (self.out / "speed.json").write_text(json.dumps({**self.limits, "rows": self.rows}, indent=1))

    def judge(self, row: dict) -> None:
        """Limits for this row's forwards, and speed-up over the reference at the same batch."""
        read, tflops = self.limits["weight_read_ms"], self.limits["peak_tflops"]
        compute = (2 * self.limits["block_params"] * row["rows_per_forward"] / (tflops * 1e9) if tflops else None)
        row["compute_ms"] = compute
        row["x_weight_read"] = row["ms_per_forward"] / read if read else None
        row["x_limit"] = row["ms_per_forward"] / max(read or 0, compute or 0) if read or compute else None
        ref = next((r for r in self.rows if r["config"] == "reference" and r["batch"] == row["batch"]
                    and "edit_ms_p50" in r), None)
        row["speedup_vs_reference"] = ref["edit_ms_p50"] / row["edit_ms_p50"] if ref else None


def table(run: Run) -> str:
    cols = [("config", "{}"), ("batch", "{}"), ("forwards", "{}"), ("edit_ms_p50", "{:,.1f}"),
            ("ms_per_forward", "{:.2f}"), ("later_step_ms", "{:.2f}"), ("rows_per_forward", "{:,.0f}"),
            ("compute_ms", "{:.2f}"), ("x_weight_read", "{:.2f}x"), ("x_limit", "{:.2f}x"),
            ("speedup_vs_reference", "{:.1f}x")]
    lines = [", ".join(f"{k}: {v:.3g}" if isinstance(v, float) else f"{k}: {v}" for k, v in run.limits.items()),
             "| " + " | ".join(c for c, _ in cols) + " |", "|" + "---|" * len(cols)]
    for row in run.rows:
        if "skipped" in row:
            lines.append(f"| {row['config']} | {row['batch']} | skipped: {row['skipped']} |")
        else:
            lines.append("| " + " | ".join("-" if row.get(c) is None else f.format(row[c]) for c, f in cols) + " |")
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m engine.tools.speed", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", choices=sorted(SHAPES), default="llada-8b")
    add_device_flag(parser)
    parser.add_argument("--dtype", choices=sorted(DTYPES), default="bfloat16")
    parser.add_argument("--quantize", choices=QUANTIZE, help="weight-only int8/int4 linear layers (engine/quantize.py)")
    parser.add_argument("--tokens", type=int, default=512, help="document length in tokens")
    parser.add_argument("--span", type=int, default=32, help="span (and AR answer) length in tokens")
    parser.add_argument("--batches", default="1,8,32", help="candidates at once (AR: sequences), comma-separated")
    parser.add_argument("--compile", default="default", help="torch.compile mode for the +compiled rows, or off")
    parser.add_argument("--compile-batches", help="batches to run compiled (default: all of --batches)")
    parser.add_argument("--ar-compile", action="store_true", help="also run the AR peer compiled by transformers")
    parser.add_argument("--repeats", type=int, default=3, help="timed edits per row (after one warm-up)")
    parser.add_argument("--hbm-tbps", type=float, help="HBM bandwidth in TB/s (default: by GPU name)")
    parser.add_argument("--peak-tflops", type=float, help="dense 16-bit TFLOP/s (default: by GPU name)")
    parser.add_argument("--budget-s", type=float, default=420, help="start no new row after this many seconds")
    parser.add_argument("--out", type=Path, help="folder for speed.json and speed.md")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    device, dtype, config = pick_device(args.device), DTYPES[args.dtype], SHAPES[args.shape]
    batches = [int(b) for b in args.batches.split(",")]
    compiled_batches = [int(b) for b in args.compile_batches.split(",")] if args.compile_batches else batches
    model = random_model(config, device, dtype)
    size = ModelSize.of_net(model.net)
    memory = check(plan(size, dtype, device, tokens=args.tokens, batch=max(batches), span=args.span,
                        quantize=args.quantize))
    print(f"memory: {memory}", file=sys.stderr)
    block_params = sum(p.numel() for p in model.net.blocks.parameters())  # counted before they turn to buffers
    quantize_model(model, args.quantize)
    held = [*model.net.named_parameters(), *model.net.named_buffers()]
    read_bytes = sum(t.numel() * t.element_size() for n, t in held if n != "embed.weight")
    hbm, tflops = lookup(HBM_TBPS, device, args.hbm_tbps), lookup(PEAK_TFLOPS, device, args.peak_tflops)
    limits = {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
              "torch": torch.__version__, "dtype": args.dtype, "quantize": args.quantize, "shape": args.shape,
              "params": size.params, "block_params": block_params, "read_gb": read_bytes / 1e9,
              "hbm_tbps": hbm, "peak_tflops": tflops, "tokens": args.tokens, "span": args.span,
              "weight_read_ms": read_bytes / (hbm * 1e9) if hbm else None}
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
    run = Run(args.out, args.budget_s, limits)
    ids = torch.randint(0, int(config["eos_token_id"]), (args.tokens,), generator=torch.Generator().manual_seed(0))
    span = ((args.tokens - args.span) // 2, (args.tokens + args.span) // 2)
    # two_apart commits at least two slots per forward whatever the weights: a schedule fixed in advance
    configs = {"reference": PRESETS["quality"], "fast": PRESETS[DEFAULT_PRESET], "two_apart": PRESETS["two_apart"]}

    def edits(settings: SamplerSettings, batch: int):
        return lambda: time_edits(model, ids, span, settings.replace(candidates=batch), args.repeats)

    def answers(batch: int, compiled: bool):
        return lambda: time_generate(peer, batch, args.tokens - args.span, args.span, compiled, args.repeats)

    # Most telling first, so that a run cut short by its budget still answers the main question.
    for batch in batches:
        for name, settings in configs.items():
            run.add(name, batch, edits(settings, batch))
    peer = ar_peer(config, device, dtype)
    for batch in batches:
        run.add("ar", batch, answers(batch, False))
    if args.compile != "off":
        compile_model(model, args.compile)
    for batch in compiled_batches:  # each compiles its graphs first: a minute or more at 8B
        if args.compile != "off":
            run.add("fast+compiled", batch, edits(configs["fast"], batch))
        if args.ar_compile:
            run.add("ar+compiled", batch, answers(batch, True))
    for batch in compiled_batches if args.compile != "off" else ():
        run.add("reference+compiled", batch, edits(configs["reference"], batch))
    report = table(run)
    print(report)
    if args.out:
        (args.out / "speed.md").write_text(report + "\n")
    leaked = sorted(m for m in FORBIDDEN if m in sys.modules)
    if leaked:
        print(f"error: the speed path imported {', '.join(leaked)}, which the GPU machine lacks", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
