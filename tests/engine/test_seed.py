"""The trials of an "auto" length share their first forward's context: the first trial's, the text
after the span turned by the length difference; only in the pass right after the lead's own."""
import torch

from engine.families.seed import followers, seeded
from engine.model import CausalCall, ForwardCall
from tests.tiny import tiny_llama

TEXT = "The quick brown fox jumps over the lazy dog. It was the best of times."


def trial(model, slots: int, at: int = 6) -> ForwardCall:
    """The first DualCache forward of TEXT's tokens with `slots` masked slots in place of two tokens."""
    ids = model.codec.encode(TEXT)
    canvas = ids[:at] + [model.mask_id] * slots + ids[at + 2:]
    return ForwardCall(torch.tensor([canvas]), torch.arange(at, at + slots), cached=True)


def guide_read(model) -> CausalCall:
    return CausalCall(model.causal_view(), torch.tensor([[model.start_id, 5, 6]]))


def model_with_view():
    from engine.families.causal import LlamaCausalView

    model = tiny_llama(True, True)
    view = LlamaCausalView(model.net, model.start_id)
    model.causal_view = lambda: view  # type: ignore[method-assign]
    return model


def test_a_longer_trials_seeded_context_is_its_own_where_keys_depend_only_on_place():
    """Block 0's keys and values depend on each token and its position alone: the lead's, turned by
    the length difference after the span, are exactly the trial's own."""
    model = tiny_llama(True, True)
    lead, longer, shorter = trial(model, 2), trial(model, 5), trial(model, 1)
    _, lead_cache = model.cached_logits(lead.ids, lead.positions, None)
    for other, more in ((longer, 3), (shorter, -1)):
        _, own = model.cached_logits(other.ids, other.positions, None)
        got = seeded(model, lead_cache, other, more)
        assert torch.equal(got.active, own.active) and torch.equal(got.query, own.query)
        (k, v), (k_own, v_own) = got.context.kv[0], own.context.kv[0]
        assert torch.allclose(k, k_own, atol=1e-5) and torch.allclose(v, v_own, atol=1e-6)


def test_trials_started_together_run_the_context_once():
    model = model_with_view()
    calls = [trial(model, 2), guide_read(model), trial(model, 4), trial(model, 1)]
    assert followers(calls, model.mask_id, None) == {2: (0, 2), 3: (0, -1)}
    alone = model.cached_logits(calls[0].ids, calls[0].positions, None)[0]
    rows = []
    model.net.norm.register_forward_hook(lambda m, i, out: rows.append(out.numel() // out.shape[-1]))
    answers = model.forward_many(calls)
    assert torch.allclose(answers[0][0], alone, atol=1e-5)  # the lead as it is alone
    whole = calls[0].ids.shape[1] + 1  # its rows and the start row
    assert rows == [whole + 3, 5 + 2]  # then only the trials' slots and the rows that score them
    assert [a[1].context.kv[0][0].shape[2] for a in (answers[0], answers[2], answers[3])] == [whole - 3] * 3


def test_a_lead_serves_the_pass_right_after_it_only():
    """The page starts its shown trial a step before the others; a run started later on its own is
    not changed by a lead it never shared a start with."""
    model = model_with_view()
    model.forward_many([trial(model, 2), guide_read(model)])
    later = trial(model, 4)
    seeded_now = model.forward_many([later, guide_read(model)])[0][0]
    assert not torch.allclose(seeded_now, model.cached_logits(later.ids, later.positions, None)[0], atol=1e-4)
    model.forward_many([guide_read(model), guide_read(model)])  # a pass with no first forward
    alone_later = model.forward_many([later, guide_read(model)])[0][0]
    assert torch.allclose(alone_later, model.cached_logits(later.ids, later.positions, None)[0], atol=1e-5)
