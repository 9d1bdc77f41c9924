"""`python -m engine.tools.int8`: the bundled model with its linear layers in int8 (torch.ao dynamic
quantisation: weights int8, activations quantised per batch) against float32, in one process.

Per workload of the benchmark's default row (a 32-token span in a ~512-token document, the page's
preset), each edit runs on both models in turn; fluency is always the float32 base model's, so
it judges the text and not the scorer. Also one forward over 160 tokens, median of 5.

    python -m engine.tools.int8 [--edits 3] [--threads 1] [--kinds prose,code]
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

from ..model import DiffusionLM, ForwardCall
from ..settings import DEFAULT_PRESET, PRESETS
from . import bench

FLUENCY_BUDGET = 0.02  # int8 becomes the CPU default only within 2% of float32's fluency NLL, and faster,
# and only if an edit's result stays independent of the edits that share its forward (the scheduler's promise)


def quantized(model: DiffusionLM) -> DiffusionLM:
    """A copy of `model` whose net's nn.Linear layers run in int8 (the tied 49k-row head, an
    embedding, stays float32)."""
    out = copy.deepcopy(model)
    with warnings.catch_warnings():  # torch.ao.quantization says torchao is its successor
        warnings.simplefilter("ignore")
        out.net = torch.ao.quantization.quantize_dynamic(out.net, {torch.nn.Linear}, dtype=torch.qint8)  # type: ignore[attr-defined]
    out.runner = type(model.runner)(out.net)  # type: ignore[attr-defined]
    return out


def forward_ms(model: DiffusionLM, tokens: int = 160, repeats: int = 5) -> float:
    ids = torch.randint(100, 1000, (1, tokens))
    times = []
    with torch.inference_mode():
        for _ in range(repeats):
            started = time.perf_counter()
            model.logits(ids)
            times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def batch_independent(model: DiffusionLM) -> bool:
    """Whether one canvas's logits are the same alone as packed with another canvas into one forward
    (engine/scheduler.py promises that; dynamic quantisation scales a whole forward's activations at once)."""
    alone_ids, other_ids = torch.randint(100, 1000, (1, 64)), torch.randint(100, 1000, (1, 96))
    calls = [ForwardCall(alone_ids, torch.arange(64)), ForwardCall(other_ids, torch.arange(96))]
    with torch.inference_mode():
        alone = model.forward_many(calls[:1])[0]
        packed = model.forward_many(calls)[0]
    return bool(torch.equal(alone, packed))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m engine.tools.int8", description=__doc__)
    parser.add_argument("--edits", type=int, default=3)
    parser.add_argument("--threads", type=int)
    parser.add_argument("--kinds", default="prose,code")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    from ..load import load_model
    base = load_model(None)
    models = {"float32": base, "int8": quantized(base)}
    fluency = base.fluency()
    report: dict = {"threads": torch.get_num_threads(), "forward_160_ms": {}}
    for model in models.values():
        forward_ms(model, repeats=1)  # warm
    for name, model in models.items():
        report["forward_160_ms"][name] = round(forward_ms(model), 1)
    workloads = bench.plan(base, (512,), (32,), generate=False, edits=args.edits)
    settings = PRESETS[DEFAULT_PRESET]
    rows = []
    for workload, edits in workloads.items():
        if workload.split("-")[0] not in args.kinds.split(","):
            continue
        results: dict[str, list[dict]] = {name: [] for name in models}
        for edit in edits:  # alternate, so that the machine's drift hits both alike
            for name, model in models.items():
                results[name] += bench.measure(model, [edit], settings, fluency)
        for name in models:
            r = results[name]
            rows.append({"workload": workload, "model": name,
                         "p50_ms": statistics.median(x["seconds"] * 1000 for x in r),
                         "cpu_p50_ms": statistics.median(x["cpu_seconds"] * 1000 for x in r),
                         "fluency_nll": bench.mean(x["fluency_nll"] for x in r),
                         "parse_rate": bench.mean(x["parses"] for x in r),
                         "texts": [x["text"] for x in r]})
    for row in rows:
        ref = next(r for r in rows if r["workload"] == row["workload"] and r["model"] == "float32")
        row["fluency_vs_float32"] = row["fluency_nll"] / ref["fluency_nll"] - 1
        row["speedup_vs_float32"] = ref["p50_ms"] / row["p50_ms"]
        row["cpu_speedup_vs_float32"] = ref["cpu_p50_ms"] / row["cpu_p50_ms"]
    report["rows"] = rows
    report["batch_independent"] = {name: batch_independent(model) for name, model in models.items()}
    int8 = [r for r in rows if r["model"] == "int8"]
    report["keep_int8"] = report["batch_independent"]["int8"] and all(
        r["fluency_vs_float32"] <= FLUENCY_BUDGET and r["cpu_speedup_vs_float32"] > 1 for r in int8)
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
