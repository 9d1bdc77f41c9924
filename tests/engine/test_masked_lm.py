"""Hugging Face masked LMs (BERT, RoBERTa, ModernBERT) load through the user's path and infill."""
import pytest
import torch

from engine.canvas import Span
from engine.infill import infill_text
from engine.load import load_model
from engine.model import ModelNotFound, UnsupportedModel
from engine.settings import SamplerSettings
from tests.tiny import byte_bpe_tokenizer, save_tiny_bert

TEXT = "def add(a, b):\n    return a + b\n"


def save_tiny(kind: str, folder):
    """A random 2-layer masked LM of `kind`, saved with its tokenizer as a user would have it."""
    from transformers import ModernBertConfig, ModernBertForMaskedLM, RobertaConfig, RobertaForMaskedLM
    if kind == "bert":
        return save_tiny_bert(folder)
    tok = byte_bpe_tokenizer()
    torch.manual_seed(0)
    common = dict(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                  intermediate_size=64, pad_token_id=tok.pad_token_id)
    if kind == "roberta":
        net = RobertaForMaskedLM(RobertaConfig(max_position_embeddings=130, **common))
    else:
        net = ModernBertForMaskedLM(ModernBertConfig(max_position_embeddings=128, **common,
                                                     bos_token_id=tok.eos_token_id,
                                                     eos_token_id=tok.eos_token_id,
                                                     sep_token_id=tok.eos_token_id,
                                                     cls_token_id=tok.eos_token_id))
    net.save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


@pytest.mark.parametrize("kind", ["bert", "roberta", "modernbert"])
def test_masked_lm_loads_and_infills_keeping_outside_text(kind, tmp_path):
    model = load_model(save_tiny(kind, tmp_path / kind), device="cpu")
    assert model.noise == "mask" and model.mask_id == model.codec.tokenizer.mask_token_id
    assert model.max_length == 128
    ids = torch.tensor([model.codec.encode("return a + b")])
    assert model.logits(ids).shape == (1, ids.shape[1], model.vocab_size)
    start = TEXT.index("return")
    out = infill_text(model, TEXT, [Span(start, start + len("return a + b"), length=5)],
                      SamplerSettings(strategy="threshold", seed=1))
    assert out.startswith(TEXT[:start]) and out.endswith("\n")
    assert out == infill_text(model, TEXT, [Span(start, start + 12, length=5)],
                              SamplerSettings(strategy="threshold", seed=1))


def test_missing_folder_says_how_to_get_a_model(tmp_path):
    with pytest.raises(ModelNotFound, match="never downloads"):
        load_model(tmp_path / "nope", device="cpu")
    with pytest.raises(ModelNotFound, match="never downloads.*`python -m engine pull someone/not-cached-model`"):
        load_model("someone/not-cached-model", device="cpu")


def test_folder_of_an_unsupported_family_is_refused_by_name(tmp_path):
    (tmp_path / "config.json").write_text('{"model_type": "gpt2", "architectures": ["GPT2LMHeadModel"]}')
    with pytest.raises(UnsupportedModel, match="gpt2"):
        load_model(tmp_path, device="cpu")
