"""Pinned words (a span's end, a token offset, "include" where the model finds it most likely),
templates with holes, and several spans in one run (engine.pins, engine.template, engine.canvas)."""
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine import Constraint, SamplerSettings, Span, build_canvas, infill, run
from engine.correct import corrected
from engine.pins import best_first, lay_out, likelihood
from engine.template import DEFAULT_HOLE_TOKENS, holes
from tests.tiny import tiny_llama

FAST = SamplerSettings(steps=4, strategy="low_confidence")


@pytest.fixture(scope="module")
def model():
    return tiny_llama(shifted=True, start=True)


def span_text(canvas, step, i, b=0):
    return canvas.span_text(step.tokens[b], i)


def test_ends_with_puts_the_text_at_the_spans_end(model):
    span = Span(0, 3, length=8, constraints=(Constraint(" + b", 0, "end"),))
    canvas = build_canvas(model.codec, "abc = 1\n", [span])
    step = run(infill(model, canvas, FAST))
    assert span_text(canvas, step, 0).endswith(" + b")
    assert step.texts[0].endswith(" = 1\n")


def test_ends_with_k_tokens_before_the_end(model):
    n = len(model.codec.encode(" + b"))
    canvas = build_canvas(model.codec, "abc", [Span(0, 3, length=8, constraints=(Constraint(" + b", 2, "end"),))])
    a, _ = canvas.span_ranges[0]
    forced = canvas.fixed[a:a + 8].nonzero().flatten().tolist()
    assert forced == list(range(8 - 2 - n, 8 - 2))


def test_a_pin_that_does_not_fit_is_refused_by_name(model):
    with pytest.raises(ValueError, match="does not fit"):
        build_canvas(model.codec, "abc", [Span(0, 3, length=2, constraints=(Constraint("return a + b", 0, "end"),))])


def test_include_tries_every_place_in_one_batch_and_keeps_the_most_likely(model):
    text = "def add(a, b):\n    return a + b\n"
    span = Span(19, 31, length=6, constraints=(Constraint("a", 0, "anywhere"),))
    canvas, s = lay_out(model.codec, text, [span], FAST)
    n = len(model.codec.encode("a"))
    assert canvas.ids.shape[0] == s.candidates == 6 - n + 1   # one row per place
    steps = list(corrected(model, canvas, s))
    assert steps[-1].forwards == len(steps) <= FAST.steps     # every place in the same forwards
    last = steps[-1]
    rows = [canvas.span_text(last.tokens[b], 0) for b in range(s.candidates)]
    assert all("a" in r for r in rows)
    best = best_first(last)
    scores = likelihood(last)
    assert best.texts[0] == last.texts[int(scores.argmax())]
    assert likelihood(best).tolist() == sorted(scores.tolist(), reverse=True)


def test_include_decodes_every_place_as_candidate_one_is(model):
    """At temperature 0 each place takes the argmax: rows differ only where their pin differs."""
    span = Span(0, 3, length=4, constraints=(Constraint("x", 0, "anywhere"),))
    canvas, s = lay_out(model.codec, "abc\n", [span], FAST)
    assert s.candidate_temperature == 0
    one = build_canvas(model.codec, "abc\n", [Span(0, 3, length=4, constraints=(Constraint("x", 0),))])
    assert run(infill(model, canvas, s)).tokens[0].tolist() == run(infill(model, one, FAST)).tokens[0].tolist()


def test_one_include_per_edit(model):
    spans = [Span(0, 3, 4, (Constraint("x", 0, "anywhere"),)), Span(4, 7, 4, (Constraint("y", 0, "anywhere"),))]
    with pytest.raises(ValueError, match="one word or phrase per edit"):
        lay_out(model.codec, "abc def\n", spans, FAST)


def test_template_holes_are_spans_over_their_markers():
    text = '{"name": ⟨⟩, "age": ⟨2⟩, "city": ⟨Paris⟩}'
    spans = holes(text)
    assert [text[s.start:s.end] for s in spans] == ["⟨⟩", "⟨2⟩", "⟨Paris⟩"]
    assert [s.length for s in spans] == [DEFAULT_HOLE_TOKENS, 2, None]
    assert [s.length for s in holes("a {{}} b", "{{}}", length=7)] == [7]


@pytest.mark.parametrize("text, marker, words", [
    ("no holes here", "⟨⟩", "has no holes"),
    ("open ⟨ never closed", "⟨⟩", "not closed"),
    ("a ⟨ b ⟨⟩", "⟨⟩", "not closed"),
    ("stray ⟩ closer", "⟨⟩", "has no opening"),
    ("x", "<", '"hole_marker"'),
    ("x", "||", "must differ"),
    ("a ⟨0⟩", "⟨⟩", "1 or more"),
])
def test_bad_templates_are_refused_by_name(text, marker, words):
    with pytest.raises(ValueError, match=words):
        holes(text, marker)


def test_a_template_fills_every_hole_in_one_run_and_keeps_the_rest(model):
    text = "def f(⟨⟩):\n    return ⟨3⟩\n"
    canvas = build_canvas(model.codec, text, holes(text))
    steps = list(infill(model, canvas, FAST))
    out = steps[-1].texts[0]
    assert "⟨" not in out and "⟩" not in out
    assert out.startswith("def f(") and "):\n    return " in out and out.endswith("\n")
    assert steps[-1].forwards == len(steps) <= FAST.steps


@settings(max_examples=25, deadline=None)
@given(st.data())
def test_two_spans_one_run_text_outside_byte_identical(data):
    """Two spans anywhere in a document: one set of forwards fills both, and everything outside the
    two selections comes back byte for byte (healing may widen regions; the render must not)."""
    model = tiny_llama(shifted=True, start=True)
    text = data.draw(st.sampled_from([
        "def add(a, b):\n    return a + b\n", "for i in range(10):\n    print(i)\n",
        "Héllo wörld, naïve café — 東京 and emoji 🙂 too.", "It was the best of times, it was the worst."]))
    cuts = sorted(data.draw(st.lists(st.integers(0, len(text)), min_size=4, max_size=4)))
    a, b, c, d = cuts
    if a == b or c == d:
        return
    spans = [Span(a, b), Span(c, d, length=data.draw(st.integers(1, 5)))]
    try:
        canvas = build_canvas(model.codec, text, spans)
    except ValueError:  # an edge inside a grapheme cluster: refused, as it should be
        return
    steps = list(infill(model, canvas, SamplerSettings(steps=3, seed=data.draw(st.integers(0, 9)))))
    out = steps[-1].texts[0]
    (s0, e0), (s1, e1) = canvas.placed(steps[-1].tokens[0])
    assert out[:s0] == text[:a] and out[e0:s1] == text[b:c] and out[e1:] == text[d:]
    assert steps[-1].forwards == len(steps) <= 3   # both spans decided by the same forwards
    # each step commits in both spans: they are denoised together, not one after the other
    assert all(steps[0].committed[0, lo:hi].any() for lo, hi in canvas.slot_ranges)
