"""Hugging Face model families loaded from a folder as a user would: tiny random DiffusionGemma."""
import pytest
import torch

from engine import SamplerSettings, Span, build_canvas, infill, run
from engine.infill import infill_text
from engine.load import load_model
from engine.loop import denoise
from tests.tiny import save_tiny_diffusion_gemma

DOC = "def add(a, b):\n    return a + b\n\nprint(add(1, 2))  # café 🙂\n"
SPAN = Span(4, 13, 6)  # "add(a, b)" -> 6 fresh tokens


@pytest.fixture(scope="module", params=[True, False], ids=["bos-frame", "no-frame"])
def gemma(request, tmp_path_factory):
    """Loaded through load_model; with a <s> frame (like Gemma's <bos>) and without one."""
    folder = save_tiny_diffusion_gemma(tmp_path_factory.mktemp("diffusion_gemma"), bos=request.param)
    return load_model(str(folder))


def test_diffusion_gemma_loads_as_a_uniform_noise_model(gemma):
    assert gemma.noise == "uniform" and gemma.mask_id is None
    assert gemma.label.startswith("DiffusionGemma (local: ")
    assert gemma.vocab_size == gemma.net.config.text_config.vocab_size
    assert gemma.max_length <= gemma.net.config.text_config.max_position_embeddings
    ids = build_canvas(gemma.codec, DOC, [SPAN]).ids.to(gemma.device)
    ids = torch.stack([ids, ids.roll(3)])                                     # (2, L)
    logits = gemma.logits(ids)
    assert logits.shape == (2, ids.shape[1], gemma.vocab_size)
    assert logits.dtype == torch.float32 and bool(logits.isfinite().all())


def test_logits_see_context_after_a_position_and_ignore_how_the_frame_arrives(gemma):
    ids = build_canvas(gemma.codec, DOC, [SPAN]).ids.to(gemma.device)[None]    # (1, L)
    changed = ids.clone()
    changed[0, -2] = ids[0, -3]  # a token near the end
    before, after = gemma.logits(ids), gemma.logits(changed)
    assert not torch.allclose(before[0, 3], after[0, 3])  # the decoder is bidirectional
    n = len(gemma.codec.frame_prefix)
    if n:  # a canvas with the frame and the same canvas without it get the same scores
        torch.testing.assert_close(before[:, n:], gemma.logits(ids[:, n:]))


@pytest.mark.parametrize("strategy", ["low_confidence", "entropy", "threshold"])
def test_infill_keeps_outside_text_and_is_seed_reproducible(gemma, strategy):
    settings = SamplerSettings(strategy=strategy, temperature=1.0, seed=3)
    out = infill_text(gemma, DOC, [SPAN], settings)
    assert out.startswith(DOC[:SPAN.start]) and out.endswith(DOC[SPAN.end:])
    assert out == infill_text(gemma, DOC, [SPAN], settings)
    others = {infill_text(gemma, DOC, [SPAN], settings.replace(seed=s)) for s in range(4, 8)}
    assert others - {out}  # a random model at temperature 1 does not ignore the seed


def test_undecided_slots_never_hold_banned_ids(gemma):
    canvas = build_canvas(gemma.codec, DOC, [SPAN, Span(len(DOC) - 1, len(DOC) - 1, 4)])
    banned = torch.tensor(gemma.codec.banned_ids)
    slots = torch.cat([torch.arange(a, b) for a, b in canvas.span_ranges])
    seen = []
    forward = gemma.logits
    gemma.logits = lambda ids: (seen.append(ids.cpu()), forward(ids))[1]
    try:
        steps = list(infill(gemma, canvas, SamplerSettings(strategy="low_confidence", candidates=2)))
    finally:
        del gemma.logits
    assert len(seen) == len(steps) and steps[-1].done
    for ids in seen:  # what the model is shown: noise, drafts and commits
        assert not torch.isin(ids[:, slots], banned).any()
    for step in steps:
        undecided = step.tokens[step.masked]
        assert not torch.isin(undecided, banned).any()
        assert torch.equal(step.positions, slots)
        assert not torch.isin(step.tokens, banned).any()
        for text in step.texts:
            assert text.startswith(DOC[:SPAN.start]) and DOC[SPAN.end:-1] in text


def test_denoise_on_bare_tensors_without_the_frame(gemma):
    allowed = [i for i in range(gemma.vocab_size) if i not in gemma.codec.banned_ids]
    ids = torch.tensor(allowed[:12])
    final = run(denoise(gemma, ids, ((0, 4), (8, 12)), torch.zeros(12, dtype=torch.bool),
                        SamplerSettings(strategy="entropy")))
    assert final.done and final.positions.tolist() == [0, 1, 2, 3, 8, 9, 10, 11]
    assert not torch.isin(final.tokens[0], torch.tensor(gemma.codec.banned_ids)).any()
