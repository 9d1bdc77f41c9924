"""The inspector's concepts: the canvas a committed token's forward read, rebuilt from a run's step
(slots committed at that step or later masked, earlier ones as committed), and escaped in the HTML."""
from __future__ import annotations

import torch

from engine import PRESETS, Span, build_canvas, load_model
from engine.infill import infill
from engine.model import Delegating
from page.actions import Run
from page.attributions import token_attributions
from page.views import concepts_table
from tests.steerling_tiny import write_tiny_steerling


class Recording(Delegating):
    """The model, recording what `attributions` is asked."""

    asked: list = []

    def attributions(self, ids, position, token, steer=()):
        self.asked.append((ids.clone(), position, token, steer))
        return self.model.attributions(ids, position, token, steer)


def test_the_canvas_is_the_one_the_tokens_forward_read(tmp_path):
    write_tiny_steerling(tmp_path)
    model = Recording(load_model(tmp_path, device="cpu"))
    text = " ".join(f"t{i}" for i in range(10, 40))
    canvas = build_canvas(model.codec, text, [Span(30, 50)], model.max_length)
    settings = PRESETS["quality"].replace(steer="concept 1=2")
    steps = list(infill(model, canvas, settings))
    run = Run(canvas, text, (30, 50), "text", settings=settings, steps=steps)
    last = steps[-1]
    born = last.committed_at[0]
    s = int(torch.argsort(born)[len(born) // 2])     # a slot committed mid-run
    pos = int(last.positions[s])
    rows = token_attributions(model, run, last, 0, pos)
    ids, position, token, steer = model.asked[-1]
    assert rows and (position, token, steer) == (pos, int(last.tokens[0, s]), (("concept 1", 2.0),))
    slots = ids[last.positions]
    assert torch.equal(slots == model.mask_id, born >= born[s])            # its step and later: masked
    assert torch.equal(slots[born < born[s]], last.tokens[0][born < born[s]])  # earlier: as committed
    outside = torch.ones(len(ids), dtype=torch.bool)
    outside[last.positions] = False
    assert torch.equal(ids[outside], canvas.ids[outside])
    assert token_attributions(model, run, last, 0, 0) == ()              # not a span slot


def test_concept_names_are_escaped():
    html = concepts_table([("<b>bold</b>", 1.5), ("unknown + residual", -2.0)])
    assert "&lt;b&gt;bold&lt;/b&gt;" in html and "<b>bold" not in html and "+1.50" in html and "-2.00" in html
    assert concepts_table([]) == ""
