"""Dream's variants loaded from tiny folders: DreamOn (expand/delete tokens), DiffuCoder (its padding
token ends a span), Dream-Coder (plain Dream)."""
import json

import pytest
import torch

from engine import SamplerSettings, Span, build_canvas, load_model
from engine.length import choose_length
from engine.resize import ResizingInfill, resizes
from tests.tiny import byte_bpe_tokenizer

DOC = "def add(a, b):\n    return a + b\n\nprint(add(1, 2))\n"


def dream_folder(folder, extra_tokens=(), pad=None, generation=None):
    """A Dream-layout folder (Qwen2 names, model_type "Dream") with extra special tokens."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    tok = byte_bpe_tokenizer(mask="<|mask|>")
    tok.add_special_tokens({"additional_special_tokens": list(extra_tokens)})
    if pad:
        tok.add_special_tokens({"pad_token": pad})
    torch.manual_seed(0)
    net = Qwen2ForCausalLM(Qwen2Config(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2,
                                       num_attention_heads=4, num_key_value_heads=2, intermediate_size=64,
                                       max_position_embeddings=256, tie_word_embeddings=False))
    with torch.no_grad():
        for p in net.parameters():
            p.add_(torch.randn_like(p) * 0.3)
    net.save_pretrained(folder)
    config = json.loads((folder / "config.json").read_text())
    config.update(model_type="Dream", architectures=["DreamModel"], mask_token_id=tok.mask_token_id)
    (folder / "config.json").write_text(json.dumps(config))
    tok.save_pretrained(folder)
    if generation is not None:
        ids = {k: tok.convert_tokens_to_ids(v) for k, v in generation.items()}
        (folder / "generation_config.json").write_text(json.dumps(ids))
    return folder


@pytest.fixture(scope="module")
def dreamon(tmp_path_factory):
    folder = dream_folder(tmp_path_factory.mktemp("dreamon"), ["<|expand|>", "<|delete|>"],
                          generation={"expand_token_id": "<|expand|>", "delete_token_id": "<|delete|>"})
    return load_model(folder, device="cpu")


def test_dreamon_folder_has_its_length_tokens(dreamon):
    tok = dreamon.codec.tokenizer
    assert dreamon.label.startswith("DreamOn (local: ") and resizes(dreamon) and dreamon.shifted
    assert (dreamon.expand_id, dreamon.delete_id) == tuple(tok.convert_tokens_to_ids(["<|expand|>", "<|delete|>"]))
    assert {dreamon.expand_id, dreamon.delete_id} <= set(dreamon.codec.banned_ids)  # fixed-length runs


def test_length_tokens_found_by_name_without_generation_config(tmp_path):
    model = load_model(dream_folder(tmp_path, ["<|expand|>", "<|delete|>"]), device="cpu")
    assert resizes(model) and model.expand_id == model.codec.tokenizer.convert_tokens_to_ids("<|expand|>")


def test_dreamon_without_a_delete_token_deletes_with_end_of_text(tmp_path):
    """DreamOn's own generator removes an end-of-text written at a masked slot (delete_eos_token)."""
    folder = dream_folder(tmp_path, ["<|expand|>"], generation={"expand_token_id": "<|expand|>"})
    model = load_model(folder, device="cpu")
    assert resizes(model) and model.delete_id == model.codec.eos_id is not None


def test_dreamon_resizing_infill_ends_and_keeps_the_outside_text(dreamon):
    span = Span(4, 7, 3)
    canvas = build_canvas(dreamon.codec, DOC, [span])
    resizing = ResizingInfill(dreamon, canvas, SamplerSettings(temperature=1.0, seed=2), max_slots=8)
    last = list(resizing)[-1]
    text = last.texts[0]
    assert last.done and text.startswith(DOC[:4]) and text.endswith(DOC[7:]) and "\u2591" not in text
    assert 1 <= 3 + resizing.growth[0] <= 8
    chosen, tried = choose_length(dreamon, DOC, span, SamplerSettings(temperature=1.0, seed=2), (3,),
                                  lambda d, s, e: float(e - s))
    assert [n for n, _ in tried] == [chosen] and 1 <= chosen <= 16


@pytest.mark.parametrize("pad, allowed", [("<|dlm_pad|>", True), ("<|pad|>", False)],
                         ids=["diffucoder", "dream-coder"])
def test_diffucoder_padding_token_may_end_a_span(tmp_path, pad, allowed):
    model = load_model(dream_folder(tmp_path, [pad] if pad != "<|pad|>" else [], pad=pad), device="cpu")
    pad_id = model.codec.tokenizer.convert_tokens_to_ids(pad)
    assert (pad_id not in model.codec.banned_ids) == allowed and not resizes(model)
    assert model.codec.decode([pad_id]) == ""  # a span that ends with it reads as ending there
