"""The denoising loop: one generator that yields every step's state, and `run` to drain it."""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Iterable, Iterator

import torch

from .commit import Layout, choose_commits, choose_remasks
from .context import make_context
from .model import DiffusionLM
from .settings import SamplerSettings


@dataclass(frozen=True)
class Step:
    """The canvas after one model forward. Tensors are CPU snapshots, safe to keep."""

    index: int                # 0-based step number
    tokens: torch.Tensor      # (B, L) ids; undecided slots hold the mask id (or a draft, uniform noise)
    masked: torch.Tensor      # (B, L) bool: slots still undecided
    confidence: torch.Tensor  # (B, L) prob of each slot's token when committed, of the current
                              #        guess while undecided; 1 outside spans and on forced tokens
    committed: torch.Tensor   # (B, L) bool: slots committed by this step
    committed_at: torch.Tensor  # (B, L) step a slot was committed at; -1 if context/forced/undecided
    top_ids: torch.Tensor     # (B, L, K) the model's top-K tokens at each slot when it was decided
    top_probs: torch.Tensor   # (B, L, K) their probabilities
    forwards: int             # model forwards so far
    elapsed: float            # seconds since the loop started
    texts: tuple[str, ...] = ()  # the document at this step, per candidate (set by `infill`)

    @property
    def done(self) -> bool:
        return not bool(self.masked.any())


def denoise(model: DiffusionLM, ids: torch.Tensor, span_ranges: tuple[tuple[int, int], ...],
            forced: torch.Tensor, settings: SamplerSettings) -> Iterator[Step]:
    """Regenerate the slots in `span_ranges` of `ids` (L,), except `forced` (L,) ones.

    1. Fill every slot to decide with noise: the mask id, or random tokens for uniform models.
    2. Run the model (whole canvas, or slots over cached context); read choice, confidence, entropy.
    3. Commit the slots the strategy ranks first, as many as it and the step budget ask for.
    4. Optionally send weak earlier commits back to undecided (self-correction).
    5. Yield the step; stop once no slot is undecided (the budget guarantees that happens).
    """
    start, device = time.perf_counter(), model.device
    g = torch.Generator(device=device).manual_seed(settings.seed)
    lay = Layout.of(span_ranges, settings.block_length, device)
    pos, B, K = lay.positions, settings.candidates, settings.alternatives
    tokens = ids.to(device).expand(B, -1).clone()                              # (B, L)
    fixed = forced.to(device)[pos].expand(B, -1)                               # (B, P)
    todo = ~fixed.clone()                                                      # (B, P)
    conf = torch.ones(todo.shape, device=device)                               # (B, P)
    born = torch.full(todo.shape, -1, dtype=torch.long, device=device)         # (B, P)
    top_ids = torch.zeros((*todo.shape, K), dtype=torch.long, device=device)   # (B, P, K)
    top_p = torch.zeros((*todo.shape, K), device=device)
    budget = step_budget(settings, lay, todo)
    ban = banned_bias(model, device)
    context = make_context(model, lay, settings)
    tokens[:, pos] = torch.where(todo, noise(model, todo.shape, g, ban), tokens[:, pos])  # 1
    for step in range(budget):
        logits = context.logits(tokens, step, todo)                            # 2 (B, P, V)
        guess, p, entropy, alt_p, alt_ids = read_predictions(logits, ban, settings.temperature, g, K,
                                                             settings.strategy == "entropy")
        conf = torch.where(todo, p, conf)
        now = todo & choose_commits(settings, lay, todo, p, entropy, budget - step, g)  # 3
        todo &= ~now
        tokens[:, pos] = torch.where(now, guess, tokens[:, pos])
        born = torch.where(now, step, born)
        top_ids = torch.where(now[..., None], alt_ids, top_ids)
        top_p = torch.where(now[..., None], alt_p, top_p)
        if settings.remask_below is not None and step < budget - 1:            # 4
            back = choose_remasks(lay, settings, ~todo & ~fixed, conf, now)
            todo |= back
            born = born.masked_fill(back, -1)
            tokens[:, pos] = torch.where(back, noise(model, todo.shape, g, ban), tokens[:, pos])
        if model.noise == "uniform":  # undecided slots show the model's current draft
            tokens[:, pos] = torch.where(todo, guess, tokens[:, pos])
        yield snapshot(step, tokens, pos, todo, conf, now, born, top_ids, top_p, start)  # 5
        if not bool(todo.any()):
            return


def step_budget(settings: SamplerSettings, layout: Layout, todo: torch.Tensor) -> int:
    """Most forwards: `steps`, else the widest span's slots to fill / `tokens_per_step`."""
    if settings.steps is not None:
        return settings.steps
    widest = int(layout.gather(todo, False).sum(-1).max())
    return -(-widest // settings.tokens_per_step)


def run(steps: Iterable[Step]) -> Step:
    """Drain a step stream and return its last step (for callers that only want the end)."""
    last = None
    for last in steps:
        pass
    if last is None:
        raise RuntimeError("the denoising loop yielded no step")
    return last


def banned_bias(model: DiffusionLM, device: torch.device) -> torch.Tensor:
    """(V,) 0 for ids a span may hold, -inf for the model's banned ids (mask, specials, padding)."""
    bias = torch.zeros(model.vocab_size, device=device)
    banned = [i for i in model.codec.banned_ids if i < model.vocab_size]
    bias[banned] = float("-inf")
    return bias


def noise(model: DiffusionLM, shape: torch.Size, g: torch.Generator, ban: torch.Tensor) -> torch.Tensor:
    """What an undecided slot holds: the mask id, or a uniformly random allowed token."""
    if model.noise == "mask":
        return torch.full(shape, model.mask_id, dtype=torch.long, device=ban.device)
    allowed = torch.isfinite(ban).nonzero().squeeze(-1)
    return allowed[torch.randint(len(allowed), shape, generator=g, device=ban.device)]


def read_predictions(logits: torch.Tensor, ban: torch.Tensor, temperature: float,
                     g: torch.Generator, k: int, with_entropy: bool = True):
    """(B, P, V) logits -> choice, its probability, entropy (B, P) and top-k probs/ids (B, P, K).
    Entropy is a full pass over the vocabulary (~5% of a cached 32-slot step of the bundled
    model on CPU); without `with_entropy` it is left at zero for strategies that never read it."""
    logits = logits.float() + ban[: logits.shape[-1]]
    probs = logits.softmax(-1)
    if temperature > 0:  # Gumbel-max draws from softmax(logits / temperature)
        u = torch.rand(logits.shape, generator=g, device=logits.device).clamp_(1e-20, 1.0)
        guess = (logits / temperature - torch.log(-torch.log(u))).argmax(-1)
    else:
        guess = logits.argmax(-1)
    p = probs.gather(-1, guess[..., None]).squeeze(-1)
    entropy = torch.special.entr(probs).sum(-1) if with_entropy else torch.zeros_like(p)
    alt_p, alt_ids = probs.topk(k, dim=-1)
    return guess, p, entropy, alt_p, alt_ids


def snapshot(step, tokens, pos, todo, conf, now, born, top_ids, top_p, start) -> Step:
    """Copy the loop's state out into full-canvas (B, L) CPU tensors."""
    def full(x_p: torch.Tensor, fill) -> torch.Tensor:
        out = torch.full((*tokens.shape, *x_p.shape[2:]), fill, dtype=x_p.dtype, device=x_p.device)
        out[:, pos] = x_p
        return out.cpu()
    return Step(index=step, tokens=tokens.cpu().clone(), masked=full(todo, False),
                confidence=full(conf, 1.0), committed=full(now, False), committed_at=full(born, -1),
                top_ids=full(top_ids, 0), top_probs=full(top_p, 0.0), forwards=step + 1,
                elapsed=time.perf_counter() - start)
