"""`python -m engine.tools.train`: adapt the bundled SmolLM2 to masked diffusion with LoRA (writes the adapter).

Objective (LLaDA / Dream / DiffuLLaMA): per sequence draw t ~ U(eps, 1) (eps = 0.05), replace each
token by the mask token with probability t, run the net with BIDIRECTIONAL attention, and take the
cross-entropy of the masked tokens weighted by 1/t (the masked-diffusion ELBO), averaged over all
positions.
The net keeps its autoregressive head alignment ("shift", Dream / DiffuLLaMA): the start token
goes in front and net row i scores canvas token i, exactly as `LlamaDiffusionLM.logits` reads it.

Trained: LoRA (rank r) on attention q, k, v, o and MLP gate, up, down of every block, plus the
mask token's embedding row. The base weights stay frozen. Output: the adapter file described in
engine/families/bundled.py, written atomically whenever held-out loss improves.
"""
from __future__ import annotations

import argparse
import json
import logging
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..families.llama_net import LlamaNet

log = logging.getLogger(__name__)

LORA_TARGETS = ("attn.q", "attn.k", "attn.v", "attn.o", "mlp.gate", "mlp.up", "mlp.down")


@dataclass(frozen=True)
class TrainConfig:
    steps: int = 300
    seq: int = 128
    batch: int = 4
    rank: int = 8
    alpha: float = 16.0           # lora_scale = alpha / rank
    lr: float = 5e-4
    warmup: int = 20
    eps: float = 0.05             # t ~ U(eps, 1): the floor keeps the 1/t weight <= 1/eps (see noise)
    prose_share: float = 0.5      # share of rows drawn from prose (the rest: code)
    span_share: float = 0.0       # share of rows whose mask is one contiguous span (the editor's edit)
    max_span: int = 64            # longest such span, in tokens
    decay_from: int = 0           # step where the learning rate starts its linear decay to 0 (0: never)
    seed: int = 0
    checkpoint_every: int = 25
    eval_rows: int = 8

    def __post_init__(self) -> None:
        for name in ("steps", "seq", "batch", "rank", "checkpoint_every", "eval_rows", "max_span"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)!r}")
        if not 0 < self.eps < 1 or not 0 <= self.prose_share <= 1 or self.lr <= 0:
            raise ValueError("need 0 < eps < 1, 0 <= prose_share <= 1 and lr > 0")
        if not 0 <= self.span_share <= 1 or (self.span_share and self.max_span > self.seq):
            raise ValueError(f"need 0 <= span_share <= 1 and max_span <= seq ({self.seq}), "
                             f"got {self.span_share} and {self.max_span}")
        if self.decay_from < 0 or (self.decay_from and self.decay_from >= self.steps):
            raise ValueError(f"decay_from must be 0 (no decay) or below steps ({self.steps}), got {self.decay_from}")

    @property
    def scale(self) -> float:
        return self.alpha / self.rank


# ---- trainable pieces -------------------------------------------------------------------------
# Why not peft: peft could inject the same LoRA into LlamaNet (`inject_adapter_in_model`) and train a
# mask row (`trainable_token_indices`), but nothing at run time needs it: engine/families/bundled.py
# merges the adapter file into the weights at load (W += scale * B A). With peft, training would
# pull in peft and accelerate for the two short classes below, and the loader would have to follow
# peft's state-dict names instead of LlamaNet's own (`blocks.3.attn.q.weight.lora_a`).

class LoRALinear(nn.Module):
    """base(x) + scale * x A^T B^T, A (r, in), B (out, r); B starts at zero (Hu et al., 2021)."""

    def __init__(self, base: nn.Linear, rank: int, scale: float, generator: torch.Generator):
        super().__init__()
        self.base, self.scale = base, scale
        a = torch.randn(rank, base.in_features, generator=generator) / math.sqrt(base.in_features)
        self.lora_a = nn.Parameter(a.to(base.weight))
        self.lora_b = nn.Parameter(torch.zeros(base.out_features, rank).to(base.weight))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base(x) + self.scale * F.linear(F.linear(x, self.lora_a), self.lora_b)


class MaskedEmbedding(nn.Module):
    """The frozen embedding with a trainable row for the mask token. `weight` has it too, so a
    tied head scores exactly what the merged adapter will."""

    def __init__(self, base: nn.Embedding, mask_id: int):
        super().__init__()
        self.base, self.mask_id = base, mask_id
        self.mask_embedding = nn.Parameter(base.weight[mask_id].detach().clone())

    @property
    def weight(self) -> torch.Tensor:
        w = self.base.weight.clone()
        w[self.mask_id] = self.mask_embedding
        return w

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        x = self.base(ids)                                                       # (B, L, d)
        return torch.where((ids == self.mask_id).unsqueeze(-1), self.mask_embedding.to(x), x)


def attach(net: LlamaNet, mask_id: int, rank: int, scale: float, seed: int) -> dict[str, nn.Parameter]:
    """Wrap `net` in place (frozen base + LoRA + mask row); returns the trainable parameters by
    their adapter-file names (`blocks.3.attn.q.weight.lora_a`, ..., `mask_embedding`)."""
    net.requires_grad_(False)
    g = torch.Generator().manual_seed(seed)
    params: dict[str, nn.Parameter] = {}
    for i, block in enumerate(net.blocks):
        for target in LORA_TARGETS:
            parent_name, leaf = target.split(".")
            parent = getattr(block, parent_name)
            lora = LoRALinear(getattr(parent, leaf), rank, scale, g)
            setattr(parent, leaf, lora)
            params[f"blocks.{i}.{target}.weight.lora_a"] = lora.lora_a
            params[f"blocks.{i}.{target}.weight.lora_b"] = lora.lora_b
    embed = MaskedEmbedding(net.embed, mask_id)
    net.embed = embed  # type: ignore[assignment]  # LlamaNet uses embed(ids) and embed.weight: both are here
    params["mask_embedding"] = embed.mask_embedding
    return params


# ---- the objective ----------------------------------------------------------------------------

def noise(ids: torch.Tensor, mask_id: int, eps: float, g: torch.Generator, span_share: float = 0.0,
          max_span: int = 64, t_max: float = 1.0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(B, L) clean ids -> noisy ids, (B, L) masked flags, (B,) t. At least one mask per row.

    Most rows: each token masked with probability t ~ U(eps, t_max) (the masked-diffusion ELBO
    with t_max = 1; engine.tools.scratch starts lower, see there). The floor eps bounds the 1/t
    weight: with eps = 0.001 a rare row at t ~ 0.001 (its one forced mask weighted ~1000) carried
    most of a batch's gradient and, after clipping, shrank everyone else's share of the step.
    A `span_share` of rows instead mask one contiguous run of 1..max_span tokens with everything
    around it clean, t = its share of the row: the editor's select-and-regenerate case, which
    independent masking almost never produces at a useful length (a 10-token run at t = 0.5 has
    probability 0.1%). With t the masked share, such a row's weighted loss is its mean CE."""
    B, L = ids.shape
    t = eps + (t_max - eps) * torch.rand(B, generator=g)                         # (B,)
    masked = torch.rand(B, L, generator=g) < t[:, None]                           # (B, L)
    forced = torch.randint(0, L, (B,), generator=g)
    masked[torch.arange(B), forced] = True
    if span_share > 0:
        is_span = torch.rand(B, generator=g) < span_share                        # (B,)
        length = torch.randint(1, max_span + 1, (B,), generator=g)                # (B,)
        start = (torch.rand(B, generator=g) * (L - length + 1)).long()            # (B,)
        pos = torch.arange(L)
        run = (pos >= start[:, None]) & (pos < (start + length)[:, None])        # (B, L)
        masked = torch.where(is_span[:, None], run, masked)
        t = torch.where(is_span, length / L, t)
    return torch.where(masked, torch.full_like(ids, mask_id), ids), masked, t


def diffusion_loss(net: LlamaNet, ids: torch.Tensor, noisy: torch.Tensor, masked: torch.Tensor,
                   t: torch.Tensor, start_id: int | None) -> torch.Tensor:
    """sum over masked positions of CE / t, divided by B * L. With a `start_id` the head is
    shifted: row i of [start] + noisy scores canvas token i (Dream, the bundled model); without,
    row i scores token i (LLaDA). The head runs on the masked rows only."""
    B, L = ids.shape
    h = net.hidden(with_start(noisy, start_id), causal=False)[:, :L]             # (B, L, d)
    logits = net.project(h[masked])                                              # (M, V)
    ce = F.cross_entropy(logits.float(), ids[masked], reduction="none")          # (M,)
    weight = (1.0 / t)[:, None].expand(B, L)[masked]                              # (M,)
    return (ce * weight).sum() / (B * L)


def with_start(ids: torch.Tensor, start_id: int | None) -> torch.Tensor:
    """(B, L) -> (B, L+1) with the start token in front, or unchanged without one."""
    if start_id is None:
        return ids
    return torch.cat([torch.full_like(ids[:, :1], start_id), ids], dim=1)


@torch.no_grad()
def heldout_loss(net: LlamaNet, rows: torch.Tensor, mask_id: int, start_id: int | None,
                 ratios: tuple[float, ...] = (0.15, 0.5, 0.9), seed: int = 1234) -> dict:
    """Mean masked CE and accuracy on fixed held-out rows at fixed masking ratios (same masks
    every call, so checkpoints are comparable)."""
    g = torch.Generator().manual_seed(seed)
    ce_sum = hits = count = 0.0
    for ratio in ratios:
        masked = (torch.rand(rows.shape, generator=g) < ratio).to(rows.device)
        noisy = torch.where(masked, torch.full_like(rows, mask_id), rows)
        h = net.hidden(with_start(noisy, start_id))[:, : rows.shape[1]]
        logits = net.project(h[masked])
        ce_sum += F.cross_entropy(logits, rows[masked], reduction="sum").item()
        hits += (logits.argmax(-1) == rows[masked]).sum().item()
        count += masked.sum().item()
    return {"heldout_ce": ce_sum / count, "heldout_acc": hits / count}


# ---- files ------------------------------------------------------------------------------------

def adapter_tensors(params: dict[str, nn.Parameter]) -> dict[str, torch.Tensor]:
    """LoRA factors in float16 (half the file; the merge reads them back as float32), the mask
    row in float32."""
    return {k: p.detach().to(torch.float32 if k == "mask_embedding" else torch.float16).contiguous()
            for k, p in params.items()}


def write_adapter(params: dict[str, nn.Parameter], path: Path, config: TrainConfig, info: dict) -> None:
    from safetensors.torch import save_file

    meta = {"lora_scale": str(config.scale), "format": "sharpen-lora-1",
            "base": "SmolLM2-135M-Instruct.Q4_1.gguf", "config": json.dumps(asdict(config)),
            "info": json.dumps(info)}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    save_file(adapter_tensors(params), str(tmp), metadata=meta)
    tmp.chmod(0o644)  # a file for the repository, not private state
    tmp.replace(path)


def save_checkpoint(path: Path, params: dict[str, nn.Parameter], opt: torch.optim.Optimizer,
                    step: int, g: torch.Generator, best: float, history: list[dict],
                    config: TrainConfig) -> None:
    state = {"params": {k: p.detach().clone() for k, p in params.items()}, "opt": opt.state_dict(),
             "step": step, "generator": g.get_state(), "torch_rng": torch.get_rng_state(),
             "best": best, "history": history, "config": asdict(config)}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    tmp.replace(path)


def load_checkpoint(path: Path, params: dict[str, nn.Parameter], opt: torch.optim.Optimizer,
                    g: torch.Generator) -> tuple[int, float, list[dict]]:
    state = torch.load(path, weights_only=False)
    with torch.no_grad():
        for k, p in params.items():
            p.copy_(state["params"][k])
    opt.load_state_dict(state["opt"])
    g.set_state(state["generator"])
    torch.set_rng_state(state["torch_rng"])
    return state["step"], state["best"], state["history"]


# ---- the run ----------------------------------------------------------------------------------

def lr_at(step: int, config: TrainConfig) -> float:
    """Warm-up, stable, decay: linear warm-up, then constant (so a run can be extended with
    --resume and more --steps), then, from `decay_from` on, linear to zero at `steps` (the
    cool-down that lets a constant-rate run settle; Hu et al. 2024, MiniCPM's WSD schedule)."""
    rate = config.lr * min(1.0, (step + 1) / config.warmup)
    if config.decay_from and step >= config.decay_from:
        rate *= (config.steps - step) / (config.steps - config.decay_from)
    return rate


def draw_batch(pools: dict[str, torch.Tensor], config: TrainConfig, g: torch.Generator) -> torch.Tensor:
    """(B, seq) rows, each from prose with probability prose_share, else from code."""
    prose = torch.rand(config.batch, generator=g) < config.prose_share
    rows = []
    for is_prose in prose.tolist():
        pool = pools["prose" if is_prose else "code"]
        rows.append(pool[torch.randint(0, pool.shape[0], (1,), generator=g)][0])
    return torch.stack(rows)


def train_step(net: LlamaNet, params: list[nn.Parameter], opt: torch.optim.Optimizer,
               pools: dict[str, torch.Tensor], config: TrainConfig, g: torch.Generator, step: int, *,
               mask_id: int, start_id: int | None, device: torch.device, t_max: float = 1.0,
               bf16: bool = False) -> tuple[float, int]:
    """One optimiser step on a fresh batch at `step`'s learning rate (clipped to norm 1); returns
    the loss and the batch's token count. Shared by the LoRA run and engine.tools.scratch.
    `bf16`: the forward under bfloat16 autocast (weights and optimiser state stay float32)."""
    for group in opt.param_groups:
        group["lr"] = lr_at(step, config)
    ids = draw_batch(pools, config, g)                                           # (B, L) on CPU
    noisy, masked, t = noise(ids, mask_id, config.eps, g, config.span_share, config.max_span, t_max)
    # Random draws stay on the CPU generator (same batches on every device); the batch moves.
    ids, noisy, masked, t = (x.to(device) for x in (ids, noisy, masked, t))
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
        loss = diffusion_loss(net, ids, noisy, masked, t, start_id)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, 1.0)
    opt.step()
    return loss.item(), ids.numel()


def train(net: LlamaNet, pools: dict[str, torch.Tensor], heldout: torch.Tensor, *, mask_id: int,
          start_id: int, config: TrainConfig, out: Path, checkpoint: Path, resume: bool,
          log_every: int = 5, stop_after_s: float | None = None, bf16: bool = False) -> list[dict]:
    """Run (or continue) training; writes the adapter on held-out improvement and the checkpoint
    every `checkpoint_every` steps. Returns the history (one dict per evaluation)."""
    params = attach(net, mask_id, config.rank, config.scale, config.seed)
    opt = torch.optim.AdamW(params.values(), lr=config.lr, betas=(0.9, 0.98), weight_decay=0.0)
    g = torch.Generator().manual_seed(config.seed + 1)
    step, best = 0, math.inf
    history: list[dict] = []
    if resume and checkpoint.is_file():
        step, best, history = load_checkpoint(checkpoint, params, opt, g)
        log.info(f"resumed at step {step} (best held-out CE {best:.4f})")
    if not history:  # the starting point of the curve: the base net read bidirectionally
        history.append({"step": 0, "train_loss": float("nan"), "tokens_per_s": 0.0, "time": time.time(),
                        **heldout_loss(net, heldout, mask_id, start_id)})
        log.info(f"eval {json.dumps(history[-1])}")
    net.train()
    started, tokens, window_loss, window_n = time.perf_counter(), 0, 0.0, 0
    while step < config.steps:
        loss, batch_tokens = train_step(net, list(params.values()), opt, pools, config, g, step,
                                        mask_id=mask_id, start_id=start_id, device=heldout.device,
                                        bf16=bf16)
        step += 1
        tokens += batch_tokens
        window_loss, window_n = window_loss + loss, window_n + 1
        if step % log_every == 0 or step == config.steps:
            rate = tokens / (time.perf_counter() - started)
            log.info(f"step {step}/{config.steps} loss {window_loss / window_n:.4f} "
                     f"lr {lr_at(step - 1, config):.2e} {rate:.0f} tok/s")
            window_loss, window_n = 0.0, 0
        out_of_time = stop_after_s is not None and time.perf_counter() - started > stop_after_s
        if step % config.checkpoint_every == 0 or step == config.steps or out_of_time:
            net.eval()
            scores = heldout_loss(net, heldout, mask_id, start_id)
            net.train()
            entry = {"step": step, "train_loss": loss, "tokens_per_s": tokens / (time.perf_counter() - started),
                     "time": time.time(), **scores}
            history.append(entry)
            log.info(f"eval {json.dumps(entry)}")
            if scores["heldout_ce"] < best:
                best = scores["heldout_ce"]
                write_adapter(params, out, config, {"step": step, **scores})
            save_checkpoint(checkpoint, params, opt, step, g, best, history, config)
        if out_of_time:
            break
    net.eval()
    return history


def step_seconds(net: LlamaNet, pools: dict[str, torch.Tensor], config: TrainConfig, *, mask_id: int,
                 start_id: int | None, device: torch.device, bf16: bool = False, steps: int = 4) -> float:
    """Seconds per optimiser step at `config`'s batch shape, timed on a copy of `net` after two
    warm-up steps (for sizing a run to a time budget)."""
    import copy

    probe = copy.deepcopy(net)
    params = list(attach(probe, mask_id, config.rank, config.scale, config.seed).values())
    opt = torch.optim.AdamW(params, lr=config.lr)
    g = torch.Generator().manual_seed(config.seed)
    for i in range(2 + steps):
        if i == 2:
            started = time.perf_counter()  # train_step's loss.item() has synchronised the device
        train_step(probe, params, opt, pools, config, g, config.warmup, mask_id=mask_id,
                   start_id=start_id, device=device, bf16=bf16)
    return (time.perf_counter() - started) / steps


def heldout_eval_rows(held: dict[str, torch.Tensor], count: int, seed: int = 99) -> torch.Tensor:
    """(count, seq) fixed held-out rows, half code and half prose, picked the same way every run."""
    g = torch.Generator().manual_seed(seed)
    half = count // 2
    return torch.cat([h[torch.randperm(h.shape[0], generator=g)[:n]]
                      for h, n in ((held["code"], half), (held["prose"], count - half))])


def batch_encoder(tokenizer):
    """texts -> their ids (no special tokens), a batch at a time: a fast tokenizer spreads a batch
    over every core, where one text at a time uses one."""
    return lambda texts: tokenizer(texts, add_special_tokens=False)["input_ids"]


def corpus_pools(train_docs: list, held_docs: list, encode, separator: int, seq: int, cache: Path | None,
                 encode_many=None) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Training rows by kind, and held-out rows by kind from stdlib + pydoc only (the rows the
    run's held-out curve has always used, whatever else trains), cached under `cache` if given.
    `encode_many` (a list of texts -> their ids) lets a fast tokenizer use every core."""
    from . import corpus

    held_docs = [d for d in held_docs if d.source in corpus.LICENCES]

    def rows(selection: list, name: str) -> torch.Tensor:
        if cache is None:
            return corpus.chunks(selection, encode, seq, separator, encode_many)
        return corpus.cached_chunks(selection, encode, seq, separator, cache / f"{name}-{seq}.pt",
                                    encode_many)

    kinds = ("code", "prose")
    return ({k: rows([d for d in train_docs if d.kind == k], f"chunks-{k}") for k in kinds},
            {k: rows([d for d in held_docs if d.kind == k], f"heldout-{k}") for k in kinds})


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="[%(module)s] %(message)s")  # progress to stderr
    defaults = TrainConfig()
    p = argparse.ArgumentParser(prog="python -m engine.tools.train", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    for name in ("steps", "seq", "batch", "rank", "warmup", "seed", "checkpoint_every", "eval_rows",
                 "max_span", "decay_from"):
        p.add_argument("--" + name.replace("_", "-"), type=int, default=getattr(defaults, name))
    for name in ("alpha", "lr", "eps", "prose_share", "span_share"):
        p.add_argument("--" + name.replace("_", "-"), type=float, default=getattr(defaults, name))
    p.add_argument("--out", type=Path, default=None, help="adapter file (default: the bundled one)")
    p.add_argument("--checkpoint", type=Path, default=None,
                   help="training state .pt (default: <data>/train/<out name>.pt, kept out of git)")
    p.add_argument("--resume", action="store_true", help="continue from the checkpoint if it exists")
    p.add_argument("--corpus", default="extended", choices=("extended", "stdlib"),
                   help="extended: stdlib + pydoc + permissively licensed installed packages")
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--max-minutes", type=float, default=None, help="stop (and save) after this long")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    config = TrainConfig(**{k: getattr(args, k) for k in asdict(defaults)})
    torch.manual_seed(config.seed)

    from ..families.bundled import ADAPTER, cache_folder, load_default
    from . import corpus
    model = load_default(device=args.device, adapter=None)
    out = args.out or ADAPTER
    data = cache_folder().parents[1]
    checkpoint = args.checkpoint or data / "train" / (out.stem + ".pt")
    train_docs, held_docs = corpus.split(corpus.extended_documents()[0] if args.corpus == "extended" else None)
    pools, held = corpus_pools(train_docs, held_docs, model.codec.encode, model.start_id, config.seq,
                               data / "train", batch_encoder(model.codec.tokenizer))
    heldout = heldout_eval_rows(held, config.eval_rows)
    log.info(f"rows: code {pools['code'].shape[0]}, prose {pools['prose'].shape[0]} "
             f"(x{config.seq} tokens); held-out eval rows {heldout.shape[0]}; threads "
             f"{torch.get_num_threads()}; checkpoint {checkpoint}")
    net = model.net
    assert isinstance(net, LlamaNet)  # the bundled model is dense (MoE nets are loaded elsewhere)
    dev = net.embed.weight.device
    train(net, pools, heldout.to(dev), mask_id=model.mask_id, start_id=model.start_id,
          config=config, out=out, checkpoint=checkpoint, resume=args.resume,
          stop_after_s=None if args.max_minutes is None else args.max_minutes * 60)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
