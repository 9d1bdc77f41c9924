"""Size, memory and CPU time of the small real dLLM families, for docs/MODEL.md's table, without
their weights. Time is an estimate: each model's forward over a canvas is counted in FLOPs (2 per
weight per token through the blocks, attention's two products, the head on the span's rows only,
as Sharpen's logits_at runs it) and divided by the rate a measured forward reached in the same run
(a 2-layer net at Qwen3-0.6B's width and vocabulary, fastest of several tries: other jobs on the
machine only ever slow a try down). Memory: engine/memory.py's estimate at the canvas, batch 1.

    nice .venv/bin/python scripts/family_timings.py [--tokens 256] [--threads 2]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from engine import memory  # noqa: E402
from engine.families.dream import dream_shape  # noqa: E402
from engine.families.llama_net import LlamaNet  # noqa: E402
from engine.families.moe_net import MoENet  # noqa: E402
from engine.families.qwen import qwen_shape  # noqa: E402

SPAN = 32  # tokens an edit writes: Sharpen's head runs on the span's rows only (logits_at)
QWEN3_06B = dict(model_type="a2d-qwen3", vocab_size=151936, hidden_size=1024, intermediate_size=3072,
                 num_hidden_layers=28, num_attention_heads=16, num_key_value_heads=8, head_dim=128,
                 tie_word_embeddings=True, max_position_embeddings=40960, rope_theta=1000000.0)
QWEN25_05B = dict(vocab_size=151936, hidden_size=896, intermediate_size=4864, num_hidden_layers=24,
                  num_attention_heads=14, num_key_value_heads=2, tie_word_embeddings=True,
                  max_position_embeddings=32768, rope_theta=1000000.0)
SDAR = dict(model_type="sdar", vocab_size=151936, num_attention_heads=16, num_key_value_heads=8,
            head_dim=128, tie_word_embeddings=False, max_position_embeddings=32768, rope_theta=1000000.0)
RELEASED = {  # name -> (config.json figures, which net)
    "dllm Qwen3-0.6B-diffusion (MDLM)": (QWEN3_06B, "qwen"),
    "dllm Qwen3-0.6B-diffusion (BD3LM)": (QWEN3_06B | {"block_size": 32}, "qwen"),
    "dllm Qwen2.5-Coder-0.5B-Instruct-diffusion": (QWEN25_05B | {"model_type": "a2d-qwen2"}, "qwen"),
    "Open-dCoder-0.5B": (QWEN25_05B | {"model_type": "qwen2"}, "dream"),
    "SDAR-1.7B-Chat": (SDAR | dict(hidden_size=2048, intermediate_size=6144, num_hidden_layers=28,
                                   block_size=4), "qwen"),
    "SDAR-4B-Chat": (SDAR | dict(hidden_size=2560, intermediate_size=9728, num_hidden_layers=36,
                                 num_attention_heads=32, block_size=4), "qwen"),
}
MODERNBERT = {"dllm ModernBERT-base-chat-v0.1": dict(hidden_size=768, num_hidden_layers=22, intermediate_size=1152,
                                                     num_attention_heads=12),
              "dllm ModernBERT-large-chat-v0.1": dict(hidden_size=1024, num_hidden_layers=28,
                                                      intermediate_size=2624, num_attention_heads=16)}


def build_meta(config: dict, kind: str) -> LlamaNet | MoENet:
    """The family's net for `config` (on whatever device is current)."""
    if kind == "dream":
        return LlamaNet(dream_shape(config, qkv_bias=True))
    return MoENet(qwen_shape(config, config.get("block_size")))


def build(config: dict, kind: str) -> LlamaNet | MoENet:
    """The family's net for `config` with random float32 weights."""
    net = build_meta(config, kind)
    with torch.no_grad():
        for p in net.parameters():
            p.normal_(0, 0.02)
    return net.eval()


def fastest(fn, tries: int = 7) -> float:
    """Seconds of the fastest of `tries` calls, after one warm-up call."""
    fn()
    times = []
    for _ in range(tries):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def forward_flops(size: memory.ModelSize, heads_dim: int, tokens: int, head_rows: int = SPAN) -> float:
    """FLOPs of one forward over `tokens`: 2 per block weight per token (the embedding is a lookup),
    q.k and p.v over every pair, the head's vocab x width on `head_rows` rows (Sharpen's Llama-layout
    families: the span's; a transformers masked LM: every row)."""
    w = size.width
    blocks = size.layers * (2 * w * heads_dim + 2 * w * size.kv_width + 3 * w * size.ffn)  # q, o; k, v; SwiGLU
    return 2 * blocks * tokens + 4 * size.layers * tokens ** 2 * heads_dim + 2 * size.vocab * w * head_rows


def measured_rate(tokens: int) -> float:
    """FLOP/s a 2-layer net at Qwen3-0.6B's width and vocabulary reaches here (fastest try)."""
    config = QWEN3_06B | {"num_hidden_layers": 2}
    net = build(config, "qwen")
    ids = torch.randint(0, 1000, (1, tokens))
    with torch.inference_mode():
        seconds = fastest(lambda: net.project(net.hidden(ids)[:, :SPAN]))
    size = memory.ModelSize.of_net(net)
    return forward_flops(size, 16 * 128, tokens) / seconds


def modernbert_size(config: dict) -> memory.ModelSize:
    from transformers import ModernBertConfig, ModernBertForMaskedLM

    with torch.device("meta"):
        net = ModernBertForMaskedLM(ModernBertConfig(vocab_size=50368, max_position_embeddings=8192, **config))
    w = config["hidden_size"]
    return memory.ModelSize(params=sum(p.numel() for p in net.parameters()), layers=config["num_hidden_layers"],
                            width=w, kv_width=w, ffn=config["intermediate_size"], vocab=50368, max_length=8192,
                            stored=torch.float32)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tokens", type=int, default=256, help="canvas length of each forward")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--quiet-rate", type=float, default=100.0,
                        help="GFLOP/s of a quiet run, for the second time column (default: 100, the bundled "
                             "model's 340 ms float32 forward over 160 tokens on 2 threads)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rate = measured_rate(args.tokens)
    print(f"measured: {rate / 1e9:.0f} GFLOP/s (float32, {args.threads} threads, fastest try); "
          f"load average {Path('/proc/loadavg').read_text().split()[0]}")
    quiet = args.quiet_rate * 1e9
    print(f"| model | parameters | float32 weights | memory at {args.tokens} tokens x 1 | GFLOP per forward "
          f"over {args.tokens} tokens | forward / 32-token edit at {rate / 1e9:.0f} GFLOP/s (measured) | "
          f"the same at {args.quiet_rate:.0f} GFLOP/s (quiet) |")
    print("|---|---|---|---|---|---|---|")
    sizes = {}
    for name, (config, kind) in RELEASED.items():
        with torch.device("meta"):
            sizes[name] = (memory.ModelSize.of_net(build_meta(config, kind)),
                           config["num_attention_heads"] * int(config.get("head_dim") or
                                                               config["hidden_size"] // config["num_attention_heads"]))
    for name, config in MODERNBERT.items():
        sizes[name] = (modernbert_size(config), config["hidden_size"])
    for name, (size, heads_dim) in sizes.items():
        plan = memory.plan(size, torch.float32, torch.device("cpu"), tokens=args.tokens, batch=1)
        flops = forward_flops(size, heads_dim, args.tokens, args.tokens if name in MODERNBERT else SPAN)
        print(f"| {name} | {size.params / 1e9:.2f} B | {size.params * 4 / 1e9:.1f} GB | {plan.total / 1e9:.1f} GB "
              f"| {flops / 1e9:.0f} | {flops / rate:.1f} s / {SPAN * flops / rate:.0f} s "
              f"| {flops / quiet:.1f} s / {SPAN * flops / quiet:.0f} s |")


if __name__ == "__main__":
    main()
