"""The denoising loop: one generator that yields every step's state, and `run` to drain it."""
from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import torch

from .commit import Layout, choose_commits, choose_remasks
from .context import Carry, make_context
from .guide import make_guide
from .model import DiffusionLM
from .settings import SamplerSettings


@dataclass(frozen=True)
class Step:
    """The span slots after one model forward, as small CPU tensors: safe to keep, no copy of the
    document. P-space lists every slot of every span in document order; `positions` says where
    each one sits in the canvas (outside them the canvas never changes)."""

    index: int                # 0-based step number
    positions: torch.Tensor   # (P,) canvas index of each slot (the same tensor for every step of a run)
    tokens: torch.Tensor      # (B, P) ids; undecided slots hold the mask id (or a draft, uniform noise)
    masked: torch.Tensor      # (B, P) bool: slots still undecided
    confidence: torch.Tensor  # (B, P) prob of each slot's token when committed, of the current
                              #        guess while undecided; 1 on forced tokens
    committed: torch.Tensor   # (B, P) bool: slots committed by this step
    committed_at: torch.Tensor  # (B, P) step a slot was committed at; -1 if forced or undecided
    guided: torch.Tensor      # (B, P) bool: slots whose token the frontier guide steered
    top_ids: torch.Tensor     # (B, P, K) the model's top-K tokens at each slot when it was decided;
                              #           while undecided, at this forward (its draft; 0 before any)
    top_probs: torch.Tensor   # (B, P, K) their probabilities
    forwards: int             # model forwards so far
    elapsed: float            # seconds since the loop started
    texts: tuple[str, ...] = ()  # the document at this step, per candidate (set by `infill`)
    round: int = 0            # 0: the fill; 1..: a correction round (engine.correct) re-denoising flagged slots

    @property
    def done(self) -> bool:
        return not bool(self.masked.any())

    @property
    def nbytes(self) -> int:
        """About the bytes this step holds: its tensors' storages (shared ones once) and its documents'
        characters."""
        storages = {t.untyped_storage().data_ptr(): t.untyped_storage().nbytes()
                    for t in vars(self).values() if isinstance(t, torch.Tensor)}
        return sum(storages.values()) + sum(len(text) for text in self.texts)

    def slot(self, position: int) -> int | None:
        """The P index of canvas `position`, None outside the spans."""
        i = int(torch.searchsorted(self.positions, position))
        return i if i < len(self.positions) and int(self.positions[i]) == position else None


def denoise(model: DiffusionLM, ids: torch.Tensor, span_ranges: tuple[tuple[int, int], ...],
            forced: torch.Tensor, settings: SamplerSettings, bias: torch.Tensor | None = None,
            deadline: float | None = None, carry: Carry | None = None) -> Iterator[Step]:
    """Regenerate the slots in `span_ranges` of `ids` (L,), except `forced` (L,) ones. `ids` and
    `forced` may also be (B, L), one row per candidate (a correction round redoes each one's own
    slots); `bias` (V,), (P, V) or (B, P, V) is added to the logits, -inf where a slot must not
    take a token (scope constraints, engine.scope; tokens a correction round rejects). Past
    `deadline` (time.monotonic()), the next step is the last: the budget's rule commits every slot left.
    `carry`: a context cache handed on from a run over the same window (engine.context.Carry).

    1. Fill every slot to decide with noise: the mask id, or random tokens for uniform models.
    2. Run the model (whole canvas, or slots over cached context), the frontier guide's causal read
       riding along; the guide steers the first undecided slot (engine/guide.py); read choice,
       confidence, entropy.
    3. Commit the slots the strategy ranks first, as many as it and the step budget ask for
       (with the guide: the frontier slot, left to right; over cached context none at its
       first forward, whose step shows the denoiser's draft: engine/guide.py).
    4. Optionally send weak earlier commits back to undecided (self-correction).
    5. Yield the step; stop once no slot is undecided (the budget guarantees that happens).
    """
    start, device = time.perf_counter(), model.device
    g = torch.Generator(device=device).manual_seed(settings.seed)
    lay = Layout.of(span_ranges, settings.block_length, device)
    pos, B, K = lay.positions, settings.candidates, settings.alternatives
    tokens = ids.to(device).expand(B, -1).clone()                              # (B, L)
    fixed = forced.to(device)[..., pos].expand(B, -1)                          # (B, P)
    todo = ~fixed.clone()                                                      # (B, P)
    conf = torch.ones(todo.shape, device=device)                               # (B, P)
    born = torch.full(todo.shape, -1, dtype=torch.long, device=device)         # (B, P)
    steered = torch.zeros_like(todo)                                           # (B, P)
    top_ids = torch.zeros((*todo.shape, K), dtype=torch.long, device=device)   # (B, P, K)
    top_p = torch.zeros((*todo.shape, K), device=device)
    temps = temperatures(settings, device)                                     # (B,) or None: argmax
    ban = banned_bias(model, device)
    allowed = torch.isfinite(ban).nonzero().squeeze(-1)                       # (A,) once, not per step
    ban = ban if bias is None else ban + bias.to(device)                       # (V,) or (B|1, P, V)
    context = make_context(model, lay, settings, carry)
    guide = make_guide(model, lay, settings)
    budget = step_budget(settings, lay, todo) + guide.waits
    where = lay.positions.cpu()
    tokens[:, pos] = torch.where(todo, noise(model, todo.shape, g, allowed), tokens[:, pos])  # 1
    for step in range(budget):
        if deadline is not None and time.monotonic() >= deadline:
            budget = step + 1  # out of time: this step commits what is left, and nothing is remasked
        logits, read = context.logits(tokens, step, todo, guide.prepare(tokens, todo))  # 2 (B, P, V)
        logits, guided = guide.steer(logits, read, tokens, todo, ban)
        guess, p, entropy, alt_p, alt_ids = read_predictions(logits, ban, temps, g, K,
                                                             settings.strategy == "entropy")
        conf = torch.where(todo, p, conf)
        now = todo & choose_commits(settings, lay, todo, p, entropy, step, budget, g)  # 3
        now = guide.commits(now, guided, todo, budget - step)
        todo &= ~now
        tokens[:, pos] = torch.where(now, guess, tokens[:, pos])
        born = torch.where(now, step, born)
        steered = torch.where(now, guided, steered)
        seen = (now | todo)[..., None]  # committed now: its choices; still undecided: its draft
        top_ids = torch.where(seen, alt_ids, top_ids)
        top_p = torch.where(seen, alt_p, top_p)
        if settings.remask_below is not None and step < budget - 1:            # 4
            back = choose_remasks(lay, settings, ~todo & ~fixed, conf, now)
            todo |= back
            born = born.masked_fill(back, -1)
            steered &= ~back
            tokens[:, pos] = torch.where(back, noise(model, todo.shape, g, allowed), tokens[:, pos])
        if model.noise == "uniform":  # undecided slots show the model's current draft
            tokens[:, pos] = torch.where(todo, guess, tokens[:, pos])
        out = snapshot(step, where, tokens[:, pos], todo, conf, now, born, steered, top_ids, top_p, start)
        yield out                                                              # 5
        if out.done:  # read from the copy: no extra host sync
            return


def step_budget(settings: SamplerSettings, layout: Layout, todo: torch.Tensor) -> int:
    """Most forwards: `steps`, else the widest span's slots to fill / `tokens_per_step`."""
    if settings.steps is not None:
        return settings.steps
    widest = int(layout.gather(todo, False).sum(-1).max())
    return -(-widest // settings.tokens_per_step)


def run(steps: Iterable[Step]) -> Step:
    """Drain a step stream and return its last step (for callers that only want the end)."""
    last: Step | None = None
    for step in steps:
        last = step
    if last is None:
        raise RuntimeError("the denoising loop yielded no step")
    return last


def banned_bias(model: DiffusionLM, device: torch.device) -> torch.Tensor:
    """(V,) 0 for ids a span may hold, -inf for the model's banned ids (mask, specials, padding)."""
    bias = torch.zeros(model.vocab_size, device=device)
    banned = [i for i in model.codec.banned_ids if i < model.vocab_size]
    bias[banned] = float("-inf")
    return bias


def noise(model: DiffusionLM, shape: torch.Size, g: torch.Generator, allowed: torch.Tensor) -> torch.Tensor:
    """What an undecided slot holds: the mask id, or a uniformly random one of the `allowed` ids."""
    if model.noise == "mask":
        if model.mask_id is None:
            raise ValueError(f"{model.label} is a mask-noise model without a mask id")
        return torch.full(shape, model.mask_id, dtype=torch.long, device=allowed.device)
    return allowed[torch.randint(len(allowed), shape, generator=g, device=allowed.device)]


def temperatures(settings: SamplerSettings, device: torch.device) -> torch.Tensor | None:
    """(B,) each candidate's sampling temperature, None when every one takes the argmax. At
    temperature 0 with several candidates, candidates 2.. sample at `candidate_temperature`
    (candidate 1 stays the argmax), so N candidates are not N copies."""
    if settings.temperature == 0 and (settings.candidates == 1 or settings.candidate_temperature == 0):
        return None
    temps = torch.full((settings.candidates,), settings.temperature, device=device)
    if settings.temperature == 0:
        temps[1:] = settings.candidate_temperature
    return temps


def read_predictions(logits: torch.Tensor, ban: torch.Tensor, temps: torch.Tensor | None, g: torch.Generator,
                     k: int, with_entropy: bool = True
                     ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(B, P, V) logits -> choice, its probability, entropy (B, P) and top-k probs/ids (B, P, K).
    `temps` (B,): each candidate's temperature, 0 the argmax (None: all 0).
    Entropy is a full pass over the vocabulary (~5% of a cached 32-slot step of the bundled
    model on CPU); without `with_entropy` it is left at zero for strategies that never read it."""
    logits = logits.float() + ban[..., : logits.shape[-1]]
    probs = logits.softmax(-1)
    guess = logits.argmax(-1)                                                  # (B, P)
    if temps is not None:  # Gumbel-max draws from softmax(logits / temperature)
        u = torch.rand(logits.shape, generator=g, device=logits.device).clamp_(1e-20, 1.0)
        t = temps[:, None, None]                                               # (B, 1, 1)
        drawn = (logits / t.clamp(min=1e-6) - torch.log(-torch.log(u))).argmax(-1)
        guess = torch.where(t[..., 0] > 0, drawn, guess)
    p = probs.gather(-1, guess[..., None]).squeeze(-1)
    entropy = torch.special.entr(probs).sum(-1) if with_entropy else torch.zeros_like(p)
    alt_p, alt_ids = probs.topk(k, dim=-1)
    return guess, p, entropy, alt_p, alt_ids


def snapshot(step: int, where: torch.Tensor, tokens_p: torch.Tensor, todo: torch.Tensor, conf: torch.Tensor,
             now: torch.Tensor, born: torch.Tensor, steered: torch.Tensor, top_ids: torch.Tensor,
             top_p: torch.Tensor, start: float) -> Step:
    """Copy the span slots' state to the CPU: one integer and one float transfer (each waits for
    the device), views of them on the CPU side. `where` (P,) the slots' canvas positions; the
    slots' tokens, still-masked flags, confidence, this step's commits, commit step and guided
    flags (B, P); their top-K ids and probabilities (B, P, K); `start`: perf_counter at the run's
    start."""
    ints = torch.cat([tokens_p[..., None], todo[..., None], now[..., None], born[..., None],
                      steered[..., None], top_ids], -1).cpu()                  # (B, P, 5 + K)
    floats = torch.cat([conf[..., None], top_p], -1).cpu()                     # (B, P, 1 + K)
    return Step(index=step, positions=where, tokens=ints[..., 0], masked=ints[..., 1].bool(),
                confidence=floats[..., 0], committed=ints[..., 2].bool(), committed_at=ints[..., 3],
                guided=ints[..., 4].bool(), top_ids=ints[..., 5:], top_probs=floats[..., 1:], forwards=step + 1,
                elapsed=time.perf_counter() - start)
