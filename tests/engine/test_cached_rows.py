"""Cached steps' rows: only undecided slots are read out (bit-identical), cache "delayed" stops running
committed slots, round_context "carry" lets correction rounds go on from the fill's cache."""
import pytest
import torch

from engine import SamplerSettings, Span, build_canvas
from engine.context import Carry
from engine.correct import corrected
from engine.families import rows
from engine.families.llama_net import LlamaNet, LlamaShape
from engine.model import ForwardCall
from tests.tiny import tiny_llama

DOC = "import os\nimport sys\n\nclass Foo:\n    pass\n\ndef add(a, b):\n    return a + b\n" * 2
FAMILIES = [(False, False), (True, False), (True, True)]  # LLaDA, Dream, bundled-model layouts


def canvas_ids(model, n=60):
    return torch.tensor([model.codec.encode(DOC)[:n]])


class RowSpy:
    """The model's runner, counting the rows each forward runs and reads out."""

    def __init__(self, model):
        self.inner, self.ran, self.read = model.runner, [], []
        model.runner = self

    def __call__(self, x, positions, rows, context=None, want_kv=False):
        self.ran.append(x.shape[1])
        self.read.append(len(rows))
        return self.inner(x, positions, rows, context, want_kv)

    def context(self, kvs, keep):
        return self.inner.context(kvs, keep)


@pytest.mark.parametrize("shifted,start", FAMILIES)
@pytest.mark.parametrize("scored", [1, 3, 7])
def test_a_cached_step_reads_out_the_slots_it_is_asked_for(shifted, start, scored):
    model = tiny_llama(shifted, start)
    ids, pos = canvas_ids(model), torch.arange(20, 30)
    _, cache = model.cached_logits(ids, pos, None)
    changed = ids.clone()
    changed[:, pos[::2]] = model.mask_id
    every, _ = model.cached_logits(changed, pos, cache)
    some = torch.tensor([1, 4, 5, 6, 8, 9, 0][:scored])
    few, after = model.cached_logits(changed, pos[some], cache)
    assert torch.equal(after.active, cache.active)  # without freeze every span row still runs
    torch.testing.assert_close(few, every[:, some], atol=1e-5, rtol=0)


@torch.inference_mode()
def test_the_head_gives_a_row_the_same_logits_among_any_rows():
    """At the bundled model's head shape (49,152 x 576) on one thread, a row's logits are
    bit-identical whichever rows share the product: below HEAD_FLOOR rows BLAS takes a
    matrix-vector kernel that sums in another order, so `project` pads. (With two threads MKL
    splits other row counts differently too: docs/PERFORMANCE.md.)"""
    torch.manual_seed(0)
    with torch.device("meta"):
        net = LlamaNet(LlamaShape(vocab=49152, width=576, layers=0, heads=9, kv_heads=3, ffn=8, tie_embeddings=True))
    net.embed = torch.nn.Embedding(49152, 576).requires_grad_(False)
    h = torch.randn(1, 32, 576)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        every = rows.project(net, h)
        for count in range(1, 32):
            some = torch.randperm(32)[:count]
            assert torch.equal(rows.project(net, h[:, some]), every[:, some]), f"{count} rows"
    finally:
        torch.set_num_threads(threads)


@pytest.mark.parametrize("shifted,start", FAMILIES)
def test_a_frozen_cache_runs_only_the_rows_its_scored_slots_need(shifted, start):
    model = tiny_llama(shifted, start)
    ids, pos = canvas_ids(model), torch.arange(20, 30)
    masked = ids.clone()
    masked[:, pos] = model.mask_id
    _, cache = model.cached_logits(masked, pos, None, freeze=True)
    assert cache.freeze and len(cache.active) == len(model.span_rows(pos))
    # Slots 20-24 decided: the step after still runs their rows (their ids moved), the next one not.
    decided = masked.clone()
    decided[:, 20:25] = ids[:, 20:25]
    out, cache = model.cached_logits(decided, pos[5:], cache)
    moved = (pos[:5] + int(start)).tolist()  # the decided slots' own rows (the start token shifts them)
    assert out.shape[1] == 5 and set(moved) <= set(cache.active.tolist())
    out, cache = model.cached_logits(decided, pos[5:], cache)
    assert torch.equal(cache.active, model.span_rows(pos[5:]))
    held = set(cache.held.tolist())
    assert held.isdisjoint(cache.active.tolist()) and len(held) + len(cache.active) == decided.shape[1] + int(start)
    # Frozen rows hold the keys/values of their last forward, run with the ids they still have: where
    # each slot's own row scores it (LLaDA), that forward saw this canvas, and the step equals one that
    # runs every span row over the same context (a cache made without freeze). With a shifted head the
    # text's row before the span scored slot 20 and left with the keys/values of the refresh, as the
    # rest of the context did.
    if shifted:
        return
    _, plain = model.cached_logits(masked, pos, None)
    want, _ = model.cached_logits(decided, pos[5:], plain)
    torch.testing.assert_close(out, want, atol=1e-5, rtol=1e-5)


def test_a_frozen_row_whose_id_moves_runs_again():
    model = tiny_llama(True, True)
    ids, pos = canvas_ids(model), torch.arange(20, 30)
    _, cache = model.cached_logits(ids, pos[5:], None, freeze=True)
    assert 22 not in cache.active.tolist()          # slot 21's row (start token in front): context
    moved = ids.clone()
    moved[:, 21] = model.mask_id
    out, cache = model.cached_logits(moved, pos[5:], cache)
    assert 22 in cache.active.tolist() and 22 not in cache.held.tolist()


def test_a_packed_frozen_step_equals_the_step_alone():
    model = tiny_llama(True, True)
    ids, pos = canvas_ids(model), torch.arange(20, 30)
    other = canvas_ids(model, 45)
    _, cache = model.cached_logits(ids, pos, None, freeze=True)
    decided = ids.clone()
    decided[:, 20:24] = model.mask_id
    got = model.forward_many([ForwardCall(decided, pos[:4], True, cache), ForwardCall(other, torch.arange(3, 9))])
    want, alone = model.cached_logits(decided, pos[:4], cache)
    torch.testing.assert_close(got[0][0], want, atol=1e-5, rtol=1e-5)
    assert torch.equal(got[0][1].active, alone.active) and torch.equal(got[0][1].held, alone.held)


def edit(model):
    start = DOC.index("return")
    return build_canvas(model.codec, DOC, [Span(start, start + 12, 8)], model.max_length)


def rejecting(times):
    """A checker that names the span's first character for `times` rounds."""
    calls = []

    def check(before, after, span, new):
        calls.append(1)
        return [(new[0], new[0] + 1)] if len(calls) <= times else []
    return check


@pytest.mark.parametrize("cache", ["dual", "delayed"])
def test_each_cache_setting_fills_the_span_and_keeps_the_text_outside(cache):
    model = tiny_llama(True, True)
    canvas = edit(model)
    steps = list(corrected(model, canvas, SamplerSettings(strategy="low_confidence", cache=cache)))
    text, start = steps[-1].texts[0], DOC.index("return")
    assert steps[-1].done and text.startswith(DOC[:start]) and text.endswith(DOC[start + 12:])


def test_delayed_runs_fewer_rows_than_dual():
    model = tiny_llama(True, True)
    ran = {}
    for cache in ("dual", "delayed"):
        spy = RowSpy(model)
        list(corrected(model, edit(model), SamplerSettings(strategy="low_confidence", cache=cache)))
        model.runner = spy.inner
        ran[cache] = spy.ran
    assert len(ran["dual"]) == len(ran["delayed"]) == 8      # one slot a forward either way
    assert ran["delayed"][0] == ran["dual"][0]               # the first forward reads the window
    assert sum(ran["delayed"][1:]) < sum(ran["dual"][1:])
    assert ran["delayed"][-1] <= 3                           # the last slot: its row and its scorer's


@pytest.mark.parametrize("cache", ["dual", "delayed"])
def test_carried_rounds_read_the_window_once(cache):
    model = tiny_llama(True, True)
    window = {}
    for context in ("reread", "carry"):
        spy = RowSpy(model)
        settings = SamplerSettings(strategy="low_confidence", cache=cache, correct_rounds=2, round_context=context)
        steps = list(corrected(model, edit(model), settings, rejecting(2)))
        model.runner = spy.inner
        assert {s.round for s in steps} == {0, 1, 2} and steps[-1].done
        window[context] = [n for n in spy.ran if n == spy.ran[0]]
    assert len(window["reread"]) == 3 and len(window["carry"]) == 1


def test_a_carry_refuses_a_window_whose_text_outside_the_slots_moved():
    carry, ids, pos = Carry(), torch.arange(40).view(1, -1), torch.arange(10, 20)
    carry.keep("cache", ids)
    slots_moved = ids.clone()
    slots_moved[:, 12] = 0
    outside_moved = ids.clone()
    outside_moved[:, 30] = 0
    assert carry.take(slots_moved, pos) == "cache"
    assert carry.take(outside_moved, pos) is None and carry.take(ids[:, :30], pos) is None


def test_bad_cache_row_settings_are_refused_by_name():
    with pytest.raises(ValueError, match="unknown round_context"):
        SamplerSettings(round_context="keep")
    with pytest.raises(ValueError, match="unknown cache"):
        SamplerSettings(cache="frozen")


def test_both_cache_settings_count_as_cached_context_where_the_model_has_one():
    """The guide's draft step (engine.guide.make_guide) and the context strategy read this one answer."""
    from engine.context import caches_context
    model = tiny_llama(True, True)
    assert caches_context(model, SamplerSettings(cache="dual"))
    assert caches_context(model, SamplerSettings(cache="delayed"))
    assert not caches_context(model, SamplerSettings(cache="none"))
    model.supports_cache = False
    assert not caches_context(model, SamplerSettings(cache="delayed"))
