"""The from-scratch fixture model: how it is written and trained (engine.tools.scratch), and the trained
folder the repository ships in tests/fixtures/tiny-dream, loaded the way a user's Dream is."""
import json
import sysconfig
from pathlib import Path

import pytest
import torch

from engine import SamplerSettings, Span, infill_text, load_model
from engine.families.llama import LlamaDiffusionLM
from engine.families.llama_net import LlamaNet, LlamaShape
from engine.tools.scratch import FIXTURE, init_weights, save_dream_folder, train_scratch
from engine.tools.train import TrainConfig
from tests.tiny import byte_bpe_tokenizer

SHAPE = LlamaShape(vocab=420, width=32, layers=2, heads=4, kv_heads=2, ffn=48, max_length=256)


pytestmark = pytest.mark.usefixtures("one_thread")


def test_written_folder_loads_back_as_dream_with_the_same_logits(tmp_path):
    tok = byte_bpe_tokenizer(mask="<|mask|>")
    net = init_weights(LlamaNet(SHAPE), seed=3)
    save_dream_folder(tmp_path, net, tok, {"note": "test"})
    model = load_model(tmp_path, device="cpu")
    assert isinstance(model, LlamaDiffusionLM) and model.label.startswith("Dream")
    assert model.mask_id == tok.mask_token_id and model.shifted
    ids = torch.tensor([tok.encode("def add(a, b):\n    return a + b\n")])
    with torch.no_grad():
        for p in net.parameters():  # the folder stores float16
            p.copy_(p.half().float())
        expected = net(ids)
    assert torch.allclose(model.logits(ids)[:, 1:], expected[:, :-1], atol=1e-4)  # row i-1 scores i
    assert json.loads((tmp_path / "training.json").read_text()) == {"note": "test"}


def test_training_from_scratch_lowers_held_out_loss():
    g = torch.Generator().manual_seed(0)
    pattern = torch.arange(8, 40).repeat(8)                                     # (256,) periodic
    rows = torch.stack([pattern[s:s + 32] for s in torch.randint(0, 200, (64,), generator=g).tolist()])
    pools, held = {"code": rows[:48], "prose": rows[:48]}, rows[48:56]
    config = TrainConfig(steps=200, seq=32, batch=8, lr=1e-2, warmup=5, checkpoint_every=100,
                         span_share=0.5, max_span=8)
    history = train_scratch(init_weights(LlamaNet(SHAPE), seed=0), pools, held, mask_id=2, start_id=3,
                            config=config, log_every=1000)
    assert [h["step"] for h in history] == [0, 100, 200]
    assert history[-1]["heldout_ce"] < 0.5 * history[0]["heldout_ce"]
    assert history[-1]["heldout_acc"] > max(0.25, 10 * history[0]["heldout_acc"])


# ---- the shipped fixture ----------------------------------------------------------------------

@pytest.fixture(scope="module")
def fixture_model():
    if not (FIXTURE / "model.safetensors").is_file():
        pytest.fail(f"{FIXTURE} is missing: `python -m engine.tools.scratch` writes it")
    return load_model(FIXTURE, device="cpu")


def heldout_code(model, tokens: int) -> torch.Tensor:
    """(tokens,) ids of textwrap.py, a file engine.tools.corpus always holds out of training."""
    text = (Path(sysconfig.get_paths()["stdlib"]) / "textwrap.py").read_text()
    return torch.tensor(model.codec.encode(text)[:tokens])


def test_fixture_is_small_and_records_its_training():
    size = sum(f.stat().st_size for f in FIXTURE.iterdir())
    info = json.loads((FIXTURE / "training.json").read_text())
    assert size < 5_000_000
    assert info["history"][-1]["heldout_ce"] < info["history"][0]["heldout_ce"] - 2


def test_fixture_predicts_held_out_code_better_than_any_constant_guess(fixture_model):
    ids = heldout_code(fixture_model, 1024).view(8, 128)                        # (8, 128)
    masked = torch.rand(ids.shape, generator=torch.Generator().manual_seed(0)) < 0.15
    noisy = torch.where(masked, fixture_model.mask_id, ids)
    guess = fixture_model.logits(noisy).argmax(-1)
    accuracy = (guess[masked] == ids[masked]).float().mean().item()
    best_constant = ids[masked].bincount().max().item() / masked.sum().item()
    assert accuracy > best_constant + 0.1, (accuracy, best_constant)


def test_fixture_infill_keeps_the_text_around_the_span_and_repeats_itself(fixture_model):
    text = "def area(width, height):\n    return width * height\n\n\nprint(area(2, 3))\n"
    start = text.index("return")
    span = Span(start, start + len("return width * height"), 6)
    a = infill_text(fixture_model, text, [span], SamplerSettings(seed=1))
    b = infill_text(fixture_model, text, [span], SamplerSettings(seed=1))
    assert a == b
    assert a.startswith(text[:start]) and a.endswith(text[span.end:])


def test_mask_rate_ceiling_rises_from_a_fifth_to_the_full_objective_by_mid_run():
    from engine.tools.scratch import mask_rate_ceiling
    ceilings = [mask_rate_ceiling(s, 1000) for s in range(1000)]
    assert ceilings[0] == pytest.approx(0.2) and ceilings[250] == pytest.approx(0.6)
    assert all(c == 1.0 for c in ceilings[500:])
    assert all(a <= b for a, b in zip(ceilings, ceilings[1:]))
