"""The small real dLLM families, loaded from folders in their own layouts as a user has them:
dllm's MDLM/BD3LM conversions of Qwen2.5/Qwen3, SDAR, Open-dCoder, and dllm's ModernBERT chat
models through the masked-LM family with their chat template. Parity with each reference is in
test_parity.py; here, what the families must do in Sharpen: which net and attention each gets,
what is refused, and an edit end to end through the CLI."""
import io
import json
import shutil

import pytest
import torch

from engine.cli import main
from engine.families.moe_net import MoENet
from engine.families.qwen import BD3LM_BLOCK, attention_block, qwen_shape
from engine.instruct import layout
from engine.load import load_model
from engine.model import UnsupportedModel
from tests.parity import write_tiny
from tests.parity_qwen import BLOCKS, FAMILIES
from tests.tiny import wordpiece_tokenizer

DOC = "t1 t2 t3 t4 t5 t6 t7 t8 t9 t10 t11 t12 t13 t14\n"
LABELS = {"a2d_qwen3": "dllm Qwen3 diffusion (local", "a2d_qwen2": "dllm Qwen2 diffusion (local",
          "a2d_qwen3_bd3lm": "dllm Qwen3 diffusion (BD3LM)", "sdar": "SDAR (local",
          "open_dcoder": "Open-dCoder (local"}


@pytest.fixture(scope="module", params=list(FAMILIES))
def family(request, tmp_path_factory):
    """(name, folder, model): the tiny checkpoint in a folder named as its family."""
    name = request.param
    folder = tmp_path_factory.mktemp("families") / name
    write_tiny(FAMILIES[name](), folder)
    return name, folder, load_model(folder, device="cpu")


def test_each_folder_loads_as_its_family(family):
    name, _, model = family
    assert model.label.startswith(LABELS[name])
    assert model.mask_id == FAMILIES[name]().special_ids()["mask"] and model.noise == "mask"
    assert model.shifted == (name == "open_dcoder")
    block = getattr(model.net.shape, "attention_block", None)
    assert block == BLOCKS.get(name)
    assert model.supports_cache == (block is None)  # the context cache assumes bidirectional attention
    assert isinstance(model.net, MoENet) == (name != "open_dcoder")  # Open-dCoder runs as Dream (LlamaNet)


def test_block_causal_families_see_no_later_block_and_the_others_see_everything(family):
    name, _, model = family
    block = BLOCKS.get(name, 4)
    ids = torch.randint(0, 200, (1, 2 * block + 4), generator=torch.Generator().manual_seed(0))
    changed = ids.clone()
    changed[0, -1] = (ids[0, -1] + 1) % 200            # a token in the last block
    before, after = model.logits(ids), model.logits(changed)
    first = slice(0, block - 1 if model.shifted else block)
    if name in BLOCKS:
        torch.testing.assert_close(before[:, first], after[:, first])
    else:
        assert not torch.allclose(before[:, first], after[:, first])


def test_cli_infill_denoises_a_span_and_keeps_the_text_around_it(family, tmp_path):
    name, folder, _ = family
    doc = tmp_path / "doc.txt"
    doc.write_text(DOC)
    start, end = DOC.index("t5"), DOC.index("t9") - 1
    argv = ["infill", "--model", str(folder), "--text-file", str(doc), "--span", f"{start}:{end}:4",
            "--seed", "1", "--device", "cpu"]
    out, err = io.StringIO(), io.StringIO()
    assert main(argv, stdout=out, stderr=err) == 0, err.getvalue()
    text = out.getvalue()
    assert text.startswith(DOC[:start]) and text.endswith(DOC[end:])
    middle = text[start:len(text) - len(DOC) + end]
    assert middle.strip() and "<|mask|>" not in middle and "<|MASK|>" not in middle


def test_a_plain_qwen2_is_refused_and_only_open_dcoders_auto_map_makes_it_one(tmp_path):
    write_tiny(FAMILIES["open_dcoder"](), tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    del config["auto_map"]
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(UnsupportedModel, match="'qwen2'"):
        load_model(tmp_path, device="cpu")


def test_bd3lm_is_told_by_the_hub_repo_name_of_a_cached_snapshot(tmp_path):
    snapshot = tmp_path / "models--dllm-hub--Qwen3-0.6B-diffusion-bd3lm-v0.1" / "snapshots" / "0123abc"
    mdlm = tmp_path / "models--dllm-hub--Qwen3-0.6B-diffusion-mdlm-v0.1" / "snapshots" / "0123abc"
    config = FAMILIES["a2d_qwen3"]().config
    assert attention_block(snapshot, config) == BD3LM_BLOCK and attention_block(mdlm, config) is None
    assert attention_block(tmp_path / "x", config | {"block_size": 16}) == 16
    with pytest.raises(UnsupportedModel, match="block_size"):
        attention_block(tmp_path / "sdar", {k: v for k, v in FAMILIES["sdar"]().config.items() if k != "block_size"})


@pytest.mark.parametrize("key, value", [("hidden_act", "gelu"), ("use_sliding_window", True),
                                        ("rope_scaling", {"rope_type": "yarn", "factor": 4.0})])
def test_unsupported_config_is_refused_naming_the_key(key, value):
    config = FAMILIES["a2d_qwen3"]().config | {key: value}
    with pytest.raises(UnsupportedModel, match=key.split("_")[0]):
        qwen_shape(config, None)


def test_a_tied_checkpoint_loads_its_head_from_the_embedding(tmp_path):
    """The released 0.5B/0.6B conversions tie the head (Hugging Face saves no lm_head.weight)."""
    from safetensors.torch import load_file, save_file

    write_tiny(FAMILIES["a2d_qwen3"](), tmp_path)
    state = load_file(str(tmp_path / "model.safetensors"))
    del state["lm_head.weight"]
    save_file(state, str(tmp_path / "model.safetensors"))
    config = json.loads((tmp_path / "config.json").read_text()) | {"tie_word_embeddings": True}
    (tmp_path / "config.json").write_text(json.dumps(config))
    model = load_model(tmp_path, device="cpu")
    ids = torch.arange(12)[None]
    h = model.net.hidden(ids)
    torch.testing.assert_close(model.logits(ids), h @ state["model.embed_tokens.weight"].T)


# Released configs (their config.json figures) -> parameters of the net Sharpen builds for them.
RELEASED = {
    "Qwen3-0.6B-diffusion (dllm, tied)": (dict(model_type="a2d-qwen3", vocab_size=151936, hidden_size=1024,
        intermediate_size=3072, num_hidden_layers=28, num_attention_heads=16, num_key_value_heads=8, head_dim=128,
        tie_word_embeddings=True), 0.596e9),
    "Qwen2.5-Coder-0.5B-diffusion (dllm, tied)": (dict(model_type="a2d-qwen2", vocab_size=151936, hidden_size=896,
        intermediate_size=4864, num_hidden_layers=24, num_attention_heads=14, num_key_value_heads=2,
        tie_word_embeddings=True), 0.494e9),
    "SDAR-1.7B-Chat": (dict(model_type="sdar", vocab_size=151936, hidden_size=2048, intermediate_size=6144,
        num_hidden_layers=28, num_attention_heads=16, num_key_value_heads=8, head_dim=128, block_size=4,
        tie_word_embeddings=False), 2.03e9),
}


@pytest.mark.parametrize("name", list(RELEASED))
def test_released_configs_build_nets_of_the_released_size(name):
    config, params = RELEASED[name]
    with torch.device("meta"):
        net = MoENet(qwen_shape(config, config.get("block_size")))
    assert sum(p.numel() for p in net.parameters()) == pytest.approx(params, rel=0.01)


# ---- dllm's ModernBERT chat models -----------------------------------------------------------

# The layout of dllm's BERT chat template (dllm/utils/models.py, saved with the checkpoints'
# tokenizer): [SYS] / [Question] / [Answer] blocks, the open [Answer] as the generation prompt.
CHAT_TEMPLATE = (
    "{% for m in messages %}"
    "{% if m['role'] == 'system' %}[SYS]\n{{ m['content'] | trim }}\n[/SYS]\n\n"
    "{% elif m['role'] == 'user' %}[Question]\n{{ m['content'] | trim }}\n[/Question]\n\n"
    "{% else %}[Answer]\n{{ m['content'] | trim }}\n[/Answer]\n\n{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}[Answer]\n{% endif %}")
MARKERS = ["[SYS]", "[/SYS]", "[Question]", "[/Question]", "[Answer]", "[/Answer]"]


@pytest.fixture(scope="module")
def bert_chat(tmp_path_factory):
    """A tiny ModernBertForMaskedLM folder whose tokenizer carries the chat template."""
    from transformers import ModernBertConfig, ModernBertForMaskedLM

    folder = tmp_path_factory.mktemp("ModernBERT-chat")
    tok = wordpiece_tokenizer()
    tok.add_tokens(MARKERS)
    tok.chat_template = CHAT_TEMPLATE
    torch.manual_seed(0)
    ids = {k: tok.convert_tokens_to_ids(t) for k, t in (("cls", "[CLS]"), ("sep", "[SEP]"), ("pad", "[PAD]"))}
    ModernBertForMaskedLM(ModernBertConfig(
        vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
        max_position_embeddings=128, pad_token_id=ids["pad"], cls_token_id=ids["cls"], sep_token_id=ids["sep"],
        bos_token_id=ids["cls"], eos_token_id=ids["sep"])).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def test_bert_chat_instruction_is_laid_out_as_dllms_chat_sampler_feeds_it(bert_chat):
    """dllm's chat.py gives its sampler apply_chat_template(messages, add_generation_prompt=True)
    ids and the masks after them: Sharpen's instructed canvas starts with exactly those ids, no
    [CLS] in front (the frame a base BERT gets), and ends with the turn's closing."""
    model = load_model(bert_chat, device="cpu")
    tok = model.codec.tokenizer
    assert model.codec.frame_prefix == () and model.codec.frame_suffix == ()
    prompt = layout(model.codec, "make it shorter")
    theirs = tok.apply_chat_template([{"role": "user", "content": "make it shorter"}],
                                     add_generation_prompt=True, tokenize=True)
    theirs = theirs if isinstance(theirs, list) else theirs["input_ids"]  # transformers 5: a BatchEncoding
    assert prompt.layout == "chat template" and list(prompt.head) == list(theirs)
    assert tok.convert_ids_to_tokens(list(prompt.tail))[0].lower() == "[/answer]"  # the uncased vocabulary


def test_bert_without_a_chat_template_keeps_its_frame(bert_chat, tmp_path):
    for f in bert_chat.iterdir():
        shutil.copy(f, tmp_path / f.name)
    config = json.loads((tmp_path / "tokenizer_config.json").read_text())
    config.pop("chat_template", None)
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(config))
    (tmp_path / "chat_template.jinja").unlink(missing_ok=True)
    model = load_model(tmp_path, device="cpu")
    assert model.codec.frame_prefix == (model.codec.tokenizer.cls_token_id,)


def test_cli_instruction_edit_on_a_bert_chat_model(bert_chat, tmp_path):
    doc = tmp_path / "doc.txt"
    doc.write_text("the quick brown fox jumps over the lazy dog.\n")
    out, err = io.StringIO(), io.StringIO()
    argv = ["infill", "--model", str(bert_chat), "--text-file", str(doc), "--span", "10:15:3",
            "--instruction", "make it shorter", "--seed", "2", "--device", "cpu"]
    assert main(argv, stdout=out, stderr=err) == 0, err.getvalue()
    assert out.getvalue().startswith("the quick ") and out.getvalue().endswith(" fox jumps over the lazy dog.\n")
