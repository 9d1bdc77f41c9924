"""LLaDA-MoE and LLaDA 2.x: tiny folders in each family's own config keys and tensor names, loaded
through load_model and checked against a naive reference written here (per token, per expert)."""
import json
import math

import pytest
import torch

from engine import SamplerSettings, Span, infill_text, load_model
from engine.families.moe import Routing, SparseMoE
from engine.model import UnsupportedModel
from tests.tiny import byte_bpe_tokenizer

IDS = torch.tensor([[5, 77, 130, 9, 250, 31, 64, 2, 199, 42, 18, 300, 7, 88, 123, 61, 40, 3, 222, 19]])
DOC = "def add(a, b):\n    return a + b\n\nprint(add(1, 2))\n"
G = torch.Generator().manual_seed(0)


def rand(*shape, scale=0.3, offset=0.0):
    return (torch.randn(*shape, generator=G) * scale + offset).contiguous()


def swiglu_tensors(prefix: str, width: int, ffn: int) -> dict:
    return {f"{prefix}.gate_proj.weight": rand(ffn, width), f"{prefix}.up_proj.weight": rand(ffn, width),
            f"{prefix}.down_proj.weight": rand(width, ffn)}


def moe_tensors(p, width, experts, ffn, *, bias, shared, shared_ffn, bias_scale=0.2) -> dict:
    """Layer `p`'s router (mlp.gate), expert bias, shared expert and routed experts, their names."""
    s = {f"{p}.mlp.gate.weight": rand(experts, width, scale=1.0), bias: rand(experts, scale=bias_scale)}
    s |= swiglu_tensors(shared, width, shared_ffn)
    for e in range(experts):
        s |= swiglu_tensors(f"{p}.mlp.experts.{e}", width, ffn)
    return s


# ---- the naive reference ------------------------------------------------------------------------

def ref_rms(x, w, eps):
    return w * (x / torch.sqrt((x * x).mean(-1, keepdim=True) + eps))


def ref_swiglu(x, s, prefix):
    gate, up = x @ s[f"{prefix}.gate_proj.weight"].T, x @ s[f"{prefix}.up_proj.weight"].T
    return (gate * torch.sigmoid(gate) * up) @ s[f"{prefix}.down_proj.weight"].T


def ref_rope(x, rot, theta):
    """x (L, H, D): rotate pairs (i, i + rot/2) of the first rot dims by position * theta^(-2i/rot)."""
    L, half = x.shape[0], rot // 2
    angle = torch.arange(L)[:, None, None].float() * theta ** (-torch.arange(half).float() * 2 / rot)
    a, b = x[..., :half], x[..., half:rot]
    return torch.cat([a * angle.cos() - b * angle.sin(), b * angle.cos() + a * angle.sin(), x[..., rot:]], -1)


def ref_attention(x, q, k, v, cfg, allowed):
    """x (L, d); q/k/v (L, heads, D) already normed and rotated; allowed (L, L) bool."""
    H, Hkv = q.shape[1], k.shape[1]
    heads = []
    for h in range(H):
        g = h // (H // Hkv)
        scores = q[:, h] @ k[:, g].T / math.sqrt(q.shape[-1])
        heads.append(scores.masked_fill(~allowed, float("-inf")).softmax(-1) @ v[:, g])
    return torch.cat(heads, -1)


def ref_experts_for(token_scores, bias, family, cfg):
    """One token's chosen experts and weights, the way each family's reference routes."""
    E, k = len(token_scores), cfg["num_experts_per_tok"]
    if family == "lladamoe":
        probs = token_scores.softmax(-1).tolist()
        biased = [p + float(b) for p, b in zip(probs, bias)]
        chosen = sorted(range(E), key=lambda e: -biased[e])[:k]
        return chosen, [biased[e] for e in chosen]
    sig = token_scores.sigmoid().tolist()
    biased = [s + float(b) for s, b in zip(sig, bias)]
    size = E // cfg["n_group"]
    group_score = [sum(sorted(biased[g * size:(g + 1) * size])[-2:]) for g in range(cfg["n_group"])]
    kept = sorted(range(cfg["n_group"]), key=lambda g: -group_score[g])[:cfg["topk_group"]]
    eligible = [e for e in range(E) if e // size in kept]
    chosen = sorted(eligible, key=lambda e: -biased[e])[:k]
    total = sum(sig[e] for e in chosen)
    return chosen, [sig[e] / total * cfg["routed_scaling_factor"] for e in chosen]


def ref_moe(x, s, layer, family, cfg):
    """x (L, d) -> (L, d): every token through its own chosen experts, one at a time."""
    p = f"model.layers.{layer}.mlp"
    bias = s.get(f"{p}.gate.expert_bias", s.get(f"{p}.expert_bias", torch.zeros(cfg["num_experts"])))
    rows = []
    for t in range(x.shape[0]):
        chosen, weights = ref_experts_for(x[t] @ s[f"{p}.gate.weight"].T, bias, family, cfg)
        rows.append(sum(w * ref_swiglu(x[t], s, f"{p}.experts.{e}") for e, w in zip(chosen, weights)))
    out = torch.stack(rows)
    shared = f"{p}.shared_experts" if family == "llada2" else f"model.layers.{layer}.shared_expert"
    return out + ref_swiglu(x, s, shared) if f"{shared}.gate_proj.weight" in s else out


def reference_logits(s, cfg, ids, family):
    """(L,) ids -> (L, V): the whole forward from the checkpoint's own tensors and config."""
    H, Hkv, d = cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["hidden_size"]
    D = cfg.get("head_dim") or d // H
    rot, eps, L = int(D * cfg["partial_rotary_factor"]), cfg["rms_norm_eps"], ids.shape[0]
    embed = "model.word_embeddings.weight" if family == "llada2" else "model.embed_tokens.weight"
    x = s[embed][ids]
    block = torch.arange(L) // 32
    allowed = block[None, :] <= block[:, None] if family == "llada2" else torch.ones(L, L, dtype=torch.bool)
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}"
        h = ref_rms(x, s[f"{p}.input_layernorm.weight"], eps)
        if family == "llada2":
            qkv = (h @ s[f"{p}.attention.query_key_value.weight"].T).view(L, H + 2 * Hkv, D)
            q, k, v = qkv[:, :H], qkv[:, H:H + Hkv], qkv[:, H + Hkv:]
            qn, kn, out = "attention.query_layernorm", "attention.key_layernorm", "attention.dense"
        else:
            q, k, v = (h @ s[f"{p}.self_attn.{n}_proj.weight"].T for n in "qkv")
            q, k, v = q.view(L, H, D), k.view(L, Hkv, D), v.view(L, Hkv, D)
            qn, kn, out = "self_attn.q_norm", "self_attn.k_norm", "self_attn.o_proj"
        q = ref_rope(ref_rms(q, s[f"{p}.{qn}.weight"], eps), rot, cfg["rope_theta"])
        k = ref_rope(ref_rms(k, s[f"{p}.{kn}.weight"], eps), rot, cfg["rope_theta"])
        x = x + ref_attention(h, q, k, v, cfg, allowed) @ s[f"{p}.{out}.weight"].T
        h = ref_rms(x, s[f"{p}.post_attention_layernorm.weight"], eps)
        dense = f"{p}.mlp.gate_proj.weight" in s
        x = x + (ref_swiglu(h, s, f"{p}.mlp") if dense else ref_moe(h, s, i, family, cfg))
    return ref_rms(x, s["model.norm.weight"], eps) @ s["lm_head.weight"].T


# ---- tiny folders -------------------------------------------------------------------------------

def save_folder(folder, config, state, tok):
    from safetensors.torch import save_file

    save_file(state, str(folder / "model.safetensors"))
    (folder / "config.json").write_text(json.dumps(config))
    tok.save_pretrained(folder)
    return folder


def llada2_folder(folder, **overrides):
    tok = byte_bpe_tokenizer(mask="<|mask|>")
    V, d, H, Hkv, D, E = len(tok), 32, 4, 2, 16, 8
    cfg = {"model_type": "llada2_moe", "architectures": ["LLaDA2MoeModelLM"], "vocab_size": V,
           "hidden_size": d, "intermediate_size": 48, "num_hidden_layers": 2, "num_attention_heads": H,
           "num_key_value_heads": Hkv, "head_dim": D, "hidden_act": "silu", "use_qkv_bias": False,
           "use_bias": False, "rms_norm_eps": 1e-6, "norm_head": False, "tie_word_embeddings": False,
           "max_position_embeddings": 256, "rope_theta": 600000.0, "rope_scaling": None,
           "use_sliding_window": False, "num_experts": E, "num_shared_experts": 1,
           "num_experts_per_tok": 2, "n_group": 4, "topk_group": 2, "routed_scaling_factor": 2.5,
           "moe_intermediate_size": 24, "first_k_dense_replace": 1, "partial_rotary_factor": 0.5,
           "rotary_dim": 8, "score_function": "sigmoid", "moe_router_enable_expert_bias": True,
           "norm_topk_prob": True, "pad_token_id": tok.pad_token_id} | overrides
    s = {"model.word_embeddings.weight": rand(V, d), "model.norm.weight": rand(d, offset=1.0),
         "lm_head.weight": rand(V, d)}
    for i in range(2):
        p = f"model.layers.{i}"
        s |= {f"{p}.input_layernorm.weight": rand(d, offset=1.0), f"{p}.post_attention_layernorm.weight":
              rand(d, offset=1.0), f"{p}.attention.query_key_value.weight": rand((H + 2 * Hkv) * D, d),
              f"{p}.attention.query_layernorm.weight": rand(D, offset=1.0),
              f"{p}.attention.key_layernorm.weight": rand(D, offset=1.0),
              f"{p}.attention.dense.weight": rand(d, H * D)}
        s |= swiglu_tensors(f"{p}.mlp", d, 48) if i == 0 else moe_tensors(
            p, d, E, 24, bias=f"{p}.mlp.gate.expert_bias", shared=f"{p}.mlp.shared_experts", shared_ffn=24)
    return save_folder(folder, cfg, s, tok), cfg, s


def llada_moe_folder(folder, **overrides):
    tok = byte_bpe_tokenizer(mask="<|mask|>")
    V, d, H, E = len(tok), 32, 4, 8
    # model_type "llada", as LLaDA-MoE-7B-A1B ships it
    cfg = {"model_type": "llada", "architectures": ["LLaDAMoEModelLM"], "vocab_size": V, "hidden_size": d,
           "dense_intermediate_size": 40, "expert_intermediate_size": 24, "shared_expert_intermediate_size": 16,
           "num_hidden_layers": 2, "num_attention_heads": H, "num_key_value_heads": H, "hidden_act": "silu",
           "max_position_embeddings": 256, "rms_norm_eps": 1e-5, "tie_word_embeddings": False,
           "rope_theta": 50000.0, "partial_rotary_factor": 1.0, "rope_scaling": None, "attention_bias": False,
           "clip_qkv": None, "num_experts_per_tok": 2, "num_experts": E, "norm_topk_prob": False,
           "qk_layernorm": True, "moe_layer_freq": [0, 1], "moe_router_enable_expert_bias": True,
           "moe_router_score_function": "softmax", "mask_token_id": tok.mask_token_id} | overrides
    s = {"model.embed_tokens.weight": rand(V, d), "model.norm.weight": rand(d, offset=1.0),
         "lm_head.weight": rand(V, d)}
    for i in range(2):
        p = f"model.layers.{i}"
        s |= {f"{p}.input_layernorm.weight": rand(d, offset=1.0),
              f"{p}.post_attention_layernorm.weight": rand(d, offset=1.0),
              f"{p}.self_attn.q_norm.weight": rand(d // H, offset=1.0),
              f"{p}.self_attn.k_norm.weight": rand(d // H, offset=1.0)}
        s |= {f"{p}.self_attn.{n}_proj.weight": rand(d, d) for n in "qkvo"}
        s |= swiglu_tensors(f"{p}.mlp", d, 40) if i == 0 else moe_tensors(
            p, d, E, 24, bias=f"{p}.mlp.expert_bias", shared=f"{p}.shared_expert", shared_ffn=16, bias_scale=0.05)
    return save_folder(folder, cfg, s, tok), cfg, s


FOLDERS = {"llada2": llada2_folder, "lladamoe": llada_moe_folder}


@pytest.fixture(scope="module", params=sorted(FOLDERS))
def family(request, tmp_path_factory):
    folder, cfg, state = FOLDERS[request.param](tmp_path_factory.mktemp(request.param))
    return request.param, load_model(folder, device="cpu"), cfg, state


# ---- tests --------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["softmax+bias-in-weights", "sigmoid+groups"])
def test_moe_block_matches_a_per_token_per_expert_reference(kind):
    width, E = 16, 8
    if kind == "sigmoid+groups":
        routing = Routing(experts=E, top_k=3, score="sigmoid", bias="select", groups=4, top_groups=2,
                          renormalize=True, scale=2.5)
        cfg = {"num_experts_per_tok": 3, "n_group": 4, "topk_group": 2, "routed_scaling_factor": 2.5}
        family, shared = "llada2", "model.layers.0.mlp.shared_experts"
    else:
        routing = Routing(experts=E, top_k=2, score="softmax", bias="weights")
        cfg, family, shared = {"num_experts_per_tok": 2}, "lladamoe", "model.layers.0.shared_expert"
    cfg["num_experts"] = E
    block = SparseMoE(width, 12, routing, shared_ffn=10)
    s = {"model.layers.0.mlp.gate.weight": rand(E, width, scale=1.0),
         "model.layers.0.mlp.gate.expert_bias": rand(E, scale=0.2)} | swiglu_tensors(shared, width, 10)
    with torch.no_grad():
        block.router.weight.copy_(s["model.layers.0.mlp.gate.weight"])
        block.router.bias.copy_(s["model.layers.0.mlp.gate.expert_bias"])
        for e, expert in enumerate(block.experts):
            s |= swiglu_tensors(f"model.layers.0.mlp.experts.{e}", width, 12)
            for ours, theirs in (("gate", "gate_proj"), ("up", "up_proj"), ("down", "down_proj")):
                getattr(expert, ours).weight.copy_(s[f"model.layers.0.mlp.experts.{e}.{theirs}.weight"])
        for ours, theirs in (("gate", "gate_proj"), ("up", "up_proj"), ("down", "down_proj")):
            getattr(block.shared, ours).weight.copy_(s[f"{shared}.{theirs}.weight"])
        x = rand(3, 7, width, scale=1.0)
        want = ref_moe(x.view(-1, width), s, 0, family, cfg).view_as(x)
        torch.testing.assert_close(block(x), want, atol=1e-5, rtol=1e-5)


def test_folder_loads_as_its_family(family):
    name, model, cfg, _ = family
    assert model.label.startswith({"llada2": "LLaDA2 (local: ", "lladamoe": "LLaDA-MoE (local: "}[name])
    assert model.noise == "mask" and model.mask_id == model.codec.tokenizer.mask_token_id and not model.shifted
    assert model.vocab_size == cfg["vocab_size"] and model.max_length == 256
    assert model.supports_cache == (name == "lladamoe")  # block-causal LLaDA 2 runs without DualCache


def test_logits_match_the_naive_reference(family):
    name, model, cfg, state = family
    ids = torch.cat([IDS, IDS.flip(-1)], dim=1)  # 40 tokens: two LLaDA 2 attention blocks
    want = reference_logits(state, cfg, ids[0], name)
    torch.testing.assert_close(model.logits(ids)[0], want, atol=1e-4, rtol=1e-4)


def test_llada2_attention_is_block_causal_and_llada_moe_bidirectional(family):
    name, model, _, _ = family
    ids = torch.cat([IDS, IDS.flip(-1)], dim=1)                            # blocks [0, 32), [32, 40)
    changed = ids.clone()
    changed[0, 35] = ids[0, 3]
    before, after = model.logits(ids)[0], model.logits(changed)[0]
    first_block_moved = not torch.allclose(before[:32], after[:32])
    assert first_block_moved == (name == "lladamoe")
    assert not torch.allclose(before[32:35], after[32:35])  # inside its block it is seen either way


def test_infill_keeps_outside_text_and_is_reproducible(family):
    _, model, _, _ = family
    settings = SamplerSettings(steps=4, temperature=1.0, seed=5)
    out = infill_text(model, DOC, [Span(4, 7, length=5)], settings)
    assert out.startswith(DOC[:4]) and out.endswith(DOC[7:]) and "\u2591" not in out
    assert out == infill_text(model, DOC, [Span(4, 7, length=5)], settings)


@pytest.mark.parametrize("maker, key, value", [
    (llada2_folder, "score_function", "softmax"),
    (llada2_folder, "rope_scaling", {"rope_type": "yarn", "factor": 4.0}),
    (llada2_folder, "num_nextn_predict_layers", 1),
    (llada2_folder, "rotary_dim", 16),
    (llada_moe_folder, "clip_qkv", 8.0),
    (llada_moe_folder, "hidden_act", "gelu"),
    (llada_moe_folder, "qk_layernorm", False),
])
def test_unsupported_config_is_refused_naming_key_and_value(tmp_path, maker, key, value):
    folder, _, _ = maker(tmp_path, **{key: value})
    with pytest.raises(UnsupportedModel, match=f"{key}={value!r}".replace("(", r"\(").replace("{", r"\{")
                       .replace("[", r"\[")):
        load_model(folder, device="cpu")


def test_span_cache_gives_the_full_forward_logits_and_llada2_runs_in_full(family):
    """LLaDA-MoE: over a cache of the same canvas, a slots-only forward (MoE and all) equals the
    full one. LLaDA 2 (block-causal) has no cache: cache=dual runs the whole canvas."""
    from engine.commit import Layout
    from engine.context import DualCache, make_context

    name, model, _, _ = family
    layout = Layout.of(((6, 11),), None, torch.device("cpu"))
    dual = isinstance(make_context(model, layout, SamplerSettings(cache="dual")), DualCache)
    assert dual == (name == "lladamoe")
    if not dual:
        return
    ids = torch.cat([IDS, IDS.flip(-1)], dim=1)
    slots = torch.arange(6, 11)
    fresh, cache = model.cached_logits(ids, slots, None)
    full = model.logits_at(ids, slots)
    torch.testing.assert_close(fresh, full, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(model.cached_logits(ids, slots, cache)[0], full, atol=1e-4, rtol=1e-4)


# config.json of inclusionAI/LLaDA2.0-mini (dFactory's copy, model_type as released) and the
# LLaDA-MoE-7B-A1B keys that fix its size
LLADA2_MINI = {
    "model_type": "llada2_moe", "num_hidden_layers": 20, "hidden_size": 2048, "intermediate_size": 5120,
    "first_k_dense_replace": 1, "hidden_act": "silu", "max_position_embeddings": 16384,
    "moe_intermediate_size": 512, "norm_topk_prob": True, "num_experts_per_tok": 8, "norm_head": False,
    "num_attention_heads": 16, "num_experts": 256, "num_key_value_heads": 4, "rope_theta": 600000,
    "rope_scaling": None, "tie_word_embeddings": False, "use_bias": False, "rms_norm_eps": 1e-06,
    "head_dim": 128, "num_shared_experts": 1, "use_qkv_bias": False, "vocab_size": 157184, "rotary_dim": 64,
    "moe_router_enable_expert_bias": True, "routed_scaling_factor": 2.5, "n_group": 8, "topk_group": 4,
    "score_function": "sigmoid", "partial_rotary_factor": 0.5, "use_sliding_window": False}
LLADA_MOE_7B = {
    "model_type": "llada", "hidden_size": 2048, "num_hidden_layers": 16, "num_attention_heads": 16,
    "num_key_value_heads": 16, "num_experts": 64, "num_experts_per_tok": 8, "expert_intermediate_size": 1024,
    "dense_intermediate_size": 8192, "moe_layer_freq": [1] * 16, "rope_theta": 50000, "qk_layernorm": True,
    "max_position_embeddings": 8192, "hidden_act": "silu", "vocab_size": 157184, "partial_rotary_factor": 1.0}


@pytest.mark.parametrize("config, module, billions",
                         [(LLADA2_MINI, "llada2", 16.26), (LLADA_MOE_7B, "llada_moe", 7.36)])
def test_released_configs_build_nets_of_the_released_size(config, module, billions):
    from engine.families.llada2 import llada2_shape
    from engine.families.llada_moe import llada_moe_shape
    from engine.families.moe_net import MoENet
    from engine.load import family_loader

    assert family_loader(config).__module__ == f"engine.families.{module}"
    shape = (llada2_shape if module == "llada2" else llada_moe_shape)(config)
    with torch.device("meta"):  # no memory: only the parameter shapes
        net = MoENet(shape)
    assert sum(p.numel() for p in net.parameters()) / 1e9 == pytest.approx(billions, abs=0.01)


def test_compile_refuses_the_moe_nets_by_name(family):
    """Bucketed compilation pads with a key mask the MoE nets do not take: refused, not mis-run."""
    from engine.families.compiled import compile_model

    _, model, _, _ = family
    with pytest.raises(ValueError, match="mixture of experts"):
        compile_model(model)


def test_forward_many_answers_each_call_as_alone(family):
    """The scheduler's batched entry point on an MoE net (not packed: one forward per call)."""
    from engine.model import ForwardCall

    _, model, _, _ = family
    g = torch.Generator().manual_seed(3)
    ids = [torch.randint(0, 200, (1, n), generator=g) for n in (40, 24)]
    pos = [torch.arange(5, 12), torch.arange(2, 6)]
    got = model.forward_many([ForwardCall(ids[0], pos[0]), ForwardCall(ids[1], pos[1])])
    for out, i, p in zip(got, ids, pos):
        torch.testing.assert_close(out, model.logits_at(i, p))
