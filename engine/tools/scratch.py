"""`python -m engine.tools.scratch`: a tiny masked diffusion model trained from scratch, saved as a Dream folder.

It is the test suite's real model: a few MB, trained here on the same corpus as the bundled adapter
(engine.tools.corpus, held-out split by file), loaded by tests through `load_model(folder)`, the path a
user's Dream checkpoint takes. Tests need no 135M weights and still see a trained denoiser.

1. Train a byte-level BPE tokenizer on the training documents (`<|endoftext|>`, `<|mask|>`).
2. Build a small LlamaNet and train every weight with the masked-diffusion objective of
   engine.tools.train (independent masks plus span rows) with Dream's shifted head: net row i-1 scores
   canvas token i, `<|endoftext|>` in front during training.
3. Write config.json (Dream keys), model.safetensors (Qwen2 names, float16), the tokenizer files
   and training.json (settings and held-out figures) to the output folder.

Why shifted: from scratch, an unshifted (LLaDA-style) net sat at the unigram level here for 1,500
steps, whatever the learning rate, init or a causal warm-up; a masked slot's own row holds only
the mask, so nothing is learnt until attention finds the neighbours. With the shift, the row that
scores token i holds token i-1 itself, so bigram statistics come through the residual stream at
once and attention builds on them (the same reason Dream keeps the AR alignment).
"""
from __future__ import annotations

import argparse
import json
import logging
import math
import time
from dataclasses import asdict
from pathlib import Path

import torch

from ..families.dream import dream_config
from ..families.llama import HF_LLAMA_NAMES
from ..families.llama_net import LlamaNet, LlamaShape
from . import corpus
from .train import TrainConfig, heldout_loss, train_step

log = logging.getLogger(__name__)

FIXTURE = Path(__file__).resolve().parents[2] / "tests" / "fixtures" / "tiny-dream"
SPECIALS = ("<|endoftext|>", "<|mask|>")
SHAPE = LlamaShape(vocab=1024, width=128, layers=4, heads=4, kv_heads=4, ffn=384, rope_theta=10000.0,
                   norm_eps=1e-5, tie_embeddings=False, max_length=1024)
# eps 0.05: with t ~ U(0.001, ...) a row masked at t = 0.001 weighs 1000 times a full one and, after
# clipping, a step learns from little else; 0.05 caps the weight at 20.
CONFIG = TrainConfig(steps=3000, seq=128, batch=16, lr=3e-3, warmup=50, decay_from=2000, eps=0.05,
                     span_share=0.3, max_span=48, checkpoint_every=250, eval_rows=32)


def train_tokenizer(texts: list[str], vocab: int):
    """A byte-level BPE (GPT-2 / Qwen style) with the two special tokens, as a transformers
    tokenizer so `save_pretrained` writes the files every loader reads."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab, special_tokens=list(SPECIALS), show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(texts, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=SPECIALS[0], pad_token=SPECIALS[0],
                                   mask_token=SPECIALS[1])


def init_weights(net: LlamaNet, seed: int) -> LlamaNet:
    """N(0, 0.02) matrices, output projections scaled by 1/sqrt(2 * layers) (GPT-2), norms at 1."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in net.named_parameters():
            if p.dim() == 1:
                p.fill_(1.0)
                continue
            residual = name.endswith(("attn.o.weight", "mlp.down.weight"))
            std = 0.02 / math.sqrt(2 * net.shape.layers) if residual else 0.02
            p.copy_(torch.randn(p.shape, generator=g) * std)
    return net


def mask_rate_ceiling(step: int, steps: int) -> float:
    """Highest masking rate drawn at `step`: 0.2 at first, rising linearly to 1 by mid-run.
    From scratch, rows that are mostly masks teach a tiny net nothing until it knows some local
    statistics: here 200 steps at a fixed 15% rate reached held-out CE 4.96 where t ~ U(0, 1)
    stayed at 5.4-5.6, the unigram level. The second half trains the full objective."""
    return min(1.0, 0.2 + 0.8 * step / max(1, steps // 2))


def train_scratch(net: LlamaNet, pools: dict[str, torch.Tensor], heldout: torch.Tensor, mask_id: int,
                  start_id: int | None, config: TrainConfig, log_every: int = 50) -> list[dict]:
    """Every weight trained on the masked-diffusion loss (shifted head when `start_id` is set)."""
    net.requires_grad_(True).train()
    params = list(net.parameters())
    opt = torch.optim.AdamW(params, lr=config.lr, betas=(0.9, 0.95), weight_decay=0.01)
    g = torch.Generator().manual_seed(config.seed + 1)
    history = [{"step": 0, **heldout_loss(net, heldout, mask_id, start_id)}]
    started, window = time.perf_counter(), []
    for step in range(config.steps):
        loss, batch_tokens = train_step(net, params, opt, pools, config, g, step, mask_id=mask_id,
                                        start_id=start_id, device=heldout.device,
                                        t_max=mask_rate_ceiling(step, config.steps))
        window.append(loss)
        done = step + 1
        if done % log_every == 0 or done == config.steps:
            rate = done * batch_tokens / (time.perf_counter() - started)
            log.info(f"step {done}/{config.steps} loss {sum(window) / len(window):.3f} "
                     f"{rate:.0f} tok/s")
            window = []
        if done % config.checkpoint_every == 0 or done == config.steps:
            net.eval()
            history.append({"step": done, **heldout_loss(net, heldout, mask_id, start_id)})
            net.train()
            log.info(f"eval {json.dumps(history[-1])}")
    net.requires_grad_(False).eval()
    return history


def save_dream_folder(folder: Path, net: LlamaNet, tokenizer, info: dict) -> None:
    """The folder a Dream user would have: config.json, model.safetensors, tokenizer files."""
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    state = {HF_LLAMA_NAMES.theirs(k): v.detach().to(torch.float16).contiguous() for k, v in net.state_dict().items()}
    save_file(state, str(folder / "model.safetensors"))
    (folder / "model.safetensors").chmod(0o644)  # a file for the repository, not private state
    config = dream_config(net.shape, tokenizer.mask_token_id, tokenizer.eos_token_id)
    (folder / "config.json").write_text(json.dumps(config, indent=1) + "\n")
    tokenizer.save_pretrained(folder)
    (folder / "training.json").write_text(json.dumps(info, indent=1) + "\n")


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="[%(module)s] %(message)s")  # progress to stderr
    p = argparse.ArgumentParser(prog="python -m engine.tools.scratch", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=FIXTURE, help=f"folder to write (default: {FIXTURE})")
    p.add_argument("--steps", type=int, default=CONFIG.steps)
    p.add_argument("--threads", type=int, default=None)
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    config = TrainConfig(**{**asdict(CONFIG), "steps": args.steps,
                            "decay_from": min(CONFIG.decay_from, args.steps * 2 // 3)})
    torch.manual_seed(config.seed)
    train_docs, held_docs = corpus.split()
    tokenizer = train_tokenizer([d.text for d in train_docs], SHAPE.vocab)
    if len(tokenizer) > SHAPE.vocab:
        raise ValueError(f"tokenizer has {len(tokenizer)} ids, the net only {SHAPE.vocab}")
    encode, sep = (lambda s: tokenizer.encode(s, add_special_tokens=False)), tokenizer.eos_token_id
    pools = {kind: corpus.chunks([d for d in train_docs if d.kind == kind], encode, config.seq, sep)
             for kind in ("code", "prose")}
    held = torch.cat([corpus.chunks([d for d in held_docs if d.kind == kind], encode, config.seq, sep)
                      [: config.eval_rows // 2] for kind in ("code", "prose")])
    log.info(f"tokenizer {len(tokenizer)} ids; rows: code {pools['code'].shape[0]}, prose "
             f"{pools['prose'].shape[0]}; held-out eval rows {held.shape[0]}")
    net = init_weights(LlamaNet(SHAPE), config.seed)
    started = time.perf_counter()
    history = train_scratch(net, pools, held, tokenizer.mask_token_id, tokenizer.eos_token_id, config)
    info = {"config": asdict(config), "shape": asdict(SHAPE), "history": history,
            "parameters": sum(p.numel() for p in net.parameters()),
            "train_tokens": config.steps * config.batch * config.seq,
            "minutes": (time.perf_counter() - started) / 60, "threads": torch.get_num_threads(),
            "data": "engine.tools.corpus training split (CPython stdlib source + pydoc topics, PSF licence)"}
    save_dream_folder(args.out, net, tokenizer, info)
    log.info(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
