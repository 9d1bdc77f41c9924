"""Steerling checkpoints (model_type "steerling": guidelabs/steerling-8b and kin): a block-causal
discrete diffusion LM whose hidden state decomposes into named known concepts and unknown ones.

Read in the steerling package 0.2.0 (PyPI, Apache-2.0: steerling/models/, configs/, inference/)
and guidelabs/steerling's scripts/build_hf_files.py (the published folder: a flat config.json,
tensors named as the package's InterpretableCausalDiffusionLM, the LM head tied to the embedding).
Parity with the package on a tiny random checkpoint: tests/engine/test_steerling.py.
- Attention is block-causal (`diff_block_size`, 64): a token sees its own block and every earlier
  one, counted from the first token the model reads; so a span's slots never see the document
  past the end of their block. Sharpen counts blocks from the first token the model sees (the
  context window's start), as for LLaDA 2; the DualCache is not offered.
- Head: not shifted (logits[i] scores token i), mask id config `mask_token_id` (<|mask|>).
- Tokenizer: the package's is tiktoken's cl100k_base plus 4 specials and ships no tokenizer.json;
  Sharpen reads the folder's tokenizer.json (convert once where tiktoken's file is at hand).
- Concept names: the folder's concept_labels.csv (the package's catalog columns concept_id,
  concept_name, head; its concept_labels.parquet exported once).
Refused (UnsupportedModel naming key=value): anything but RMS norms, RoPE, q/k norms, a SwiGLU,
no biases, linear (not attention) concept predictors, a factorised unknown head with its top-k
on, top-k on weights (not logits).
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

import torch

from ..codec import TextCodec
from ..concepts import ConceptNames
from ..load import pick_dtype
from ..model import Call, DiffusionLM, ForwardCall, ModelNotFound, UnsupportedModel
from .llama import build_net, read_safetensors
from .names import NameTable, per_block
from .steerling_net import ConceptShape, SteerlingNet, SteerlingShape, top_features

FAMILY = "Steerling"
LABELS = "concept_labels.csv"

STEERLING_NAMES = NameTable(FAMILY, {
    "transformer.tok_emb.weight": "embed.weight", "transformer.ln_f.weight": "norm.weight",
    "transformer.lm_head.weight": "head.weight",
    **per_block("transformer.blocks.{}", {
        "attn.c_attn": "attn.qkv", "attn.c_proj": "attn.o", "attn.q_norm": "attn.q_norm",
        "attn.k_norm": "attn.k_norm", "ln_1": "attn_norm", "ln_2": "mlp_norm",
        "mlp.c_fc": "mlp.up_gate", "mlp.c_proj": "mlp.down"}),
    "known_head.concept_embedding.weight": "known.embed", "known_head.concept_predictor.weight": "known.predict",
    "unknown_head.embedding_coef.weight": "unknown.coef", "unknown_head.embedding_basis.weight": "unknown.basis",
    "unknown_head.predictor_down.weight": "unknown.down", "unknown_head.predictor_up.weight": "unknown.up",
})

# config key -> the only value Sharpen runs (the released checkpoints' values)
SUPPORTED = {"use_rms_norm": True, "use_rope": True, "use_qk_norm": True, "mlp_type": "swiglu", "use_bias": False,
             "use_attention_known": False, "use_attention_unknown": False, "factorize_unknown": True,
             "apply_topk_to_unknown": True, "topk_on_logits": False}


def refuse(key: str, value: Any, why: str) -> UnsupportedModel:
    return UnsupportedModel(f"{FAMILY} config {key}={value!r}: {why}")


def shapes(config: dict) -> tuple[SteerlingShape, ConceptShape]:
    """The decoder's and the concept heads' shapes from the flat config (a nested "concept" object,
    the package's own layout, is read too); UnsupportedModel names a key Sharpen cannot run."""
    c = {**config, **(config.get("concept") or {})}
    for key, want in SUPPORTED.items():
        if c.get(key, want) != want:
            raise refuse(key, c[key], f"Sharpen runs only {key}={want!r} (the released checkpoints)")
    if c.get("norm_order", "post") not in ("pre", "post"):
        raise refuse("norm_order", c["norm_order"], "expected pre or post")
    if "n_concepts" not in c:
        raise refuse("n_concepts", None, "a Steerling folder without concept heads")
    width, heads = int(c.get("n_embd", 4096)), int(c.get("n_head", 32))
    pad = int(c.get("pad_multiple", 16))
    known, unknown = int(c["n_concepts"]), int(c.get("n_unknown_concepts") or 0) if c.get("use_unknown", True) else 0
    clip = c.get("clip_qkv", 10.0)
    shape = SteerlingShape(
        vocab=int(c["vocab_size"]), width=width, layers=int(c.get("n_layers", 32)), heads=heads,
        kv_heads=int(c.get("n_kv_heads") or heads),
        ffn=int(c.get("intermediate_size") or c.get("mlp_ratio", 4) * width),
        block=int(c.get("diff_block_size", 64)), rope_theta=float(c.get("rope_base", 500000.0)),
        norm_eps=float(c.get("norm_eps", 1e-5)), clip_qkv=None if clip is None else float(clip),
        post_norm=c.get("norm_order", "post") == "post", tie_embeddings=bool(c.get("weight_sharing", True)),
        max_length=int(c.get("block_size", 4096)))
    topk = int(c.get("topk_known") or 32)
    concepts = ConceptShape(
        known=known, unknown=unknown, padded_known=-(-known // pad) * pad, padded_unknown=-(-unknown // pad) * pad,
        known_topk=topk, known_features=int(c.get("topk_known_features") or topk),
        unknown_topk=int(c.get("unknown_topk") or 128), rank=int(c.get("factorize_rank", 256)),
        epsilon=bool(c.get("use_epsilon_correction", True)))
    return shape, concepts


class SteerlingLM(DiffusionLM):
    """A SteerlingNet behind the DiffusionLM interface; `ForwardCall.steer` names concepts to set."""

    def __init__(self, net: SteerlingNet, codec: TextCodec, names: ConceptNames | None, label: str):
        self.net, self.codec, self.names, self.label = net, codec, names, label
        self.noise, self.mask_id = "mask", codec.mask_id
        self.vocab_size, self.max_length = net.shape.vocab, net.shape.max_length
        self.device = net.embed.weight.device
        self.attention_block = net.shape.block

    def logits(self, ids: torch.Tensor) -> torch.Tensor:
        return self.logits_at(ids, torch.arange(ids.shape[1], device=ids.device))

    @torch.inference_mode()
    def logits_at(self, ids: torch.Tensor, positions: torch.Tensor,
                  steer: Sequence[tuple[str, float]] = ()) -> torch.Tensor:
        """(B, P, V): the decoder over the whole canvas, the concept heads and the LM head on P rows."""
        h = self.net.hidden(ids)[:, positions]                                 # (B, P, D)
        known, unknown = self.resolve(steer)
        B, P, D = h.shape
        return self.net.project(self.net.compose(h.reshape(B * P, D), known, unknown)).view(B, P, -1)

    def forward_many(self, calls: Sequence[Call]) -> list[Any]:
        return [self.logits_at(c.ids, c.positions, c.steer) if isinstance(c, ForwardCall) and not c.cached
                else self.run_alone(c) for c in calls]

    def resolve(self, steer: Sequence[tuple[str, float]]) -> tuple[list, list]:
        if not steer:
            return [], []
        if self.names is None:
            raise ValueError(f"steer: {self.label} has no {LABELS}: its concepts have no names")
        return self.names.resolve(steer)

    def concepts(self) -> ConceptNames | None:
        return self.names

    @torch.inference_mode()
    def attributions(self, ids: torch.Tensor, position: int, token: int,
                     steer: tuple[tuple[str, float], ...] = ()) -> tuple[tuple[str, float], ...]:
        """The known concepts that pushed `token` up most at `position`: each concept's weight in the
        known features (its top-k; under a known steer the steered top-k with the set weights) times
        its embedding's alignment with the token's LM-head row, and last "unknown + residual": what
        the rest of the features gave the token (the logit less the known concepts' sum)."""
        h = self.net.hidden(ids[None].to(self.device))[0, position][None]     # (1, D)
        known, unknown = self.resolve(steer)
        c = self.net.concepts
        _, top, weights = top_features(self.net.known, h, c.known_topk if known else c.known_features)
        weight = dict(zip(top[0].tolist(), weights[0].tolist()))
        weight |= dict(known)
        ids_t = torch.tensor(list(weight), device=self.device)
        row = (self.net.embed.weight if self.net.head is None else self.net.head.weight)[token].float()
        aligned = self.net.known.embeddings(ids_t).float() @ row                # (K,)
        each = torch.tensor(list(weight.values()), device=self.device) * aligned
        composed = self.net.compose(h, known, unknown)[0].float()
        rest = float(composed @ row) - float(each.sum())
        names = self.names or ConceptNames({})
        ranked = sorted(zip(ids_t.tolist(), each.tolist()), key=lambda p: -p[1])[:5]
        return (*((names.name(i), v) for i, v in ranked if v > 0), ("unknown + residual", rest))


def load(folder: Path, config: dict, device: torch.device, dtype: torch.dtype | None) -> SteerlingLM:
    """A Steerling folder (config.json, *.safetensors, tokenizer.json, concept_labels.csv)."""
    from transformers import PreTrainedTokenizerFast

    shape, concepts = shapes(config)
    if config.get("mask_token_id") is None:
        raise refuse("mask_token_id", None, "a Steerling folder names its <|mask|> id in config.json")
    if not (folder / "tokenizer.json").is_file():  # before any weight is read
        raise ModelNotFound(f"{folder}: Steerling's tokenizer is tiktoken's cl100k_base with 4 specials, which "
                            "Sharpen reads as a tokenizer.json; write one into the folder (docs/MODEL.md, Steerling)")
    # tokenizer.json directly: AutoTokenizer would read config.json's unknown model_type and warn
    tokenizer = PreTrainedTokenizerFast.from_pretrained(str(folder), local_files_only=True)
    state = read_safetensors(folder, device)
    if shape.tie_embeddings:
        state.pop("transformer.lm_head.weight", None)
    stored = next(iter(state.values())).dtype
    # build_net is typed for the Llama-layout nets; it only needs shape.tie_embeddings and make(shape)
    net = cast(SteerlingNet, build_net(cast(Any, shape), state, STEERLING_NAMES.ours, device=device,
                                       dtype=pick_dtype(device, dtype, stored),
                                       make=cast(Any, lambda s: SteerlingNet(s, concepts))))
    codec = TextCodec.from_tokenizer(tokenizer, mask_id=int(config["mask_token_id"]),
                                     vocab_size=shape.vocab)
    labels = folder / LABELS
    names = ConceptNames.from_csv(labels) if labels.is_file() else None
    return SteerlingLM(net, codec, names, label=f"{FAMILY} (local: {folder})")
