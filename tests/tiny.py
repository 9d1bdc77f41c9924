"""Tiny offline tokenizers and a scripted model for tests: nothing here touches a hub."""
from __future__ import annotations

import json
from pathlib import Path

import torch

from engine.codec import TextCodec
from engine.families.llama import LlamaDiffusionLM
from engine.families.llama_net import LlamaNet, LlamaShape
from engine.model import DiffusionLM

CORPUS = [
    "The quick brown fox jumps over the lazy dog.",
    "def add(a, b):\n    return a + b\n",
    "for i in range(10):\n    print(i)\n",
    "Héllo wörld, naïve café — 東京 and emoji 🙂 too.",
    "import os\nimport sys\n\nclass Foo:\n    pass\n",
    "It was the best of times, it was the worst of times.",
] * 20


def byte_bpe_tokenizer(*, vocab_size: int = 400, bos: bool = False, mask: str | None = "<|mask|>"):
    """A byte-level BPE tokenizer (GPT-2 / Llama-3 / Qwen style) trained on a few lines."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    specials = ["<|endoftext|>", "<|pad|>"] + ([mask] if mask else []) + (["<s>"] if bos else [])
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(CORPUS, trainer)
    if bos:
        tok.post_processor = processors.TemplateProcessing(
            single="<s> $A", special_tokens=[("<s>", tok.token_to_id("<s>"))])
    kwargs = dict(eos_token="<|endoftext|>", pad_token="<|pad|>")
    if mask:
        kwargs["mask_token"] = mask
    if bos:
        kwargs["bos_token"] = "<s>"
    return PreTrainedTokenizerFast(tokenizer_object=tok, **kwargs)


def sentencepiece_tokenizer():
    """A SentencePiece-style BPE (Gemma / Llama 2 style): spaces become "\u2581" and ride at the
    start of the next token (no byte fallback: the corpus and an alphabet line cover the tests' text)."""
    import string

    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.Replace(" ", "\u2581")
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="never")
    tok.decoder = decoders.Replace("\u2581", " ")
    trainer = trainers.BpeTrainer(vocab_size=600, special_tokens=["<|endoftext|>", "<|pad|>", "<|mask|>"])
    tok.train_from_iterator(CORPUS + [string.printable], trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>", pad_token="<|pad|>",
                                   mask_token="<|mask|>")


def wordpiece_tokenizer():
    """A BERT-style uncased WordPiece tokenizer ([CLS] ... [SEP], [MASK])."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    words = sorted({w.strip(".,:()").lower() for line in CORPUS for w in line.split()} - {""})
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + list("abcdefghijklmnopqrstuvwxyz0123456789.,:()+=_")
    vocab += words + ["##" + c for c in "abcdefghijklmnopqrstuvwxyz"]
    vocab = {t: i for i, t in enumerate(dict.fromkeys(vocab))}
    tok = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])])
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]",
                                   cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]")


class ScriptedModel(DiffusionLM):
    """A mask model whose logits are scripted: it wants `target[i]` at position i with a
    confidence that is a fixed function of i, so tests can predict what every strategy does."""

    def __init__(self, codec: TextCodec, target: torch.Tensor, confidence: torch.Tensor,
                 vocab_size: int | None = None):
        self.codec = codec
        self.noise = "mask"
        self.mask_id = codec.mask_id
        self.vocab_size = vocab_size or len(codec.tokenizer)
        self.max_length = 4096
        self.device = torch.device("cpu")
        self.label = "scripted"
        self.target = target            # (L,) ids the model wants
        self.confidence = confidence    # (L,) probability it gives them
        self.calls = 0

    def logits(self, ids: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        B, L = ids.shape
        V = self.vocab_size
        p = self.confidence[:L].clamp(1e-4, 1 - 1e-4)
        # The target gets probability p, the rest share 1 - p evenly.
        rest = torch.log((1 - p) / (V - 1))
        logits = rest[:, None].expand(L, V).clone()
        logits[torch.arange(L), self.target[:L]] = torch.log(p)
        return logits.unsqueeze(0).expand(B, L, V).clone()


def save_tiny_bert(folder: Path) -> Path:
    """A randomly initialised 2-layer BERT masked LM with the WordPiece tokenizer, as a user's folder."""
    from transformers import BertConfig, BertForMaskedLM

    tok = wordpiece_tokenizer()
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=128)
    BertForMaskedLM(config).save_pretrained(folder)
    tok.save_pretrained(folder)
    return Path(folder)


class ScriptedUniformModel(ScriptedModel):
    """The scripted model as a uniform-noise model (no mask token, undecided slots hold drafts)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.noise = "uniform"
        self.mask_id = None


def save_tiny_diffusion_gemma(folder: Path, *, bos: bool = True) -> Path:
    """A randomly initialised 2-layer DiffusionGemma (encoder/decoder sharing weights, 4 experts,
    a 1-layer vision tower the architecture requires) with the byte BPE tokenizer, as a user's folder."""
    from transformers import DiffusionGemmaConfig, DiffusionGemmaForBlockDiffusion

    tok = byte_bpe_tokenizer(mask=None, bos=bos)
    text = dict(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                num_attention_heads=2, num_key_value_heads=1, head_dim=16, global_head_dim=16,
                sliding_window=8, max_position_embeddings=512, num_experts=4, top_k_experts=2,
                moe_intermediate_size=32, layer_types=["sliding_attention", "full_attention"],
                pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id,
                # without a <s> in the tokenizer the config's bos is GPT-2's: end-of-text
                bos_token_id=tok.bos_token_id if bos else tok.eos_token_id)
    vision = dict(model_type="gemma4_vision", hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                  num_attention_heads=2, num_key_value_heads=1, head_dim=8)
    config = DiffusionGemmaConfig(text_config=text, vision_config=vision, canvas_length=16,
                                  boi_token_id=None, eoi_token_id=None, image_token_id=None)
    torch.manual_seed(0)
    DiffusionGemmaForBlockDiffusion(config).save_pretrained(folder)
    tok.save_pretrained(folder)
    return Path(folder)


def tiny_llama(shifted: bool, start: bool) -> LlamaDiffusionLM:
    tok = byte_bpe_tokenizer(bos=True)
    torch.manual_seed(0)
    net = LlamaNet(LlamaShape(vocab=len(tok), width=32, layers=2, heads=4, kv_heads=2, ffn=64,
                              max_length=256)).eval().requires_grad_(False)
    with torch.no_grad():
        for p in net.parameters():  # weights large enough that every position matters
            p.copy_(torch.randn_like(p) * 0.3 + (1.0 if p.dim() == 1 else 0.0))
    codec = TextCodec.from_tokenizer(tok)
    return LlamaDiffusionLM(net, codec, label="tiny", shifted=shifted,
                            start_id=tok.bos_token_id if start else None)


def original_fill(canvas) -> torch.Tensor:
    """P-space slots (P,) as a finished run would hold them: each span's free slots hold the tokens of
    the original text they stand for (the span's own tokens, as its region lays them out), end-of-text
    after them; frozen edge slots keep their forced tokens."""
    codec, tokens = canvas.codec, canvas.ids.clone()
    for (a, b), (start, end) in zip(canvas.span_ranges, canvas.regions):
        free = (~canvas.fixed[a:b]).nonzero().flatten()
        lo, hi = a + int(free[0]), a + int(free[-1]) + 1
        head, tail = codec.decode(canvas.ids[a:lo].tolist()), codec.decode(canvas.ids[hi:b].tolist())
        ids = codec.encode(canvas.text[start + len(head):end - len(tail)])[:hi - lo]
        tokens[lo:hi] = torch.tensor(ids + [codec.eos_id] * (hi - lo - len(ids)), dtype=torch.long)
    return tokens[canvas.slots]


def save_tiny_llada(folder: Path, dtype: torch.dtype = torch.float32) -> Path:
    """A random 2-layer LLaDA-layout folder (config.json, model.safetensors in `dtype`, tokenizer)."""
    from safetensors.torch import save_file

    from engine.families.llada import LLADA_NAMES

    tok = byte_bpe_tokenizer(bos=True, mask="<|mdm_mask|>")
    shape = LlamaShape(vocab=len(tok), width=32, layers=2, heads=4, kv_heads=2, ffn=64, max_length=256)
    torch.manual_seed(0)
    net = LlamaNet(shape)
    state = {LLADA_NAMES.theirs(k): v.to(dtype).contiguous() for k, v in net.state_dict().items()}
    folder.mkdir(parents=True, exist_ok=True)
    save_file(state, str(folder / "model.safetensors"))
    config = {"model_type": "llada", "d_model": 32, "n_layers": 2, "n_heads": 4, "n_kv_heads": 2,
              "mlp_hidden_size": 64, "vocab_size": len(tok), "embedding_size": len(tok),
              "max_sequence_length": 256, "weight_tying": False, "mask_token_id": tok.mask_token_id}
    (folder / "config.json").write_text(json.dumps(config))
    tok.save_pretrained(folder)
    return folder
