"""Candidates that repeat an earlier one are drawn again (engine/distinct.py), as further steps."""
import pytest
import torch

from engine import SamplerSettings, Span, TextCodec, build_canvas, infill, run
from engine.distinct import distinct, redraw_settings, repeats
from tests.tiny import ScriptedModel, byte_bpe_tokenizer

DOC = "The keeper climbed the stairs to tend the light.\n"
SPAN = Span(DOC.index("climbed"), DOC.index("climbed") + len("climbed"), length=2)


@pytest.fixture(scope="module")
def codec():
    return TextCodec.from_tokenizer(byte_bpe_tokenizer(bos=True))


def sure_model(codec, canvas, p=0.5):
    """A model that wants one token per slot with probability `p`: at candidate_temperature 0.7 a
    2-slot span lands on the argmax most of the time, as a small model does on a short phrase."""
    allowed = [i for i in range(len(codec.tokenizer)) if i not in codec.banned_ids]
    target = torch.tensor(allowed)[torch.randint(len(allowed), (canvas.length,),
                                                 generator=torch.Generator().manual_seed(3))]
    return ScriptedModel(codec, target, torch.full((canvas.length,), p))


def spans(step, canvas):
    return [text[SPAN.start:len(text) - (len(DOC) - SPAN.end)] for text in step.texts]


def test_repeated_candidates_are_drawn_again_until_they_differ(codec):
    canvas = build_canvas(codec, DOC, [SPAN])
    model = sure_model(codec, canvas)
    settings = SamplerSettings(candidates=3, candidate_temperature=0.7)
    once = run(infill(model, canvas, settings))
    assert repeats(once.texts)  # the setup repeats: without redraws the person sees one text twice
    steps = list(distinct(lambda s: infill(model, canvas, s), settings))
    final = steps[-1]
    assert final.done and len(set(spans(final, canvas))) == 3
    assert final.texts[0] == once.texts[0]  # the argmax candidate is never redrawn
    assert [s.index for s in steps] == list(range(len(steps)))  # the redraws stream as further steps
    assert final.forwards > once.forwards
    assert all(not torch.equal(a.tokens, b.tokens) or a is b for a, b in zip(steps, steps[1:]))


def test_only_the_repeated_rows_change(codec):
    canvas = build_canvas(codec, DOC, [SPAN])
    model = sure_model(codec, canvas)
    settings = SamplerSettings(candidates=3, candidate_temperature=0.7)
    once = run(infill(model, canvas, settings))
    again = set(repeats(once.texts))
    final = run(distinct(lambda s: infill(model, canvas, s), settings))
    for b in set(range(3)) - again:
        assert torch.equal(final.tokens[b], once.tokens[b]) and final.texts[b] == once.texts[b]


def test_copies_asked_for_stay_copies(codec):
    """candidate_temperature 0 at temperature 0 asks for N argmax copies: nothing is drawn again."""
    canvas = build_canvas(codec, DOC, [SPAN])
    model = sure_model(codec, canvas)
    settings = SamplerSettings(candidates=3, candidate_temperature=0)
    calls = []

    def draw(s):
        calls.append(s)
        return infill(model, canvas, s)
    final = run(distinct(draw, settings))
    assert len(calls) == 1 and len(set(final.texts)) == 1


def test_redraws_are_bounded_and_use_new_seeds(codec):
    """A model that can only write one text: each round draws the repeats again with a new seed,
    every one sampling, a little warmer each round, and the run ends after the last round with what it has."""
    canvas = build_canvas(codec, DOC, [SPAN])
    model = sure_model(codec, canvas, p=0.9999)
    settings = SamplerSettings(candidates=3, candidate_temperature=0.7, seed=5)
    calls = []

    def draw(s):
        calls.append(s)
        return infill(model, canvas, s)
    final = run(distinct(draw, settings, redraws=2))
    assert len(calls) == 3 and final.done
    assert [s.candidates for s in calls] == [3, 2, 2]
    assert len({s.seed for s in calls}) == 3
    assert calls[1].temperature == pytest.approx(0.7 * 1.25) and calls[2].temperature == pytest.approx(0.7 * 1.25**2)


def test_the_last_round_draws_without_the_guide():
    """The frontier guide picks a span's closing token by the text after it, whatever the temperature:
    a guided one-word span can only repeat itself, so the last round draws unguided."""
    settings = SamplerSettings(candidates=3, guide=1.0)
    assert [redraw_settings(settings, 2, r).guide for r in (1, 2, 3)] == [1.0, 1.0, 0.0]
