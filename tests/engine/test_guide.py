"""The frontier guide: a causal LM's next-token log-probs mixed into the first undecided slot, its
key/value cache exact across steps and re-masks, the base view private to its thread."""
import threading

import pytest
import torch
import torch.nn.functional as F

from engine.canvas import Span, build_canvas
from engine.commit import Layout
from engine.families.causal import LlamaCausalView
from engine.families.score import BaseView, lora_factors
from engine.guide import CLOSING_CHOICES, CLOSING_TOKENS, FrontierGuide, make_guide
from engine.infill import infill
from engine.loop import run
from engine.model import CausalCall, ForwardCall
from engine.settings import SamplerSettings
from tests.engine.test_quality import adapted_tiny
from tests.tiny import tiny_llama

TEXT = "The quick brown fox jumps over the lazy dog. It was the best of times."


class Guided:
    """A tiny shifted model whose own net, read causally, is its guide."""

    def __new__(cls):
        model = tiny_llama(True, True)
        view = LlamaCausalView(model.net, model.start_id)
        model.causal_view = lambda: view  # type: ignore[method-assign]
        return model


def causal_logits(model, ids: torch.Tensor) -> torch.Tensor:
    """(B, L) -> (B, L, V): every row's next-token logits from one causal forward, no cache."""
    return model.net(ids, causal=True)


def closed(model, mixed: torch.Tensor, rows: torch.Tensor, after: torch.Tensor, w: float) -> torch.Tensor:
    """The guide's closing rule recomputed without a cache: the CLOSING_CHOICES best tokens, each
    plus w * the causal log-prob of `after` following it; the rest ruled out."""
    out = torch.full_like(mixed, float("-inf"))
    for x in mixed.topk(CLOSING_CHOICES).indices:
        seq = torch.cat([rows[0], x[None], after])[None]
        logp = causal_logits(model, seq)[0].log_softmax(-1)
        R = rows.shape[1]
        out[x] = mixed[x] + w * sum(logp[R + j, after[j]] for j in range(len(after)))
    return out


def steer(guide, model, den, ids, todo, ban):
    """One step of the guide as the loop runs it: its causal read beside the model's forward."""
    return guide.steer(den, model.forward_many(guide.prepare(ids, todo)), ids, todo, ban)


def test_the_causal_view_in_pieces_equals_one_causal_forward():
    model = tiny_llama(True, True)
    view = LlamaCausalView(model.net, model.start_id)
    ids = torch.randint(3, model.vocab_size, (2, 20), generator=torch.Generator().manual_seed(0))
    first, past = view.extend(ids[:, :7], None)
    second, past = view.extend(ids[:, 7:12], past)
    third, _ = view.extend(ids[:, 9:], view.truncate(past, 9))  # rows 9.. again, after a cut
    got = torch.cat([first, second[:, :2], third], 1)
    assert torch.allclose(got, causal_logits(model, ids), atol=1e-5)


def test_the_guided_slot_gets_the_product_of_experts_at_every_step_and_after_a_remask():
    """steer() against a brute-force recomputation (no cache), while the frontier moves on, jumps
    several slots, and goes back when a decided slot is sent back to undecided."""
    model, w = Guided(), 1.5
    ids = torch.tensor([model.codec.encode(TEXT)]).expand(2, -1).clone()        # (B, L)
    span = (5, 13)
    layout = Layout.of((span,), None, torch.device("cpu"))
    guide = FrontierGuide(model.causal_view(), layout, w, context=3)
    first = guide.first
    todo = torch.ones(2, 8, dtype=torch.bool)
    g = torch.Generator().manual_seed(1)
    for frontier in ([0, 0], [1, 0], [3, 2], [4, 4], [1, 4], [2, 6], [7, 3], [8, 7]):  # [1, 4]: a remask
        todo = torch.arange(8)[None] >= torch.tensor(frontier)[:, None]
        ids[:, span[0]:span[1]] = torch.where(todo, model.mask_id, ids[:, span[0]:span[1]])
        fresh = torch.randint(3, model.vocab_size, (2, 8), generator=g)
        ids[:, span[0]:span[1]] = torch.where(todo, ids[:, span[0]:span[1]], fresh)  # decided slots change
        den = torch.randn(2, 8, model.vocab_size, generator=g)
        steered, guided = steer(guide, model, den, ids, todo, torch.zeros(model.vocab_size))
        for b, f in enumerate(frontier):
            if f == 8:
                assert not guided[b].any() and torch.equal(steered[b], den[b])
                continue
            rows = torch.cat([torch.tensor([model.start_id]), ids[b, first:span[0] + f]])[None]
            want = den[b, f].log_softmax(-1) + w * causal_logits(model, rows)[0, -1].log_softmax(-1)
            if f == 7:  # the span's last slot: its best tokens, each with how the text after it reads
                want = closed(model, want, rows, ids[b, span[1]:span[1] + CLOSING_TOKENS], w)
            assert guided[b].nonzero().flatten().tolist() == [f]
            assert torch.allclose(steered[b, f].log_softmax(-1), want.log_softmax(-1), atol=1e-4)
            others = torch.arange(8) != f
            assert torch.equal(steered[b, others], den[b, others])


def test_a_guided_run_marks_its_guided_commits_and_is_reproducible():
    model = Guided()
    start = TEXT.index("lazy dog")
    canvas = build_canvas(model.codec, TEXT, [Span(start, start + len("lazy dog"))], model.max_length)
    settings = SamplerSettings(guide=2.0, candidates=2, seed=3, strategy="random")  # order: not L2R
    steps = list(infill(model, canvas, settings))
    last = steps[-1]
    assert last.done and last.guided.any()
    assert not (last.guided & (last.committed_at < 0)).any()  # only slots the loop committed
    for step in steps:  # left to right: each forward commits the frontier slot, guided, alone
        assert torch.equal(step.committed, step.guided & step.committed)
        assert step.committed.sum(-1).eq(1).all()
    order = torch.stack([s.committed.int().argmax(-1) for s in steps])         # (steps, B)
    assert (order.diff(dim=0) > 0).all()
    assert run(infill(model, canvas, settings)).texts == last.texts
    for text in last.texts:
        assert text.startswith(TEXT[:start]) and text.endswith(TEXT[start + len("lazy dog"):])


def waiting(monkeypatch, wait: bool) -> None:
    """Guides built by the loop wait one forward (the draft) or not, whatever the settings say."""
    import engine.guide
    import engine.loop
    made = engine.guide.make_guide

    def make(model, layout, settings):
        guide = made(model, layout, settings)
        guide.waits, guide.waiting = int(wait), wait
        return guide
    monkeypatch.setattr(engine.loop, "make_guide", make)


def test_over_cached_context_the_first_step_is_the_denoisers_draft_and_the_rest_as_without_it(monkeypatch):
    """The frontier waits one forward: step 1 commits nothing and carries every slot's draft (the
    denoiser's choices at its forward, as an unguided run's first forward sees them); the steps after
    commit what a guide that does not wait commits, one forward later."""
    model = Guided()
    start = TEXT.index("lazy dog")
    canvas = build_canvas(model.codec, TEXT, [Span(start, start + len("lazy dog"))], model.max_length)
    settings = SamplerSettings(guide=1.0, cache="dual", seed=5)
    assert make_guide(model, Layout.of(canvas.span_ranges, None, torch.device("cpu")), settings).waits == 1
    steps = list(infill(model, canvas, settings))
    plain = list(infill(model, canvas, settings.replace(guide=0.0)))
    draft = steps[0]
    assert not draft.committed.any() and draft.masked.all() and (draft.top_probs[..., 0] > 0).all()
    assert torch.equal(draft.top_ids, plain[0].top_ids)  # the denoiser's own forward, nothing steered
    waiting(monkeypatch, False)
    direct = list(infill(model, canvas, settings))
    assert len(steps) == len(direct) + 1 and steps[-1].forwards == direct[-1].forwards + 1
    for a, b in zip(steps[1:], direct):
        assert torch.equal(a.committed, b.committed) and torch.equal(a.guided, b.guided)
        assert torch.equal(a.tokens, b.tokens) and torch.allclose(a.confidence, b.confidence, atol=1e-5)
    assert steps[-1].texts == direct[-1].texts


def test_a_waiting_guide_past_its_deadline_at_the_draft_still_finishes():
    """Out of time at the draft's forward, that step is the last: it commits every slot left."""
    import time
    model = Guided()
    start = TEXT.index("dog")
    canvas = build_canvas(model.codec, TEXT, [Span(start, start + len("dog"))], model.max_length)
    steps = list(infill(model, canvas, SamplerSettings(guide=1.0, cache="dual"), deadline=time.monotonic() - 1))
    assert len(steps) == 1 and steps[0].done


def test_a_guide_with_a_budget_of_steps_or_no_cache_does_not_wait():
    model = Guided()
    layout = Layout.of(((5, 9),), None, torch.device("cpu"))
    for settings in (SamplerSettings(guide=1.0), SamplerSettings(guide=1.0, cache="dual", steps=3)):
        assert make_guide(model, layout, settings).waits == 0
        canvas = build_canvas(model.codec, TEXT, [Span(4, 20)], model.max_length)
        assert next(iter(infill(model, canvas, settings))).committed.any()


def test_a_guided_run_with_fewer_steps_than_tokens_still_finishes():
    model = Guided()
    start = TEXT.index("lazy dog")
    canvas = build_canvas(model.codec, TEXT, [Span(start, start + len("lazy dog."), 6)], model.max_length)
    steps = list(infill(model, canvas, SamplerSettings(guide=1.0, steps=2)))
    assert len(steps) <= 2 and steps[-1].done


def test_the_guide_changes_what_is_written():
    model = Guided()
    start = TEXT.index("best of")
    canvas = build_canvas(model.codec, TEXT, [Span(start, start + len("best of times"))], model.max_length)
    plain = run(infill(model, canvas, SamplerSettings())).texts[0]
    assert run(infill(model, canvas, SamplerSettings(guide=8.0))).texts[0] != plain


def test_a_model_without_a_causal_view_refuses_the_guide_by_name():
    model = tiny_llama(False, False)
    layout = Layout.of(((2, 5),), None, torch.device("cpu"))
    with pytest.raises(ValueError, match="^guide: .*set guide 0"):
        make_guide(model, layout, SamplerSettings(guide=1.0))
    assert make_guide(model, layout, SamplerSettings()).steer  # off: no view needed


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -0.5, 9.0, 1e308, "1"])
def test_a_bad_guide_weight_is_refused_by_name(bad):
    with pytest.raises(ValueError, match="^guide must be"):
        SamplerSettings(guide=bad)


def test_the_base_view_is_seen_only_by_the_thread_inside_it(tmp_path):
    """While a job's thread reads the base (guide, fluency), the scheduler's worker thread must
    still run the adapted net."""
    base, adapted, path = adapted_tiny(tmp_path)
    view = BaseView(adapted.net, lora_factors(path, adapted.net))
    ids = torch.tensor([adapted.codec.encode(TEXT)])
    inside, done = threading.Event(), threading.Event()
    seen = {}

    def reader():
        with view.active():
            inside.set()
            seen["base"] = adapted.net(ids)
            done.wait(10)

    thread = threading.Thread(target=reader)
    thread.start()
    inside.wait(10)
    seen["other"] = adapted.net(ids)  # hooks are registered now, but not for this thread
    done.set()
    thread.join(10)
    assert torch.allclose(seen["base"], base.net(ids), atol=1e-4)
    assert torch.allclose(seen["other"], adapted.net(ids), atol=1e-6)
    assert not torch.allclose(base.net(ids), adapted.net(ids), atol=1e-2)
    assert F.mse_loss(seen["other"], seen["base"]) > 1e-4


def test_a_model_with_a_causal_view_starts_from_the_guided_preset():
    from engine.cli import build_parser, settings_from_args
    from engine.guide import default_preset
    from engine.settings import PRESETS
    guided, plain = Guided(), tiny_llama(True, True)
    assert default_preset(guided) == "guided" and PRESETS["guided"].guide > 0
    assert default_preset(plain) == "fast"
    args = build_parser().parse_args(["infill", "--text-file", "x", "--seed", "4"])
    assert settings_from_args(args, guided) == PRESETS["guided"].replace(seed=4)
    assert settings_from_args(args, plain) == PRESETS["fast"].replace(seed=4)
    named = build_parser().parse_args(["infill", "--text-file", "x", "--preset", "quality"])
    assert settings_from_args(named, guided) == PRESETS["quality"]  # a named preset is kept


def test_the_closing_never_keeps_only_banned_tokens():
    """A slot's banned tokens (specials; scope constraints) are out before the closing picks its
    best tokens, else it could keep eight banned ones and leave the slot nothing to take."""
    model = Guided()
    ids = torch.tensor([model.codec.encode(TEXT)])
    layout = Layout.of(((5, 9),), None, torch.device("cpu"))
    todo = torch.tensor([[False, False, False, True]])
    den = torch.randn(1, 4, model.vocab_size, generator=torch.Generator().manual_seed(2))
    ban = torch.zeros(model.vocab_size)
    ban[den[0, 3].topk(40).indices] = float("-inf")  # the denoiser's favourites, all banned
    steered, _ = steer(FrontierGuide(model.causal_view(), layout, 1.0, context=3), model, den, ids, todo, ban)
    kept = torch.isfinite(steered[0, 3])
    assert kept.sum() == CLOSING_CHOICES and not (kept & torch.isinf(ban)).any()


def test_the_inspector_says_which_tokens_the_guide_steered():
    from page.views import inspector_html
    model = Guided()
    start = TEXT.index("lazy dog")
    canvas = build_canvas(model.codec, TEXT, [Span(start, start + len("lazy dog"))], model.max_length)
    guided = run(infill(model, canvas, SamplerSettings(guide=1.0)))
    plain = run(infill(model, canvas, SamplerSettings()))
    pos = int(guided.positions[guided.guided[0].int().argmax()])
    assert "guided by the base model" in inspector_html(guided, canvas, 0, pos)
    assert "guided by the base model" not in inspector_html(plain, canvas, 0, pos)


def test_the_closing_reads_only_its_own_candidates_rows_when_another_is_further_on():
    """Two spans; candidate 0 closes span 1 while candidate 1 is already inside span 2, so the
    cache holds rows past candidate 0's frontier that the closing must not read."""
    model, w = Guided(), 1.0
    ids = torch.tensor([model.codec.encode(TEXT + " " + TEXT)]).expand(2, -1).clone()  # (B, L)
    layout = Layout.of(((5, 9), (15, 19)), None, torch.device("cpu"))
    todo = torch.tensor([[False, False, False, True, True, True, True, True],
                         [False] * 5 + [True] * 3])
    ids[:, layout.positions] = torch.where(todo, model.mask_id, ids[:, layout.positions])
    den = torch.randn(2, 8, model.vocab_size, generator=torch.Generator().manual_seed(4))
    guide = FrontierGuide(model.causal_view(), layout, w, context=3)
    steered, _ = steer(guide, model, den, ids, todo, torch.zeros(model.vocab_size))
    rows = torch.cat([torch.tensor([model.start_id]), ids[0, guide.first:8]])[None]
    want = den[0, 3].log_softmax(-1) + w * causal_logits(model, rows)[0, -1].log_softmax(-1)
    want = closed(model, want, rows, ids[0, 9:9 + CLOSING_TOKENS], w)
    assert torch.allclose(steered[0, 3].log_softmax(-1), want.log_softmax(-1), atol=1e-4)


def test_the_guides_read_packed_into_the_denoisers_forward_equals_each_alone(tmp_path):
    """The causal read rides in the denoiser's packed pass: its rows see the base net (the adapter's
    deltas out of those rows alone) and its past, the denoiser's rows the adapted net, as alone."""
    base, adapted, path = adapted_tiny(tmp_path)
    view = LlamaCausalView(adapted.net, adapted.start_id, BaseView(adapted.net, lora_factors(path, adapted.net)))
    g = torch.Generator().manual_seed(2)
    ids = torch.randint(10, 300, (2, 30), generator=g)
    rows = torch.randint(10, 300, (2, 9), generator=g)
    _, past = view.extend(rows[:, :6], None)
    calls = [ForwardCall(ids, torch.arange(5, 12)), CausalCall(view, rows[:, 6:], past),
             ForwardCall(ids[:1, :20], torch.arange(2, 4), cached=True)]
    got = adapted.forward_many(calls)
    torch.testing.assert_close(got[0], adapted.logits_at(ids, torch.arange(5, 12)), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(got[2][0], adapted.cached_logits(ids[:1, :20], torch.arange(2, 4), None)[0],
                               atol=1e-5, rtol=1e-5)
    out, extended = got[1]
    torch.testing.assert_close(out, causal_logits(base, rows)[:, 6:], atol=1e-4, rtol=1e-4)  # the base, not adapted
    assert extended[0][0].shape[2] == 9  # the past now holds every row read
    again, _ = view.extend(rows[:, 8:], view.truncate(extended, 8))
    torch.testing.assert_close(again, out[:, 2:], atol=1e-4, rtol=1e-4)
