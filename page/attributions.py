"""A token's concept attributions for the inspector, where the model's family offers them (Steerling):
the canvas as the loop read it when the token was committed, handed to `DiffusionLM.attributions`."""
from __future__ import annotations

import torch

from engine import DiffusionLM, Step
from engine.settings import parse_steer

from .actions import Run
from .engine_client import RemoteModel


def token_attributions(model: DiffusionLM, run: Run, step: Step, candidate: int,
                       pos: int) -> tuple[tuple[str, float], ...]:
    """(concept name, logit contribution) for the committed token at canvas `pos` of `candidate`,
    largest first; () for a slot still masked or forced, a served model, or a family without concepts.
    The canvas is rebuilt from `step`: slots committed at the token's own step or later (or still
    undecided) are masked, as the forward that chose it saw them (exact without remasking or
    correction rounds), over the whole canvas (a run with a context window read less)."""
    s = step.slot(pos)
    if s is None or isinstance(model, RemoteModel) or model.mask_id is None:
        return ()
    b = min(candidate, step.tokens.shape[0] - 1)
    born = int(step.committed_at[b, s])
    if bool(step.masked[b, s]) or born < 0:
        return ()
    later = step.masked[b] | (step.committed_at[b] >= born)                   # (P,)
    ids = run.canvas.ids.clone()
    ids[step.positions] = torch.where(later, model.mask_id, step.tokens[b])
    return model.attributions(ids, pos, int(step.tokens[b, s]), parse_steer(run.settings.steer))
