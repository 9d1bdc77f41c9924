"""Context strategies: DualCache matches the full forward where it must, and runs fewer rows."""
import pytest
import torch

from engine import SamplerSettings, Span, build_canvas, infill, run
from engine.codec import TextCodec
from tests.tiny import ScriptedModel, byte_bpe_tokenizer, tiny_llama

DOC = "import os\nimport sys\n\nclass Foo:\n    pass\n\ndef add(a, b):\n    return a + b\n" * 2


FAMILIES = [(False, False), (True, False), (True, True)]  # LLaDA, Dream, bundled-model layouts


@pytest.mark.parametrize("shifted,start", FAMILIES)
def test_cached_step_equals_full_forward_when_the_context_has_not_moved(shifted, start):
    model = tiny_llama(shifted, start)
    ids = torch.tensor([model.codec.encode(DOC)[:60]])
    pos = torch.arange(20, 30)
    full = model.logits(ids)[:, pos]
    first, cache = model.cached_logits(ids, pos, None)
    torch.testing.assert_close(first, full, atol=1e-4, rtol=1e-4)
    # Change only span slots: the cached step must equal a full forward whose context keys/values
    # were computed with the old span (that is the DualCache approximation, exact for the slots).
    changed = ids.clone()
    changed[:, pos] = model.mask_id
    cached, _ = model.cached_logits(changed, pos, cache)
    assert cached.shape == full.shape
    assert not torch.allclose(cached, first, atol=1e-3)  # the slots' new tokens are seen
    # With the context re-read (a refresh), it is exactly the full forward again.
    fresh, _ = model.cached_logits(changed, pos, None)
    torch.testing.assert_close(fresh, model.logits(changed)[:, pos], atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("shifted,start", FAMILIES)
def test_dual_cache_refreshed_every_step_gives_the_reference_result(shifted, start):
    model = tiny_llama(shifted, start)
    spans = [Span(DOC.index("return"), DOC.index("return") + 12, 6), Span(10, 20, 4)]
    canvas = build_canvas(model.codec, DOC, spans, model.max_length)
    base = SamplerSettings(strategy="low_confidence", seed=3)
    want = run(infill(model, canvas, base))
    got = run(infill(model, canvas, base.replace(cache="dual", refresh_every=1)))
    assert torch.equal(got.tokens, want.tokens) and got.texts == want.texts


def test_dual_cache_keeps_outside_text_and_stops_within_budget():
    model = tiny_llama(True, True)
    start = DOC.index("return")
    canvas = build_canvas(model.codec, DOC, [Span(start, start + 12, 8)], model.max_length)
    steps = list(infill(model, canvas, SamplerSettings(strategy="threshold", cache="dual", steps=4,
                                                       block_length=4)))
    assert len(steps) <= 4 and steps[-1].done
    text = steps[-1].texts[0]
    assert text.startswith(DOC[:start]) and text.endswith(DOC[start + 12:])


def test_context_window_limits_what_the_model_sees():
    tok = byte_bpe_tokenizer()
    codec = TextCodec.from_tokenizer(tok)
    model = ScriptedModel(codec, torch.randint(10, 300, (512,), generator=torch.Generator().manual_seed(0)),
                          torch.full((512,), 0.5))
    seen = []
    model.logits = lambda ids, inner=model.logits: (seen.append(ids.shape[1]), inner(ids))[1]
    start = len(DOC) // 2
    canvas = build_canvas(codec, DOC, [Span(start, start + 5, 3)], 4096)
    run(infill(model, canvas, SamplerSettings(context_window=8)))
    a, b = canvas.span_ranges[0]  # 3 slots plus any frozen edge text of a healed cut
    assert seen and max(seen) == 8 + (b - a) + 8 < canvas.length


def test_models_without_a_cache_run_in_full_under_the_dual_setting():
    tok = byte_bpe_tokenizer()
    codec = TextCodec.from_tokenizer(tok)
    model = ScriptedModel(codec, torch.randint(10, 300, (512,), generator=torch.Generator().manual_seed(1)),
                          torch.full((512,), 0.95))
    canvas = build_canvas(codec, DOC, [Span(4, 12, 5)], 4096)
    a = run(infill(model, canvas, SamplerSettings(cache="dual")))
    b = run(infill(model, canvas, SamplerSettings()))
    assert a.texts == b.texts


def test_bad_cache_settings_are_refused_by_name():
    with pytest.raises(ValueError, match="unknown cache"):
        SamplerSettings(cache="triple")
    with pytest.raises(ValueError, match="refresh_every"):
        SamplerSettings(refresh_every=0)


def test_batched_candidates_share_one_cache_and_match_their_single_runs():
    model = tiny_llama(True, True)
    start = DOC.index("return")
    canvas = build_canvas(model.codec, DOC, [Span(start, start + 12, 6)], model.max_length)
    settings = SamplerSettings(strategy="low_confidence", temperature=1.0, seed=5, cache="dual",
                               refresh_every=1, candidates=3)
    batch = run(infill(model, canvas, settings))
    assert batch.tokens.shape[0] == 3 and len(set(batch.texts)) > 1  # sampled alternatives differ
    full = run(infill(model, canvas, settings.replace(cache="none")))
    assert batch.texts == full.texts  # the cache path and the full path draw the same samples
