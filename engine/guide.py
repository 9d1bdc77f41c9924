"""The frontier guide: a causal language model steering the denoiser where the text is being written.

A denoiser sees both sides of a span; a causal LM writes fluent text but sees only the left. At each
step, the first undecided slot of the spans (the frontier: everything to its left is decided) gets
a product of the two experts (Hinton 2002):

    log p(x) = log p_denoiser(x) + w * log p_causal(x | every token before the slot) + const

and the loop reads choice and confidence from that. A guided run commits left to right, the
frontier slot each forward (in the denoiser's own order, slots past the frontier were written by
the denoiser alone and kept its defects: docs/MODEL.md, "Frontier guide"), so it takes one
forward per token unless `steps` allows fewer, when the commit strategy adds its own choice.

The causal LM reads the canvas left to right with a key/value cache: rows that every candidate has
decided are kept, so a step that moves the frontier by k tokens costs a causal forward over about
k rows, not over the window. The text before the spans is read once for every run that shares it
(the view's remembered reads: the trials of an "auto" length, a repeated edit). The other rows do
not depend on the step's denoiser logits, so `prepare` hands them to the loop before its forward,
as a call that rides along with it (one packed pass for the Llama family, where ~2 more rows cost
next to nothing; alone elsewhere); `steer` then mixes.
Each guided step syncs the host a few times (the frontier's rows).

Over cached context the frontier waits one forward: the first forward runs the denoiser alone and
commits nothing, so its step (the denoiser's draft of every slot, nothing steered yet) comes back
without the causal read and, at a one-token span, the closing; the read rides with the second
forward, a cached one over the same canvas (the same logits), and commits as the first would have.
One more forward of the span's rows buys a first step drawn after the denoiser's forward alone.
"""
from __future__ import annotations

from typing import Any

import torch

from .commit import Layout
from .context import caches_context
from .model import CausalCall, CausalView, DiffusionLM
from .settings import DEFAULT_PRESET, GUIDED_PRESET, SamplerSettings

GUIDE_CONTEXT = 256  # tokens of text before the spans the causal LM reads when context_window is none
CLOSING_CHOICES = 8  # a span's last slot: the mixed distribution's best tokens, each tried before...
CLOSING_TOKENS = 4   # ...this many tokens of the text after it, read by the causal LM


class NoGuide:
    """The guide that is off: the denoiser's logits as they are, no slot guided."""

    waits = 0  # forwards added to the loop's budget: the guide's first forward that commits nothing

    def prepare(self, tokens: torch.Tensor, todo: torch.Tensor) -> list[CausalCall]:
        """The calls to run beside this step's denoiser forward; `steer` gets their answers."""
        return []

    def steer(self, logits: torch.Tensor, read: list[Any], tokens: torch.Tensor, todo: torch.Tensor,
              ban: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return logits, torch.zeros(todo.shape, dtype=torch.bool, device=todo.device)

    def commits(self, chosen: torch.Tensor, guided: torch.Tensor, todo: torch.Tensor,
                steps_left: int) -> torch.Tensor:
        """(B, P) the slots to commit, from the strategy's choice and the guided slots."""
        return chosen


class FrontierGuide(NoGuide):
    """The causal LM's next-token log-probs mixed into each candidate's frontier slot (module doc).

    Rows: row 0 is the causal LM's start token, row j >= 1 holds canvas position `first + j - 1`,
    where `first` is where the window of text it reads begins; the row that predicts canvas
    position f is therefore f - first. `past` caches rows [0, cached), each decided in every
    candidate; `seen` (B, cached) remembers their ids, so a slot sent back to undecided
    (remask_below) drops the cache from there on."""

    def __init__(self, view: CausalView, layout: Layout, weight: float, context: int, wait: bool = False):
        self.view, self.layout, self.weight = view, layout, weight
        self.waits, self.waiting = int(wait), wait                             # the first forward: the draft
        self.first = max(0, int(layout.positions[0]) - context)
        self.past: Any = None
        self.seen: torch.Tensor | None = None                                  # (B, cached) row ids
        self.asked: tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, int] | None = None

    def prepare(self, tokens: torch.Tensor, todo: torch.Tensor) -> list[CausalCall]:
        """The causal read of each open candidate's rows up to its frontier (the cached ones left
        out): a call to run with the denoiser's forward."""
        open_ = todo.any(-1)                                                   # (B,) not yet done
        if self.waiting or not bool(open_.any()):  # the draft forward: the denoiser alone (module doc)
            self.asked = None
            return []
        at = open_.nonzero().squeeze(-1)                                       # (O,) open candidates
        slot = todo[at].int().argmax(-1)                                       # (O,) frontier, P-space
        rows = self.layout.positions[slot] - self.first                        # (O,) rows predicting them
        low, need = int(rows.min()), int(rows.max())
        ids = self.row_ids(tokens, need + 1)                                   # (B, need + 1)
        cached = self.keep_agreeing(ids, low) or self.shared_rows(ids, low)
        self.asked = (at, slot, rows, ids[:, :low], cached)
        return [CausalCall(self.view, ids[:, cached:], self.past)]

    def steer(self, logits: torch.Tensor, read: list[Any], tokens: torch.Tensor, todo: torch.Tensor,
              ban: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, P, V) denoiser logits, `read` the answer to `prepare`'s call, (B, L) canvas, (B, P)
        undecided, `ban` (V,) or (B | 1, P, V) -inf where a slot may not take a token -> the
        logits with each candidate's frontier slot replaced by the product of experts (banned
        tokens kept out of it, so the closing's choices are allowed ones), and (B, P) guided slots."""
        if self.asked is None:
            return super().steer(logits, read, tokens, todo, ban)
        (at, slot, rows, decided, cached), self.asked = self.asked, None
        out, past = read[0]                                                    # (B, need + 1 - cached, V)
        low = decided.shape[1]
        self.past, self.seen = self.view.truncate(past, low), decided          # rows < low: decided in all
        causal = out[at, rows - cached].float().log_softmax(-1)                # (O, V)
        V = logits.shape[-1]
        banned = ban[..., :V].expand(*todo.shape, V)[at, slot]                  # (O, V)
        mixed = (logits[at, slot].float() + banned).log_softmax(-1) + self.weight * causal  # (O, V)
        mixed = self.close(mixed, tokens, todo, at, slot, rows, past)
        steered = logits.float().clone()
        steered[at, slot] = mixed
        guided = torch.zeros(todo.shape, dtype=torch.bool, device=todo.device)
        guided[at, slot] = True
        return steered, guided

    def close(self, mixed: torch.Tensor, tokens: torch.Tensor, todo: torch.Tensor, at: torch.Tensor,
              slot: torch.Tensor, rows: torch.Tensor, past: Any) -> torch.Tensor:
        """Where a frontier slot has decided text right after it (its span's last undecided slot),
        the join matters most and the causal LM alone cannot see it: its `CLOSING_CHOICES` best
        tokens are kept, each scored by the causal LM's log-prob of the next `CLOSING_TOKENS`
        tokens after it (a one-token lookahead), w times, as the guide's own term. (O, V) in, out."""
        L, M = tokens.shape[1], CLOSING_TOKENS
        where = self.layout.positions[slot]                                    # (O,) canvas positions
        ahead = where[:, None] + 1 + torch.arange(M, device=where.device)      # (O, M)
        undecided = torch.zeros(tokens.shape, dtype=torch.bool, device=tokens.device)
        undecided[:, self.layout.positions] = todo
        inside = ahead < L
        blocked = (undecided[at[:, None], ahead.clamp(max=L - 1)] & inside).any(-1)  # (O,)
        closing = (~blocked & inside[:, 0]).nonzero().squeeze(-1).tolist()
        for o in closing:  # once per span and candidate, at its last slot: a loop over few rows
            n = int(inside[o].sum())
            choices = mixed[o].topk(CLOSING_CHOICES).indices                   # (K,)
            after = tokens[at[o], ahead[o, :n]].expand(len(choices), -1)       # (K, n)
            state = self.view.pick(self.view.truncate(past, int(rows[o]) + 1), at[o].repeat(len(choices)))
            # the last token after is read by none of the n rows that score them: not fed
            out, _ = self.view.extend(torch.cat([choices[:, None], after[:, :-1]], 1), state)  # (K, n, V)
            reads = out.float().log_softmax(-1).gather(-1, after[..., None]).squeeze(-1).sum(-1)
            kept = torch.full_like(mixed[o], float("-inf"))
            kept[choices] = mixed[o, choices] + self.weight * reads
            mixed[o] = kept
        return mixed

    def commits(self, chosen: torch.Tensor, guided: torch.Tensor, todo: torch.Tensor,
                steps_left: int) -> torch.Tensor:
        """Left to right: the frontier slot alone, so every token is written by both experts; the
        strategy's choice too only where the step budget cannot wait for one token per forward."""
        waited, self.waiting = self.waiting, False  # the draft's forward is not one the budget counted
        behind = todo.sum(-1) > steps_left - int(waited)                       # (B,)
        return guided | (chosen & behind[:, None])

    def row_ids(self, tokens: torch.Tensor, rows: int) -> torch.Tensor:
        """(B, rows) the causal LM's input: the start token, then the canvas from `first`."""
        start = torch.full((tokens.shape[0], 1), self.view.start_id, dtype=tokens.dtype, device=tokens.device)
        return torch.cat([start, tokens[:, self.first:self.first + rows - 1]], 1)[:, :rows]

    def shared_rows(self, ids: torch.Tensor, low: int) -> int:
        """With nothing cached yet: rows [0, low) from the view's remembered reads (the same text
        before the span, read by another trial of an "auto" regeneration or an earlier edit), the
        same in every candidate; how many. Read alone if no one has read them, so the others can."""
        if low <= 1 or not bool((ids[:, :low] == ids[:1, :low]).all()):   # only the start row, or not shared
            return 0
        self.past = self.view.pick(self.view.prefix(ids[0, :low]), ids.new_zeros(ids.shape[0]))
        return low

    def keep_agreeing(self, ids: torch.Tensor, low: int) -> int:
        """How many cached rows stay: none from the first whose id changed (a commit sent back to
        undecided) or from `low`, the lowest row a frontier now needs, on."""
        keep = 0 if self.seen is None else min(self.seen.shape[1], low)
        if keep and self.seen is not None:
            changed = (ids[:, :keep] != self.seen[:, :keep]).any(0)             # (keep,)
            if bool(changed.any()):
                keep = int(changed.int().argmax())
        self.past = self.view.truncate(self.past, keep)
        return keep


def make_guide(model: DiffusionLM, layout: Layout, settings: SamplerSettings) -> NoGuide:
    """The guide `settings.guide` asks for: none at 0, else the model's causal view. Over cached
    context with the budget the loop's own, the frontier waits one forward (module doc); a full
    forward would cost another whole one, and a budget of `steps` has no forward to spare."""
    view = causal_view_for(model, settings)
    if view is None:
        return NoGuide()
    wait = caches_context(model, settings) and settings.steps is None
    return FrontierGuide(view, layout, settings.guide, settings.context_window or GUIDE_CONTEXT, wait)


def causal_view_for(model: DiffusionLM, settings: SamplerSettings) -> CausalView | None:
    """The causal LM that guides `model` under `settings` (None with guide 0); a ValueError naming
    the setting where it asks for one the model has not. Entry points call it before a run starts."""
    if settings.guide == 0:
        return None
    view = model.causal_view()
    if view is None:
        raise ValueError(f"guide: {model.label} has no causal language model over its vocabulary on "
                         "this machine to guide with (the bundled model's own base is one); set guide 0")
    return view


def default_preset(model: DiffusionLM) -> str:
    """The preset a run starts from when none is named: the guided one where the model has a causal
    view to guide it (the bundled model), else the plain default."""
    return GUIDED_PRESET if model.causal_view() is not None else DEFAULT_PRESET
