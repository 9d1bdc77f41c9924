"""`python -m engine.tools.quant`: the bundled model with quantised linear layers against float32, in
one process: CPU ms per forward at two shapes, then the benchmark's default row (a 32-token span in
a ~512-token document, the page's preset) edit by edit on each model in turn, and whether a row's
logits are the same alone as packed with another edit's rows (the scheduler's promise).

Variants: `int8` as `--quantize int8` runs it here (engine/quantize.py picks the kernel), `int8-packed`
(PyTorch's `_weight_int8pack_mm` forced), `int4-cpu` (the CPU tinygemm kernel), `dynamic`
(torch.ao dynamic int8: activations quantised per forward). Fluency is the float32 base model's in
every row, so it judges the text and not the scorer.

    python -m engine.tools.quant [--edits 3] [--threads 1] [--edit-variants int8] [--kinds prose,code]
"""
from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
import time
import warnings

import torch

from ..model import DiffusionLM, Fluency, ForwardCall
from ..quantize import Int8Linear, quantize_model
from ..settings import DEFAULT_PRESET, PRESETS
from . import bench

FLUENCY_BUDGET = 0.02  # int8 becomes the CPU default only within 2% of float32's fluency NLL, and faster,
# and only if an edit's result stays independent of the edits that share its forward (the scheduler's promise)
SHAPES = (32, 288)     # net rows of a forward: a cached step's active rows, a full ~288-token canvas
HEAD_ROWS = 32         # the head runs on the span's rows only (a 32-token span)


def variant(model: DiffusionLM, name: str) -> DiffusionLM:
    """A copy of `model` with its linear layers as `name` says (module docstring)."""
    out = copy.deepcopy(model)
    if name == "dynamic":
        with warnings.catch_warnings():  # torch.ao.quantization says torchao is its successor
            warnings.simplefilter("ignore")
            blocks = out.net.blocks  # type: ignore[attr-defined]
            out.net.blocks = torch.ao.quantization.quantize_dynamic(  # type: ignore[attr-defined]
                blocks, {torch.nn.Linear}, dtype=torch.qint8)  # the head stays float, as with --quantize
        return out
    if name == "int4-cpu":  # engine/quantize.py refuses int4 on a CPU; the layers themselves run here
        from ..quantize import quantize_net
        quantize_net(out.net, "int4", model.vocab_size)  # type: ignore[attr-defined]
        return out
    quantize_model(out, "int8")
    if name == "int8-packed":
        for m in out.net.modules():  # type: ignore[attr-defined]
            if isinstance(m, Int8Linear):
                m.packed = True
    return out


def forward_ms(model: DiffusionLM, rows: int, repeats: int) -> float:
    """Median CPU ms of one forward over `rows` canvas tokens, the head on the last HEAD_ROWS."""
    ids = torch.randint(100, 1000, (1, rows))
    query = torch.arange(max(0, rows - HEAD_ROWS), rows)
    times = []
    with torch.inference_mode():
        for _ in range(repeats + 1):  # the first warms
            started = time.process_time()
            model.logits_at(ids, query)
            times.append((time.process_time() - started) * 1000)
    return statistics.median(times[1:])


def head_ms(model: DiffusionLM, repeats: int) -> dict[str, float]:
    """Median CPU ms of the tied 49k-row head over HEAD_ROWS rows: float, and as int8 either way."""
    weight = model.net.embed.weight  # type: ignore[attr-defined]
    head = torch.nn.Linear(weight.shape[1], weight.shape[0], bias=False)
    head.weight = torch.nn.Parameter(weight, requires_grad=False)
    h = torch.randn(HEAD_ROWS, weight.shape[1])
    heads = {"float32": head, "int8": Int8Linear(head, packed=False), "int8-packed": Int8Linear(head, packed=True)}
    out = {}
    with torch.inference_mode():
        for name, layer in heads.items():
            times = []
            for _ in range(repeats + 1):
                started = time.process_time()
                layer(h)
                times.append((time.process_time() - started) * 1000)
            out[name] = round(statistics.median(times[1:]), 1)
    return out


def batch_independent(model: DiffusionLM) -> bool:
    """Whether one canvas's logits are the same alone as packed with another canvas into one forward
    (engine/scheduler.py promises that; dynamic quantisation scales a whole forward's activations at once)."""
    top = min(1000, model.vocab_size)
    alone_ids, other_ids = torch.randint(0, top, (1, 64)), torch.randint(0, top, (1, 96))
    calls = [ForwardCall(alone_ids, torch.arange(64)), ForwardCall(other_ids, torch.arange(96))]
    with torch.inference_mode():
        alone = model.forward_many(calls[:1])[0]
        packed = model.forward_many(calls)[0]
    return bool(torch.equal(alone, packed))


def edit_rows(models: dict[str, DiffusionLM], kinds: list[str], edits: int,
              fluency: Fluency | None) -> list[dict]:
    """The benchmark's default row on every model, each edit on all of them in turn (the machine's
    drift hits them alike): CPU p50, forwards per CPU second, fluency, defect and parse rates."""
    base = models["float32"]
    settings = PRESETS[DEFAULT_PRESET]
    rows = []
    for workload, todo in bench.plan(base, (512,), (32,), generate=False, edits=edits).items():
        if workload.split("-")[0] not in kinds:
            continue
        results: dict[str, list[dict]] = {name: [] for name in models}
        for edit in todo:
            for name, model in models.items():
                results[name] += bench.measure(model, [edit], settings, fluency)
        for name, r in results.items():
            parses = [x["parses"] for x in r if x["parses"] is not None]
            rows.append({"workload": workload, "model": name,
                         "cpu_p50_ms": statistics.median(x["cpu_seconds"] * 1000 for x in r),
                         "forwards_per_cpu_s": sum(x["forwards"] for x in r) / sum(x["cpu_seconds"] for x in r),
                         "fluency_nll": bench.mean(x["fluency_nll"] for x in r),
                         "defect_rate": bench.mean(float(x["defect"]) for x in r if x["defect"] is not None),
                         "parse_rate": bench.mean(float(p) for p in parses) if parses else None,
                         "texts": [x["text"] for x in r]})
    for row in rows:
        ref = next(r for r in rows if r["workload"] == row["workload"] and r["model"] == "float32")
        row["fluency_vs_float32"] = row["fluency_nll"] / ref["fluency_nll"] - 1
        row["cpu_speedup_vs_float32"] = ref["cpu_p50_ms"] / row["cpu_p50_ms"]
    return rows


def keep_int8(report: dict) -> bool:
    """int8 as the CPU default: batch independent, within the fluency budget on every workload, and
    faster per forward at every shape (the same rows on both: an edit's own p50 also moves with how
    many forwards its text took, so a few edits cannot show a small speed-up)."""
    ms, int8 = report["forward_cpu_ms"], [r for r in report["rows"] if r["model"] == "int8"]
    if "int8" not in ms or not int8:
        return False
    faster = all(ms["int8"][rows] < ms["float32"][rows] for rows in SHAPES)
    return bool(report["batch_independent"]["int8"] and faster
                and all(r["fluency_vs_float32"] <= FLUENCY_BUDGET for r in int8))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m engine.tools.quant", description=__doc__)
    parser.add_argument("--edits", type=int, default=3)
    parser.add_argument("--threads", type=int)
    parser.add_argument("--kinds", default="prose,code")
    parser.add_argument("--variants", default="int8,int8-packed,int4-cpu,dynamic", help="timed per forward")
    parser.add_argument("--edit-variants", default="int8", help="also run the edits (the packed and int4 "
                        "kernels are too slow on an AVX2 CPU for that)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    from ..load import load_model
    base = load_model(None)
    names = args.variants.split(",")
    models = {"float32": base, **{name: variant(base, name) for name in names}}
    report: dict = {"threads": torch.get_num_threads(), "cpu": torch.backends.cpu.get_cpu_capability(),
                    "head_cpu_ms": head_ms(base, args.repeats), "forward_cpu_ms": {}, "batch_independent": {}}
    for name, model in models.items():
        report["forward_cpu_ms"][name] = {rows: round(forward_ms(model, rows, args.repeats), 1) for rows in SHAPES}
        report["batch_independent"][name] = batch_independent(model)
        print(name, report["forward_cpu_ms"][name], report["batch_independent"][name], file=sys.stderr, flush=True)
    edited = ["float32", *args.edit_variants.split(",")]
    report["rows"] = edit_rows({n: m for n, m in models.items() if n in edited}, args.kinds.split(","),
                               args.edits, base.fluency())
    report["keep_int8"] = keep_int8(report)
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
