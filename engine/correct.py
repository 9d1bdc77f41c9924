"""Correction rounds: once the spans are filled, a checker names what a reader rejects at sight
(a doubled word, a line that does not parse); those slots and their least confident neighbours are
denoised again, for up to `correct_rounds` more rounds.

Each round is a further run of the one loop (`infill`), as engine.resize runs its rounds: the
canvas is rebuilt per candidate with every slot that passed the check forced, and the slots to redo
left free. A slot the checker pointed at may not take the token it held (a per-slot banned-token
bias), so the same draw does not come back; where the checker also names words the text may not
start with there, every token that begins with one of them is banned there too (and on the slots
before it in its span, which a later round may redo). The checker is a plain callable; the entry
points bring it (editor.checks knows languages; the engine knows none).
"""
from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Collection, Iterator, Sequence

import torch

from .canvas import Canvas, between
from .context import Carry
from .infill import infill
from .loop import Step
from .model import DiffusionLM
from .scope import scope_bias, starting_with
from .settings import SamplerSettings

log = logging.getLogger(__name__)

# (document before, document after, [start, end) of the span in before, [start, end) of its new
# text in after) -> character ranges of `after` to redo, each perhaps with words its redone text may
# not start with (`(start, end, {"if", "for"})`); none when the edit reads as it should.
Place = tuple[int, int] | tuple[int, int, Collection[str]]
Checker = Callable[[str, str, tuple[int, int], tuple[int, int]], Sequence[Place]]
# (candidate, (P,) slots, words): where a round bans every token that begins with one of the words.
WordBan = tuple[int, torch.Tensor, frozenset[str]]


def corrected(model: DiffusionLM, canvas: Canvas, settings: SamplerSettings,
              checker: Checker | None = None, deadline: float | None = None) -> Iterator[Step]:
    """The steps of an edit: `infill` under the scope constraints, then correction rounds (none
    starts past `deadline`, time.monotonic())."""
    return iter(CorrectingInfill(model, canvas, settings, checker, deadline))


class CorrectingInfill:
    """Denoise `canvas`, then repair what `checker` rejects; iterate for the steps.

    1. Run `infill` (the one loop) with the scope bias (engine.scope).
    2. Check each candidate's spans; map the character ranges the checker names to slots, add the
       less confident neighbour of each, and ban each named slot's old token there (and the tokens
       that begin with words the checker names).
    3. If any slot is to be redone and rounds are left, run the loop again on a canvas where every
       other slot is forced (a new seed per round); its steps carry `round` = 1, 2, ... With
       `round_context` "carry" the round starts from the context cache the last run left.
    `failures` holds what the checker raised (the edit then stays as it is: never into the run).
    """

    def __init__(self, model: DiffusionLM, canvas: Canvas, settings: SamplerSettings,
                 checker: Checker | None = None, deadline: float | None = None):
        self.model, self.canvas, self.settings, self.checker = model, canvas, settings, checker
        self.deadline = deadline
        self.rounds = settings.correct_rounds if checker is not None else 0
        self.failures: list[str] = []
        self.redone: list[int] = []  # slots redone per correction round, all candidates together

    def __iter__(self) -> Iterator[Step]:
        V = self.model.vocab_size
        scope = scope_bias(self.canvas, V) if self.settings.scope == "lines" else None
        canvas, bias, before = self.canvas, scope, None
        index = forwards = 0
        carry = Carry() if self.settings.round_context == "carry" else None
        for r in range(self.rounds + 1):
            settings = self.settings.replace(seed=(self.settings.seed + r) % 2**63)
            last: Step | None = None
            for step in infill(self.model, canvas, settings, bias, self.deadline, carry):   # 1, 3
                last = self.merged(step, before, r, index, forwards)
                yield last
            if last is None:
                return
            index, forwards, before = last.index + 1, last.forwards, last
            if r == self.rounds or (self.deadline is not None and time.monotonic() >= self.deadline):
                return
            redo, banned, words = self.to_redo(last)                                 # 2
            if not redo.any():
                return
            self.redone.append(int(redo.sum()))
            canvas = self.next_canvas(canvas, last, redo)
            bias = self.round_bias(scope if bias is None or bias.dim() < 3 else bias, last, banned, words, V)

    def merged(self, step: Step, before: Step | None, r: int, index: int, forwards: int) -> Step:
        """A round's step as the run's: numbered on from the last round, and the slots this round
        did not redo keep what the last round decided about them (confidence, commit step, top-K)."""
        step = dataclasses.replace(step, index=index + step.index, forwards=forwards + step.forwards,
                                   elapsed=step.elapsed + (before.elapsed if before else 0.0), round=r)
        if before is None:
            return step
        kept = before.committed_at.ne(-1) & step.committed_at.eq(-1) & ~step.masked   # (B, P)
        return dataclasses.replace(
            step, confidence=torch.where(kept, before.confidence, step.confidence),
            committed_at=torch.where(kept, before.committed_at, step.committed_at + index * step.committed_at.ge(0)),
            top_ids=torch.where(kept[..., None], before.top_ids, step.top_ids),
            top_probs=torch.where(kept[..., None], before.top_probs, step.top_probs))

    def to_redo(self, step: Step) -> tuple[torch.Tensor, torch.Tensor, list[WordBan]]:
        """(B, P) slots to denoise again, (B, P) the slots the checker named (their tokens get banned),
        and the words the checker says a slot may not start with."""
        named = torch.zeros(step.tokens.shape, dtype=torch.bool)
        words: list[WordBan] = []
        free = ~self.canvas.fixed[..., self.canvas.slots].expand(step.tokens.shape)  # (B, P)
        for b, after in enumerate(step.texts):
            for i, place in enumerate(self.canvas.placed(step.tokens[b])):
                span = self.canvas.spans[i]
                try:
                    ranges = self.checker(self.canvas.text, after, (span.start, span.end), place) \
                        if self.checker else ()
                except Exception as err:  # a checker that fails on odd text leaves the edit as it is
                    self.failures.append(f"the checker failed: {err}")
                    log.warning("correction skipped: the checker failed on candidate %d: %s", b, err)
                    continue
                if ranges:
                    named[b] |= self.slots_in(step.tokens[b], i, place[0], [(r[0], r[1]) for r in ranges])
                for r in ranges:
                    if len(r) > 2 and r[2]:
                        at = self.slots_in(step.tokens[b], i, place[0], [(r[0], r[1])])
                        words.append((b, up_to(at, self.canvas.slot_ranges[i]), frozenset(r[2])))
        named &= free
        redo = named | least_sure_neighbours(named, step.confidence, free, self.canvas.slot_ranges)
        return redo, named, words

    def slots_in(self, tokens: torch.Tensor, index: int, start: int, ranges: Sequence[tuple[int, int]]) -> torch.Tensor:
        """(P,) the slots of span `index` whose text overlaps any of `ranges` (characters of the
        document, the span's new text starting at `start`); an empty range names the slot at it."""
        a, b = self.canvas.slot_ranges[index]
        pieces = self.canvas.codec.pieces(tokens[a:b].tolist())
        drawn = "".join(pieces)
        head, _ = self.canvas.edges(index)
        origin = start - (len(drawn) - len(between(drawn, head, "")))  # where drawn[0] sits in the document
        out = torch.zeros(tokens.shape, dtype=torch.bool)
        at = origin
        for k, piece in enumerate(pieces):
            lo, hi = at, at + max(len(piece), 1)
            at += len(piece)
            out[a + k] = any(lo < y and x < hi if x < y else lo <= x <= hi for x, y in ranges)
        if not out[a:b].any() and b > a:  # a range past the span (a missing closer): its last slot
            out[b - 1] = True
        return out

    def next_canvas(self, canvas: Canvas, step: Step, redo: torch.Tensor) -> Canvas:
        """(B, L) ids and forced flags: each candidate's decided slots forced, `redo` free."""
        B = step.tokens.shape[0]
        slots = self.canvas.slots
        ids = canvas.ids.expand(B, -1).clone() if canvas.ids.dim() == 1 else canvas.ids.clone()
        fixed = self.canvas.fixed.expand(B, -1).clone()
        ids[:, slots] = step.tokens
        fixed[:, slots] |= ~redo
        return dataclasses.replace(canvas, ids=ids, fixed=fixed)

    def round_bias(self, earlier: torch.Tensor | None, step: Step, banned: torch.Tensor,
                   words: list[WordBan], V: int) -> torch.Tensor:
        """(B, P, V) the earlier bias (the scope's, or the last round's: bans add up, so two rounds
        do not swap the same two tokens back and forth) plus -inf on each named slot's old token and,
        where the checker named words, on every token that begins with one of them."""
        B, P = step.tokens.shape
        bias = torch.zeros(B, P, V) if earlier is None else earlier.expand(B, P, V).clone()
        b, p = banned.nonzero(as_tuple=True)
        bias[b, p, step.tokens[b, p].clamp(max=V - 1)] = float("-inf")
        for c, slots, starts in words:
            bias[c, slots] = bias[c, slots].masked_fill(starting_with(self.canvas.codec, V, starts), float("-inf"))
        return bias


def up_to(slots: torch.Tensor, span: tuple[int, int]) -> torch.Tensor:
    """(P,) every slot of `span` [a, b) from its first to the last of `slots` (P,): a word that may not
    start the text there may not come back one slot earlier either, when a later round redoes it."""
    out = torch.zeros_like(slots)
    named = slots[span[0]:span[1]].nonzero()
    if len(named):
        out[span[0]:span[0] + int(named.max()) + 1] = True
    return out


def least_sure_neighbours(named: torch.Tensor, confidence: torch.Tensor, free: torch.Tensor,
                          slot_ranges: tuple[tuple[int, int], ...]) -> torch.Tensor:
    """(B, P) for each named slot, the less confident of its two neighbours in the same span
    (only `free` (B, P) slots; a slot at a span's edge has one neighbour)."""
    B, P = named.shape
    same_span = torch.zeros(P, dtype=torch.bool)  # same_span[p]: p and p + 1 are in one span
    for a, b in slot_ranges:
        same_span[a:b - 1] = True
    out = torch.zeros_like(named)
    for bi, p in named.nonzero().tolist():
        sides = [q for q, ok in ((p - 1, p > 0 and bool(same_span[p - 1])), (p + 1, p < P - 1 and bool(same_span[p])))
                 if ok and bool(free[bi, q]) and not bool(named[bi, q])]
        if sides:
            out[bi, min(sides, key=lambda q: float(confidence[bi, q]))] = True
    return out
