"""The denoising loop: properties every strategy must keep, on scripted and tiny real models."""
import dataclasses

import pytest
import torch
from hypothesis import HealthCheck, given
from hypothesis import settings as hyp_settings
from hypothesis import strategies as st

from engine import STRATEGIES, SamplerSettings, Span, TextCodec, build_canvas, infill, run
from engine.commit import entropy_bound_count
from engine.loop import denoise
from tests.tiny import ScriptedModel, ScriptedUniformModel, byte_bpe_tokenizer


@pytest.fixture(scope="module")
def codec():
    return TextCodec.from_tokenizer(byte_bpe_tokenizer(bos=True))


def scripted(codec, length, confidence=None, seed=0, cls=ScriptedModel):
    g = torch.Generator().manual_seed(seed)
    allowed = [i for i in range(len(codec.tokenizer)) if i not in codec.banned_ids]
    target = torch.tensor(allowed)[torch.randint(len(allowed), (length,), generator=g)]
    if confidence is None:
        confidence = torch.rand(length, generator=g) * 0.9 + 0.05
    return cls(codec, target, confidence)


DOC = "def add(a, b):\n    return a + b\n\nprint(add(1, 2))  # café 🙂\n"


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("steps", [None, 1, 3, 64])
def test_masked_count_never_grows_and_loop_ends_within_steps(codec, strategy, steps):
    canvas = build_canvas(codec, DOC, [Span(4, 13), Span(20, 32, length=11)])
    model = scripted(codec, canvas.length)
    settings = SamplerSettings(strategy=strategy, steps=steps, candidates=2, temperature=0.7)
    trail = list(infill(model, canvas, settings))
    masked = [int(s.masked.sum()) for s in trail]
    assert all(b <= a for a, b in zip(masked, masked[1:]))
    assert masked[-1] == 0 and trail[-1].done
    budget = steps or max(b - a for a, b in canvas.span_ranges)
    assert len(trail) <= budget and model.calls == len(trail) == trail[-1].forwards
    assert [s.index for s in trail] == list(range(len(trail)))
    # every slot is committed exactly once, at the step it says
    final = trail[-1]
    for s in trail:
        assert torch.equal(s.committed, final.committed_at == s.index)


def test_only_span_slots_change(codec):
    canvas = build_canvas(codec, DOC, [Span(4, 13), Span(40, 45)])
    model, seen = scripted(codec, canvas.length), []
    forward = model.logits
    model.logits = lambda ids: (seen.append(ids.clone()), forward(ids))[1]
    final = run(infill(canvas=canvas, model=model, settings=SamplerSettings(candidates=2)))
    inside = torch.zeros(canvas.length, dtype=torch.bool)
    for a, b in canvas.span_ranges:
        inside[a:b] = True
    assert len(seen) == final.forwards
    for ids in seen:  # every forward sees the document outside the spans as it was
        assert torch.equal(ids[:, ~inside], canvas.ids[~inside].expand(2, -1))
    assert torch.equal(final.positions, inside.nonzero().squeeze(-1))


def test_a_step_holds_the_span_slots_only(codec):
    """Memory: a step's tensors grow with the span, not with the document around it."""
    span = Span(len(DOC) // 2, len(DOC) // 2, length=6)
    short = build_canvas(codec, DOC, [span])
    long = build_canvas(codec, DOC * 40, [Span(span.start, span.end, 6)])
    settings = SamplerSettings(candidates=3, alternatives=4)
    held = []
    for canvas in (short, long):
        step = next(infill(scripted(codec, canvas.length), canvas, settings))
        tensors = [v for v in vars(step).values() if isinstance(v, torch.Tensor)]
        slots = len(canvas.slots)  # 6, plus any edge text healing froze around a cut word
        assert slots < 10 and {t.shape[:2] for t in tensors if t.dim() >= 2} == {(3, slots)}
        held.append(sum(t.untyped_storage().nbytes() for t in tensors))
    assert long.length > 30 * short.length and held[0] == held[1]


@hyp_settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), min_size=1, max_size=60),
       cuts=st.lists(st.integers(0, 60), min_size=2, max_size=6), data=st.data())
def test_text_outside_every_span_is_byte_identical(codec, text, cuts, data):
    cuts = sorted({min(c, len(text)) for c in cuts})
    pairs = [(a, b) for a, b in zip(cuts[::2], cuts[1::2])]
    if not pairs:
        pairs = [(0, len(text))]
    spans = [Span(a, b, length=None if a < b else data.draw(st.integers(1, 4))) for a, b in pairs]
    canvas = build_canvas(codec, text, spans)
    strategy = data.draw(st.sampled_from(STRATEGIES))
    out = run(infill(scripted(codec, canvas.length, seed=len(text)), canvas,
                     SamplerSettings(strategy=strategy))).texts[0]
    pieces, cursor = [], 0
    for span in canvas.spans:
        pieces.append(text[cursor:span.start])
        cursor = span.end
    tail = text[cursor:]
    assert out.startswith(pieces[0]) and out.endswith(tail)
    rest = out[len(pieces[0]):]
    for piece in pieces[1:]:  # every outside piece appears, in order, after the one before
        found = rest.find(piece)
        assert found >= 0
        rest = rest[found + len(piece):]
    assert out.encode("utf-8").endswith(tail.encode("utf-8"))


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_same_seed_same_output_other_seed_other_output(codec, strategy):
    canvas = build_canvas(codec, DOC, [Span(0, 30)])
    model = scripted(codec, canvas.length, confidence=torch.full((canvas.length,), 0.3))
    def final(seed):
        return run(infill(model, canvas, SamplerSettings(strategy=strategy, temperature=1.0, seed=seed,
                                                         candidates=2)))
    a, b, c = final(7), final(7), final(8)
    assert torch.equal(a.tokens, b.tokens) and a.texts == b.texts
    assert torch.equal(a.committed_at, b.committed_at)
    assert not torch.equal(a.tokens, c.tokens)


def test_threshold_commits_many_tokens_per_forward_on_a_confident_model(codec):
    canvas = build_canvas(codec, DOC, [Span(4, 40)])
    n = canvas.span_ranges[0][1] - canvas.span_ranges[0][0]
    confident = scripted(codec, canvas.length, confidence=torch.full((canvas.length,), 0.97))
    trail = list(infill(confident, canvas, SamplerSettings(strategy="threshold", threshold=0.9)))
    assert len(trail) == 1 and int(trail[0].committed.sum()) == n
    unsure = scripted(codec, canvas.length, confidence=torch.full((canvas.length,), 0.5))
    trail = list(infill(unsure, canvas, SamplerSettings(strategy="threshold", threshold=0.9)))
    assert len(trail) == n  # falls back to the best one per forward


def test_low_confidence_commits_the_most_confident_first(codec):
    canvas = build_canvas(codec, DOC, [Span(4, 30)])
    a, b = canvas.span_ranges[0]
    conf = torch.rand(canvas.length, generator=torch.Generator().manual_seed(3)) * 0.8 + 0.1
    final = run(infill(scripted(codec, canvas.length, confidence=conf), canvas,
                       SamplerSettings(strategy="low_confidence")))
    free = ~canvas.fixed[a:b]  # frozen edge text of a healed cut is never committed
    order = final.committed_at[0][free].argsort()
    assert torch.equal(order, conf[a:b][free].argsort(descending=True))


def test_blocks_are_filled_left_to_right_inside_each_span(codec):
    canvas = build_canvas(codec, DOC, [Span(0, 20, length=12), Span(30, 40, length=7)])
    conf = torch.linspace(0.1, 0.9, canvas.length)  # later slots look better: blocks must overrule
    final = run(infill(scripted(codec, canvas.length, confidence=conf), canvas,
                       SamplerSettings(strategy="low_confidence", block_length=4)))
    for a, b in canvas.slot_ranges:
        born = final.committed_at[0, a:b]
        blocks = [born[i:i + 4][born[i:i + 4] >= 0] for i in range(0, b - a, 4)]  # frozen: -1
        blocks = [block for block in blocks if len(block)]
        for earlier, later in zip(blocks, blocks[1:]):
            assert earlier.max() < later.min()


def test_entropy_bound_count_matches_its_definition():
    g = torch.Generator().manual_seed(0)
    ent = torch.rand(3, 2, 9, generator=g) * 0.2
    eligible = torch.rand(3, 2, 9, generator=g) > 0.3
    counts = entropy_bound_count(ent, eligible, 0.15)
    for b in range(3):
        for s in range(2):
            values = sorted(ent[b, s][eligible[b, s]].tolist())
            n = 0
            while n < len(values) and sum(values[: n + 1]) - values[n] <= 0.15:
                n += 1
            assert counts[b, s].item() == n


def test_constraint_tokens_are_never_changed(codec):
    from engine import Constraint
    span = Span(4, 13, length=10, constraints=(Constraint("return", 3),))
    canvas = build_canvas(codec, DOC, [span])
    trail = list(infill(scripted(codec, canvas.length), canvas, SamplerSettings(remask_below=0.6)))
    forced = canvas.fixed[canvas.slots]
    for s in trail:
        assert torch.equal(s.tokens[0][forced], canvas.ids[canvas.fixed])
        assert not s.masked[0][forced].any()
    assert "return" in trail[-1].texts[0][4:]


def test_self_correction_remasks_weak_commits_and_still_finishes(codec):
    canvas = build_canvas(codec, DOC, [Span(0, 40)])
    n = canvas.span_ranges[0][1] - canvas.span_ranges[0][0]
    model = scripted(codec, canvas.length, confidence=torch.linspace(0.05, 0.6, canvas.length))
    trail = list(infill(model, canvas, SamplerSettings(strategy="threshold", threshold=0.5,
                                                       remask_below=0.3, steps=n)))
    masked = [int(s.masked.sum()) for s in trail]
    assert any(b > a - int(s.committed.sum()) for a, b, s in zip([n] + masked, masked, trail))  # remasked
    assert masked[-1] == 0 and len(trail) <= n


def test_closing_the_stream_stops_the_model(codec):
    canvas = build_canvas(codec, DOC, [Span(0, 30)])
    model = scripted(codec, canvas.length, confidence=torch.full((canvas.length,), 0.5))
    stream = infill(model, canvas, SamplerSettings(strategy="low_confidence"))
    first = next(stream)
    stream.close()
    assert model.calls == 1 and first.masked.any()
    with pytest.raises(StopIteration):
        next(stream)


def test_uniform_noise_starts_from_random_allowed_tokens_and_converges(codec):
    canvas = build_canvas(codec, DOC, [Span(4, 30)])
    a, b = canvas.span_ranges[0]
    model = scripted(codec, canvas.length, cls=ScriptedUniformModel)
    seen = []
    orig = model.logits
    model.logits = lambda ids: (seen.append(ids.clone()), orig(ids))[1]
    final = run(infill(model, canvas, SamplerSettings(strategy="low_confidence")))
    first_input = seen[0][0, a:b]
    assert not any(int(t) in codec.banned_ids for t in first_input)
    assert not torch.equal(first_input, model.target[a:b])  # random, not the answer
    free = ~canvas.fixed[a:b]
    assert torch.equal(final.tokens[0][free], model.target[a:b][free])


def test_candidates_are_batched_in_one_forward(codec):
    canvas = build_canvas(codec, DOC, [Span(0, 20)])
    model = scripted(codec, canvas.length, confidence=torch.full((canvas.length,), 0.2))
    final = run(infill(model, canvas, SamplerSettings(candidates=4, temperature=2.0, strategy="random")))
    assert final.tokens.shape[0] == 4 and len(final.texts) == 4 and len(set(final.texts)) > 1
    assert model.calls == final.forwards


def test_candidates_differ_at_temperature_zero_and_the_first_is_the_argmax(codec):
    """N > 1 candidates at temperature 0 are not N copies: candidates 2.. sample at
    candidate_temperature through the run's generator (same seed, same candidates), candidate 1
    is what a single greedy run gives; candidate_temperature 0 turns it off."""
    canvas = build_canvas(codec, DOC, [Span(4, 13), Span(20, 32, length=11)])
    model = scripted(codec, canvas.length)
    greedy = run(infill(model, canvas, SamplerSettings())).tokens[0]
    final = run(infill(model, canvas, SamplerSettings(candidates=4)))
    assert torch.equal(final.tokens[0], greedy)
    assert all(not torch.equal(final.tokens[b], greedy) for b in range(1, 4))
    assert len({tuple(t.tolist()) for t in final.tokens}) == 4
    again = run(infill(model, canvas, SamplerSettings(candidates=4)))
    assert torch.equal(again.tokens, final.tokens) and again.texts == final.texts
    other = run(infill(model, canvas, SamplerSettings(candidates=4, seed=1)))
    assert torch.equal(other.tokens[0], greedy) and not torch.equal(other.tokens, final.tokens)
    copies = run(infill(model, canvas, SamplerSettings(candidates=3, candidate_temperature=0)))
    assert all(torch.equal(t, greedy) for t in copies.tokens)


def test_denoise_works_on_bare_tensors(codec):
    ids = torch.tensor([5, 6, 7, 8, 9, 10])
    model = scripted(codec, 6)
    final = run(denoise(model, ids, ((1, 3), (4, 6)), torch.zeros(6, dtype=torch.bool), SamplerSettings()))
    assert final.positions.tolist() == [1, 2, 4, 5] and final.slot(4) == 2 and final.slot(3) is None
    assert torch.equal(final.tokens[0], model.target[[1, 2, 4, 5]])


def test_settings_are_validated_at_the_edge():
    with pytest.raises(ValueError, match="unknown strategy"):
        SamplerSettings(strategy="greedy")
    with pytest.raises(ValueError, match="steps"):
        SamplerSettings(steps=0)
    with pytest.raises(ValueError, match="threshold"):
        SamplerSettings(threshold=1.5)
    with pytest.raises(ValueError, match="unknown setting"):
        SamplerSettings().with_values({"stpes": 3})
    with pytest.raises(dataclasses.FrozenInstanceError):
        SamplerSettings().steps = 3  # frozen


@pytest.mark.parametrize("k", [1, 3, 4])
def test_tokens_per_step_scales_the_budget_with_the_span(codec, k):
    canvas = build_canvas(codec, DOC, [Span(4, 13, length=12), Span(20, 32, length=5)])
    model = scripted(codec, canvas.length, confidence=torch.full((canvas.length,), 0.2))
    trail = list(infill(model, canvas, SamplerSettings(strategy="low_confidence", tokens_per_step=k)))
    assert len(trail) == -(-12 // k) and trail[-1].done  # the widest span sets the budget
    assert int(trail[0].committed.sum()) == -(-12 // len(trail)) + -(-5 // len(trail))


def test_each_step_copies_to_the_host_twice(codec, monkeypatch):
    """docs/ARCHITECTURE.md counts the host syncs per step; the copies out are two of them."""
    canvas = build_canvas(codec, DOC, [Span(4, 13), Span(20, 32, length=11)])
    model = scripted(codec, canvas.length)
    copies, cpu = [], torch.Tensor.cpu
    monkeypatch.setattr(torch.Tensor, "cpu", lambda self, *a, **k: (copies.append(1), cpu(self, *a, **k))[1])
    trail = list(denoise(model, canvas.ids, canvas.span_ranges, canvas.fixed, SamplerSettings(candidates=2)))
    assert len(trail) > 3 and len(copies) <= 2 * len(trail) + 1  # + the slot positions, once


@pytest.mark.parametrize("block_length", [None, 2])
def test_past_its_deadline_a_run_ends_at_its_next_step_with_every_slot_decided(codec, block_length):
    """remask_below 0.99 with steps 65536 would take all 65536 forwards; after the deadline passes,
    the next step commits what is left (no slot stays masked, nothing is remasked) and the loop ends."""
    canvas = build_canvas(codec, DOC, [Span(4, 13, length=12)])
    settings = SamplerSettings(strategy="low_confidence", remask_below=0.99, steps=2**16, block_length=block_length)
    steps = infill(scripted(codec, canvas.length), canvas, settings, deadline=float("inf"))
    for _ in range(3):  # three steps of the run as it goes
        assert not next(steps).done
    trail = list(infill(scripted(codec, canvas.length), canvas, settings, deadline=0.0))  # already past
    assert len(trail) == 1 and trail[0].done and trail[0].forwards == 1
