"""The DiffusionLM that wraps a Llama-layout net (engine/families/llama_net.py, or the MoE net), and
what every Llama-layout family loader shares: checkpoint names, weights, tokenizer, mask id."""
from __future__ import annotations

import json
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from ..codec import TextCodec
from ..load import pick_dtype
from ..model import Call, DiffusionLM, ModelNotFound
from .compiled import bucketed_rows
from .llama_net import KV, LlamaNet
from .names import NameTable, per_block
from .packing import forward_packed, packs
from .rows import EagerRows, SpanCache
from .score import LlamaFluency
from .shard import shard_net

if TYPE_CHECKING:
    from ..memory import MemoryPlan
    from .llama_net import LlamaShape
    from .moe_net import MoENet, MoEShape

Rename = Callable[[str], "str | None"]  # checkpoint tensor name -> our parameter name (None: drop)


# ---- weights --------------------------------------------------------------------------------

# Hugging Face Llama/Qwen2 (and Dream) tensor names; rotary buffers are dropped.
HF_LLAMA_NAMES = NameTable("Llama/Qwen2-layout", {
    "model.embed_tokens.weight": "embed.weight", "model.norm.weight": "norm.weight",
    "lm_head.weight": "head.weight",
    **per_block("model.layers.{}", {
        "input_layernorm": "attn_norm", "post_attention_layernorm": "mlp_norm",
        "self_attn.q_proj": "attn.q", "self_attn.k_proj": "attn.k", "self_attn.v_proj": "attn.v",
        "self_attn.o_proj": "attn.o", "mlp.gate_proj": "mlp.gate", "mlp.up_proj": "mlp.up",
        "mlp.down_proj": "mlp.down"}),
}, drop_containing=("rotary_emb",))


def build_net(shape: LlamaShape | MoEShape, state: Mapping[str, torch.Tensor], rename: Rename, *,
              device: torch.device, dtype: torch.dtype,
              make: Callable[..., LlamaNet | MoENet] = LlamaNet) -> LlamaNet | MoENet:
    """A `make(shape)` net (LlamaNet unless the family has its own, e.g. the MoE net) whose
    parameters are exactly `state` (renamed); every parameter must be given.

    The module is built on the meta device and the tensors are assigned, so an 8B checkpoint is
    never held twice in memory.
    """
    with torch.device("meta"):
        net = make(shape)
    mapped = {}
    for name, tensor in state.items():
        ours = rename(name)
        if ours is not None:
            mapped[ours] = tensor.to(device=device, dtype=dtype)
    if shape.tie_embeddings:
        mapped.pop("head.weight", None)
    expected = dict(net.named_parameters())
    missing = sorted(set(expected) - set(mapped))
    unexpected = sorted(set(mapped) - set(expected))
    if missing or unexpected:
        raise ValueError(f"checkpoint does not fit the model: missing {missing[:6]}"
                         f"{'...' if len(missing) > 6 else ''}, unexpected {unexpected[:6]}")
    for name, param in expected.items():
        if tuple(mapped[name].shape) != tuple(param.shape):
            raise ValueError(f"{name}: checkpoint shape {tuple(mapped[name].shape)} != "
                             f"expected {tuple(param.shape)}")
    net.load_state_dict(mapped, assign=True)
    return net.eval().requires_grad_(False)


def read_safetensors(folder: Path, device: torch.device, dtype: torch.dtype | None = None
                     ) -> dict[str, torch.Tensor]:
    """All tensors of a folder's model.safetensors, or of the shards its index json lists."""
    from safetensors.torch import load_file

    index = folder / "model.safetensors.index.json"
    if index.is_file():
        files = sorted(set(json.loads(index.read_text())["weight_map"].values()))
    elif (folder / "model.safetensors").is_file():
        files = ["model.safetensors"]
    else:
        files = sorted(p.name for p in folder.glob("*.safetensors"))
    if not files:
        raise ModelNotFound(f"{folder} has no *.safetensors weights (PyTorch .bin files are not "
                            "read: they can run code when loaded).")
    state: dict[str, torch.Tensor] = {}
    for name in files:
        for key, t in load_file(str(folder / name), device=str(device)).items():
            state[key] = t if dtype is None else t.to(dtype)
    return state


def load_tokenizer(folder: Path):
    """The folder's tokenizer, offline and without running code shipped in the folder."""
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    try:
        # trust_remote_code=False said outright: else transformers asks on stdin for custom classes.
        return AutoTokenizer.from_pretrained(str(folder), local_files_only=True, trust_remote_code=False)
    except Exception as err:  # a custom tokenizer class (Dream's): read tokenizer.json instead
        if not (folder / "tokenizer.json").is_file():
            raise ModelNotFound(f"{folder}: cannot load its tokenizer ({err}) and it has no "
                                "tokenizer.json to fall back on.") from err
        return PreTrainedTokenizerFast.from_pretrained(str(folder), local_files_only=True)


def token_id(tokenizer, token: str) -> int | None:
    """The id of `token` if the vocabulary holds it as one token, else None."""
    tid = tokenizer.convert_tokens_to_ids(token)
    if tid is None or tokenizer.convert_ids_to_tokens(int(tid)) != token:
        return None
    return int(tid)


# ---- the DiffusionLM ------------------------------------------------------------------------

class LlamaDiffusionLM(DiffusionLM):
    """A LlamaNet behind the DiffusionLM interface.

    shifted: the net was trained autoregressively (Dream, the bundled SmolLM2): raw[:, i-1] scores
    token i. `logits` re-aligns so logits[:, i] scores token i. Position 0 has no predecessor:
    with `start_id` set, that token is put in front of the canvas (one extra position) so that
    every canvas position gets a real prediction; without it, position 0 reuses raw[:, 0], as
    Dream's own sampler does (its position 0 is a prompt token that is never masked).
    """

    def __init__(self, net: LlamaNet | MoENet, codec: TextCodec, *, label: str, shifted: bool,
                 start_id: int | None = None, max_length: int | None = None):
        self.net = net
        self.shape = net.shape
        self.codec = codec
        self.noise = "mask"
        self.mask_id = codec.mask_id
        if self.mask_id is None:
            raise ValueError(f"{label}: no mask token id")
        self.vocab_size = net.shape.vocab
        self.device = net.embed.weight.device
        self.label = label
        self.shifted = shifted
        self.start_id = start_id if shifted else None
        extra = 1 if self.start_id is not None else 0
        self.max_length = (max_length or net.shape.max_length) - extra
        self.runner: EagerRows = EagerRows(net)

    supports_cache = True

    def fluency(self) -> LlamaFluency | None:
        """A shifted-head net read causally, as it is (an autoregressive net's own view)."""
        return LlamaFluency(self) if self.shifted else None

    def compile(self, mode: str, backend: str = "inductor") -> None:
        """Forwards in static length buckets through torch.compile (engine/families/compiled.py)."""
        self.runner = bucketed_rows(self.net, self.label, mode, backend)

    def shard(self, rank: int, size: int, device: torch.device) -> None:
        """This rank's slice of every attention and feed-forward weight and its share of the
        experts (engine/families/shard.py), on `device`."""
        if type(self.runner) is not EagerRows:
            raise ValueError("--compile does not combine with --tp yet: the sharded forwards run eagerly")
        shard_net(self.net, rank, size)
        self.memory = rank_memory(self.net, size, device)
        self.net.to(device)
        self.device = device

    def net_input(self, ids: torch.Tensor) -> torch.Tensor:
        """The canvas as the net reads it: with the start token in front where there is one."""
        if self.start_id is None:
            return ids
        start = torch.full((ids.shape[0], 1), self.start_id, dtype=ids.dtype, device=ids.device)
        return torch.cat([start, ids], dim=1)

    def query_rows(self, positions: torch.Tensor) -> torch.Tensor:
        """(P,) canvas positions -> (P,) net rows whose raw logits score them (see class doc)."""
        if self.start_id is not None:
            return positions          # net row i holds canvas token i-1 and predicts token i
        return (positions - 1).clamp(min=0) if self.shifted else positions

    @torch.inference_mode()
    def logits(self, ids: torch.Tensor, *, causal: bool = False) -> torch.Tensor:
        """(B, L, V); causal=True only to compare with autoregressive references (eval, tests)."""
        L = ids.shape[1]
        return self.logits_at(ids, torch.arange(L, device=ids.device), causal=causal)

    @torch.inference_mode()
    def logits_at(self, ids: torch.Tensor, positions: torch.Tensor, *, causal: bool = False) -> torch.Tensor:
        """(B, P, V) logits of `positions` only: the 49k-row head runs on P rows, not L."""
        x, rows = self.net_input(ids), self.query_rows(positions)
        if causal:  # the scorer's and the tests' view: never compiled
            return self.net.project(self.net.hidden(x, causal=True)[:, rows])
        return self.runner(x, None, rows)[0]

    @torch.inference_mode()
    def cached_logits(self, ids: torch.Tensor, positions: torch.Tensor, cache: SpanCache | None,
                      freeze: bool = False) -> tuple[torch.Tensor, SpanCache]:
        """DualCache (Fast-dLLM): a full forward keeps every block's keys/values of the context;
        later calls run only the active rows (the span's slots plus the rows that score them) and
        attend to that frozen context. Keys are cached after RoPE, so positions stay exact. Only
        `positions`' logits are read out. `freeze` (kept by the cache): a later call runs only the
        rows of the slots it scores and of slots whose id moved since their last forward; the
        others join the context (dKV-Cache's delayed caching, Ma et al. 2025)."""
        x = self.net_input(ids)                                                  # (B, Ln)
        if cache is None:
            out, kvs = self.runner(x, None, self.query_rows(positions), want_kv=True)
            return out, self.span_cache(x, positions, kvs, freeze)
        cache, query = self.regrouped(x, positions, cache)
        ran = x[:, cache.active]                                                 # (B, A)
        out, kvs = self.runner(ran, cache.active, query, cache.context, want_kv=cache.freeze)
        return out, cache.computed(ran, kvs)

    def span_rows(self, positions: torch.Tensor) -> torch.Tensor:
        """(A,) sorted net rows of the slots at `positions` and of the rows that score them."""
        slots = positions + (1 if self.start_id is not None else 0)
        return torch.cat([slots, self.query_rows(positions)]).unique()

    def span_cache(self, x: torch.Tensor, positions: torch.Tensor, kvs: list[KV], freeze: bool = False) -> SpanCache:
        """The cache of a full forward over net input `x` (B, Ln) whose blocks' keys/values were `kvs`."""
        active = self.span_rows(positions)                                       # (A,)
        keep = torch.ones(x.shape[1], dtype=torch.bool, device=positions.device)
        keep[active] = False
        kv = tuple((k[:, :, active], v[:, :, active]) for k, v in kvs) if freeze else ()
        return SpanCache(self.runner.context(kvs, keep), keep.nonzero().squeeze(-1), active, x.clone(), freeze, kv)

    def regrouped(self, x: torch.Tensor, positions: torch.Tensor, cache: SpanCache) -> tuple[SpanCache, torch.Tensor]:
        """The cache a cached step over `x` (B, Ln) scoring `positions` (P,) runs with, and the (P,)
        index into its active rows of the row that scores each slot."""
        cache = cache.regroup(x, self.span_rows(positions), self.runner)
        return cache, torch.searchsorted(cache.active, self.query_rows(positions))

    def forward_many(self, calls: Sequence[Call]) -> list[Any]:
        """Several callers' forwards as one packed pass (engine/families/packing.py); one alone as is."""
        # Packing runs the dense net's layers itself: compiled runners (padded shapes) and the MoE
        # nets take one forward per call instead.
        packable = isinstance(self.net, LlamaNet) and type(self.runner) is EagerRows
        if packable and len(calls) > 1 and packs(self, calls):
            return forward_packed(self, calls)
        return super().forward_many(calls)


def rank_memory(net: LlamaNet | MoENet, ranks: int, device: torch.device) -> MemoryPlan:
    """The memory estimate of one rank of a sharded net: its own parameters, a `ranks`th of the
    keys/values and feed-forward activations; refused (ModelTooLarge) where it does not fit."""
    from .. import memory

    whole = memory.ModelSize.of_net(net)  # parameters as held; widths of the whole model
    size = replace(whole, kv_width=whole.kv_width // ranks, ffn=whole.ffn // ranks)
    return memory.check(memory.plan(size, whole.stored, device))


def from_checkpoint(folder: Path, config: dict, shape: LlamaShape | MoEShape, state: Mapping[str, torch.Tensor],
                    rename: Rename, *, device: torch.device, dtype: torch.dtype | None, family: str,
                    mask_names: Iterable[str], mask_fallback: int | None,
                    shifted: bool, make: Callable[..., LlamaNet | MoENet] = LlamaNet) -> LlamaDiffusionLM:
    """What every Llama-layout family loader ends with: the weights in a `make(shape)` net (the
    caller's dtype, else `pick_dtype`), the folder's tokenizer, the mask id (`mask_id_from`), the codec."""
    stored = next(iter(state.values())).dtype
    net = build_net(shape, state, rename, device=device, dtype=pick_dtype(device, dtype, stored), make=make)
    tokenizer = load_tokenizer(folder)
    mask_id = mask_id_from(config, tokenizer, mask_names, mask_fallback, family)
    codec = TextCodec.from_tokenizer(tokenizer, mask_id=mask_id, vocab_size=shape.vocab)
    return LlamaDiffusionLM(net, codec, label=f"{family} (local: {folder})", shifted=shifted)


def mask_id_from(config: dict, tokenizer, names: Iterable[str], fallback: int | None,
                 family: str) -> int:
    """The mask id: config's mask_token_id, else the tokenizer's mask token, else a token with one
    of `names`, else the family's documented id (with a warning saying so)."""
    if config.get("mask_token_id") is not None:
        return int(config["mask_token_id"])
    if getattr(tokenizer, "mask_token_id", None) is not None:
        return int(tokenizer.mask_token_id)
    for name in names:
        tid = token_id(tokenizer, name)
        if tid is not None:
            return tid
    if fallback is None:
        raise ValueError(f"{family}: no mask_token_id in config.json and no mask token in the "
                         "tokenizer")
    warnings.warn(f"{family}: no mask_token_id in config.json or tokenizer; using the documented "
                  f"id {fallback}", stacklevel=4)
    return fallback
