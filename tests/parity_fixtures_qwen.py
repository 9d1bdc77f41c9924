"""Regenerate the Qwen conversions' parity fixtures (tests/fixtures/parity/{a2d_qwen3,a2d_qwen2,
a2d_qwen3_bd3lm,sdar,open_dcoder}.*) from their reference code, on tests/parity_qwen.py's checkpoints.

    .venv/bin/python -m tests.parity_fixtures_qwen --dllm DIR --sdar DIR --open-dllm DIR

Each DIR is a copy of the repository SOURCES names, at its commit, with its own paths (e.g.
`git archive COMMIT dllm/core dllm/pipelines/a2d | tar -x -C DIR`); nothing of it is committed
here. Any subset of the three flags may be given. What runs, per family:
  a2d_qwen3, a2d_qwen2  dllm's A2DQwen{3,2}LMHeadModel (bidirectional): logits; its MDLMSampler.sample
                        at temperature 0, low_confidence, one token per step, whole span and blocks.
  a2d_qwen3_bd3lm       the same model under the block mask and positions dllm's BD3LM sampler builds
                        (dllm/core/samplers/bd3lm.py _prepare_for_sampling, block_size 32): logits; its
                        BD3LMSampler.sample (prefix cache, one block) on a one-block prompt.
  sdar                  SDARForCausalLM (JetAstra/SDAR's copy of the HF repo files) under the block
                        mask SDAR's generate.py builds (block_size 4): logits. Its generate draws with
                        torch.multinomial at every temperature, so there is no exact sampler run.
  open_dcoder           Open-dLLM's veomni modeling_qwen2 imports veomni's distributed package and
                        does not run here; its forward is transformers' own Qwen2ForCausalLM with no
                        causal mask (is_causal False, as Open-dLLM's sampler calls it), run here with
                        an all-True 4-D mask: logits; Open-dLLM's own _mdm_sample (generation_utils.py)
                        at temperature 0, alg entropy and maskgit_plus, on that model.
Shims (applied at run time; the reference files are not edited):
  2. SDAR: as tests/parity_fixtures.py, transformers 4's "default" RoPE init, registered only
     while SDAR's model is built (transformers 5's own Qwen models would look it up too).
  6. SDAR's modeling file imports flash_attn (rms_norm_fn), einops (rearrange), triton (through
     fused_linear_diffusion_cross_entropy, training only) and transformers 4 names (LossKwargs,
     SlidingWindowCache, StaticCache): stand-ins; rms_norm_fn is the float32 RMSNorm its own
     commented-out code has, rearrange does the two patterns it uses, the loss is None (no labels).
  7. SDARConfig(**config.json) and A2D configs are built from keyword arguments; use_cache False.
  8. dllm's A2D forward (written for transformers 4.5x) reads decoder_layer.attention_type, which
     transformers 5 keeps in config.layer_types: each layer given attention_type from there.
"""
from __future__ import annotations

import argparse
import importlib.machinery
import importlib.util
import json
import sys
import tempfile
import types
from pathlib import Path
from typing import TypedDict

import torch
import transformers

from tests.parity import TinyFamily, fixture_paths, write_tiny
from tests.parity_fixtures import (
    LOGITS_TOLERANCE,
    PROMPT,
    SEED,
    SPAN,
    Recorder,
    apply_library_shims,
    check_no_improbable,
    commits,
    file_record,
    logits_inputs,
    sampler_record,
)
from tests.parity_qwen import BLOCKS, FAMILIES

ROOT = Path(__file__).resolve().parent.parent
DLLM = {"repo": "ZHZisZZ/dllm", "commit": "ca176752fbceec49c6b4777a2c18ae88e4eb10ed"}
SDAR = {"repo": "JetAstra/SDAR", "commit": "cdb2e049353137d3edd7da998a29508b7b83db88",
        "upstream": "huggingface.co/JetLM/SDAR-4B-Chat (the 1.7B/8B repos ship the same modeling_sdar.py)"}
OPEN_DLLM = {"repo": "pengzhangzhi/Open-dLLM", "commit": "8b38787794e7e13e74ab6f5d2ec9240595a1a777",
             "upstream": "huggingface.co/fredzzp/open-dcoder-0.5B"}
SDAR_DIR = "training/model/SDAR-4B-Chat"
DLLM_SAMPLER = ["dllm/core/samplers/base.py", "dllm/core/samplers/utils.py", "dllm/core/samplers/mdlm.py",
                "dllm/core/schedulers/alpha.py"]
SOURCES = {  # family -> the checkout flag it needs, and the files that run
    "a2d_qwen3": ("dllm", {p: dict(DLLM, path=p) for p in
                           ["dllm/pipelines/a2d/models/qwen3/modeling_qwen3.py", *DLLM_SAMPLER]}),
    "a2d_qwen2": ("dllm", {p: dict(DLLM, path=p) for p in
                           ["dllm/pipelines/a2d/models/qwen2/modeling_qwen2.py", *DLLM_SAMPLER]}),
    "a2d_qwen3_bd3lm": ("dllm", {p: dict(DLLM, path=p) for p in
                                 ["dllm/pipelines/a2d/models/qwen3/modeling_qwen3.py", "dllm/core/samplers/bd3lm.py",
                                  *DLLM_SAMPLER[:2]]}),
    "sdar": ("sdar", {p: dict(SDAR, path=p) for p in
                      [f"{SDAR_DIR}/modeling_sdar.py", f"{SDAR_DIR}/configuration_sdar.py", "generate.py"]}),
    "open_dcoder": ("open_dllm", {p: dict(OPEN_DLLM, path=p) for p in
                                  ["veomni/models/transformers/qwen2/generation_utils.py"]}),
}
SHIMS = {
    "transformers 4's 'default' RoPE init registered while the model is built (tests/parity_fixtures.py "
    "shim 2)": ("sdar",),
    "flash_attn.ops.triton.layer_norm.rms_norm_fn = float32 RMSNorm (the file's commented-out code); "
    "einops.rearrange for 'b h l d -> b l (h d)' and 'b l h d -> b l (h d)'; fused_linear_diffusion_"
    "cross_entropy (triton, training only) = None; transformers.utils.LossKwargs, cache_utils."
    "SlidingWindowCache / StaticCache defined": ("sdar",),
    "each decoder layer's attention_type set from config.layer_types (transformers 5 keeps it there)": (
        "a2d_qwen3", "a2d_qwen2", "a2d_qwen3_bd3lm"),
    "the forward is transformers' Qwen2ForCausalLM with an all-True 4-D mask (bidirectional), standing "
    "for veomni's modeling_qwen2 (is_causal=False), which needs veomni's distributed package": ("open_dcoder",),
}
LENGTH = {"a2d_qwen3_bd3lm": 40}  # logits inputs' length (else 12): crosses the 32-token blocks


def load_file_module(path: Path, name: str) -> types.ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def stub_module(name: str, **attrs) -> None:
    module = types.ModuleType(name)
    module.__dict__.update(attrs)
    module.__spec__ = importlib.machinery.ModuleSpec(name, None)  # transformers looks packages up by spec
    sys.modules.setdefault(name, module)


def rms_norm_fn(x, weight, bias=None, eps=1e-6, **_):
    """Shim 6: the float32 RMSNorm SDARRMSNorm's commented-out code computes."""
    x32 = x.float()
    return weight * (x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + eps)).to(x.dtype)


def rearrange(x: torch.Tensor, pattern: str) -> torch.Tensor:
    """Shim 6: the two einops patterns modeling_sdar uses."""
    if pattern == "b h l d -> b l (h d)":
        return x.transpose(1, 2).flatten(2)
    if pattern == "b l h d -> b l (h d)":
        return x.flatten(2)
    raise NotImplementedError(pattern)


def sdar_module(checkout: Path) -> types.ModuleType:
    """modeling_sdar, imported with shim 6 in place."""
    for name in ("flash_attn", "flash_attn.ops", "flash_attn.ops.triton"):
        stub_module(name)
    stub_module("flash_attn.ops.triton.layer_norm", rms_norm_fn=rms_norm_fn)
    stub_module("einops", rearrange=rearrange)
    stub_module("fused_linear_diffusion_cross_entropy", FusedLinearDiffusionCrossEntropyLoss=None)
    import transformers.cache_utils as cache_utils
    import transformers.utils as utils
    if not hasattr(utils, "LossKwargs"):
        utils.LossKwargs = TypedDict("LossKwargs", {}, total=False)  # type: ignore[attr-defined]
    for name in ("SlidingWindowCache", "StaticCache"):
        if not hasattr(cache_utils, name):
            setattr(cache_utils, name, type(name, (), {}))
    sys.path.insert(0, str(checkout / SDAR_DIR))  # it imports configuration_sdar as a top-level module
    return load_file_module(checkout / SDAR_DIR / "modeling_sdar.py", "modeling_sdar")


def dllm_package(checkout: Path) -> None:
    """`dllm` and `dllm.core` as bare packages over the checkout, so dllm.core.samplers imports
    without the top-level __init__ files (they import every pipeline and their dependencies)."""
    for name, sub in (("dllm", "dllm"), ("dllm.core", "dllm/core")):
        if name not in sys.modules:
            package = types.ModuleType(name)
            package.__path__ = [str(checkout / sub)]
            sys.modules[name] = package


def reference_model(name: str, checkout: Path, checkpoint: Path):
    """The family's reference model holding the checkpoint's weights (strict loading)."""
    from safetensors.torch import load_file

    config = json.loads((checkpoint / "config.json").read_text())
    if name == "sdar":
        import transformers.modeling_rope_utils as rope_utils

        apply_library_shims()  # shim 2, only while SDAR builds: transformers 5's own models look "default" up too
        modeling = sdar_module(checkout)
        model = modeling.SDARForCausalLM(modeling.SDARConfig(**config))
        del rope_utils.ROPE_INIT_FUNCTIONS["default"]
    elif name == "open_dcoder":
        model = transformers.Qwen2ForCausalLM(transformers.Qwen2Config(**config))
    else:
        qwen = "qwen3" if config["model_type"] == "a2d-qwen3" else "qwen2"
        modeling = load_file_module(checkout / f"dllm/pipelines/a2d/models/{qwen}/modeling_{qwen}.py",
                                    f"a2d_modeling_{qwen}")
        config_cls = getattr(modeling, f"A2D{qwen.capitalize()}Config")
        model = getattr(modeling, f"A2D{qwen.capitalize()}LMHeadModel")(config_cls(**config))
        for layer, kind in zip(model.model.layers, model.config.layer_types):        # shim 8
            layer.attention_type = kind
    model.config.use_cache = False                                                    # shim 7
    model.load_state_dict(load_file(str(checkpoint / "model.safetensors")), strict=True)
    return model.eval()


def forward_kwargs(name: str, checkout: Path, ids: torch.Tensor) -> dict:
    """The attention mask (and positions) each reference's own sampler gives its model."""
    B, L = ids.shape
    if name == "a2d_qwen3_bd3lm":
        bd3lm = load_file_module(checkout / "dllm/core/samplers/bd3lm.py", "dllm_bd3lm_sampler")
        mask, positions = bd3lm._prepare_for_sampling(ids, BLOCKS[name], pad_token_id=-1)  # nothing is padding
        return {"attention_mask": mask, "position_ids": positions}
    if name == "sdar":  # generate.py: tril over blocks, repeat_interleave(block_size) on both axes
        blocks = -(-L // BLOCKS[name])
        allowed = torch.tril(torch.ones(blocks, blocks)).repeat_interleave(BLOCKS[name], 0)
        allowed = allowed.repeat_interleave(BLOCKS[name], 1)[:L, :L]
        return {"attention_mask": allowed[None].bool(), "position_ids": torch.arange(L)[None]}
    if name == "open_dcoder":
        return {"attention_mask": torch.ones(B, 1, L, L, dtype=torch.bool)}
    return {}


def mdlm_runs(model, checkout: Path, family: TinyFamily, prompts: torch.Tensor) -> list[dict]:
    """dllm's MDLMSampler.sample at temperature 0, low_confidence, steps = tokens (one per step):
    the whole span as one block, and blocks of half the span."""
    dllm_package(checkout)
    from dllm.core.samplers.mdlm import MDLMSampler, MDLMSamplerConfig

    ids = family.special_ids()
    tokenizer = types.SimpleNamespace(mask_token_id=ids["mask"], bos_token_id=None, eos_token_id=ids["eos"])
    runs = []
    for prompt in prompts:
        for block in (SPAN, SPAN // 2):
            recorder = Recorder(model)
            args = dict(steps=SPAN, max_new_tokens=SPAN, block_size=block, temperature=0.0,
                        remasking="low_confidence")
            out = MDLMSampler(model=recorder, tokenizer=tokenizer).sample([prompt], MDLMSamplerConfig(**args))
            runs.append(sampler_record("MDLMSampler.sample", args, prompt, recorder.canvases + [out[0]], ids["mask"]))
    return runs


class BlockRecorder:
    """The model dllm's BD3LMSampler calls: the reference model, noting the block each denoising
    forward is shown (the calls with a prefix cache; the prefix's own forward carries none)."""

    def __init__(self, model):
        self.model, self.device, self.blocks = model, model.device, []

    def __call__(self, x, **kwargs):
        if kwargs.get("past_key_values") is not None and not kwargs.get("use_cache"):
            self.blocks.append(x[0].clone())
        return self.model(x, **kwargs)


def bd3lm_runs(model, checkout: Path, family: TinyFamily, words: torch.Tensor) -> list[dict]:
    """dllm's BD3LMSampler.sample at temperature 0, low_confidence, one token per step, on a prompt
    of one whole block (its sampler left-pads a shorter prompt to a block boundary and excludes the
    padding; a whole block needs none, and the generated block starts where Sharpen's block does)."""
    dllm_package(checkout)
    from dllm.core.samplers.bd3lm import BD3LMSampler, BD3LMSamplerConfig

    ids, block = family.special_ids(), BLOCKS[family.name]
    tokenizer = types.SimpleNamespace(mask_token_id=ids["mask"], bos_token_id=None, eos_token_id=ids["eos"],
                                      pad_token_id=ids["eos"])
    prompt = words[:block]
    recorder = BlockRecorder(model)
    args = dict(steps=SPAN, max_new_tokens=SPAN, block_size=block, temperature=0.0, remasking="low_confidence")
    out = BD3LMSampler(model=recorder, tokenizer=tokenizer).sample([prompt], BD3LMSamplerConfig(**args))
    canvases = [torch.cat([prompt, b]) for b in recorder.blocks] + [out[0]]
    return [{"call": "BD3LMSampler.sample", "args": args, "prompt": prompt.tolist(), "span": [block, block + SPAN],
             "steps": commits(canvases, ids["mask"]), "final": out[0].tolist()}]


class BidirectionalQwen2:
    """What Open-dLLM's _mdm_sample calls: the model with is_causal=False, each canvas noted."""

    def __init__(self, model, generation):
        self.model, self.config, self.device = model, model.config, model.device
        self.sample = types.MethodType(generation.MDMGenerationMixin._mdm_sample, self)
        self.canvases: list[torch.Tensor] = []

    def __call__(self, input_ids, attention_mask=None, is_causal=True):
        assert not is_causal and (attention_mask is None or bool(attention_mask.all()))
        self.canvases.append(input_ids[0].clone())
        return self.model(input_ids, **forward_kwargs("open_dcoder", Path(), input_ids))


def open_dcoder_runs(model, checkout: Path, family: TinyFamily, prompts: torch.Tensor) -> list[dict]:
    """Open-dLLM's _mdm_sample at temperature 0, steps = tokens, alg entropy and maskgit_plus, on
    prompt + masks (its diffusion_generate pads with masks so)."""
    generation = load_file_module(checkout / "veomni/models/transformers/qwen2/generation_utils.py",
                                  "open_dllm_generation_utils")
    ids = family.special_ids()
    runs = []
    for prompt in prompts:
        for alg in ("entropy", "maskgit_plus"):
            wrapper = BidirectionalQwen2(model, generation)
            args = dict(steps=SPAN, temperature=0.0, alg=alg, alg_temp=0.0, mask_token_id=ids["mask"],
                        pad_token_id=ids["eos"], eos_token_id=ids["eos"], return_dict_in_generate=False)
            x = torch.cat([prompt, torch.full((SPAN,), ids["mask"])])[None]
            out = wrapper.sample(x.clone(), None, generation.MDMGenerationConfig(**args))
            runs.append(sampler_record("MDMGenerationMixin._mdm_sample", args, prompt,
                                       wrapper.canvases + [out[0]], ids["mask"]))
    return runs


def write_fixture(name: str, checkout: Path) -> None:
    """Run the reference on the family's tiny checkpoint; write its logits and sampler traces."""
    from safetensors.torch import save_file

    family = FAMILIES[name]()
    ids, sources = logits_inputs(family, LENGTH.get(name)), SOURCES[name][1]
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = Path(tmp) / name
        weights = write_tiny(family, checkpoint)
        model = reference_model(name, checkout, checkpoint)
        with torch.no_grad():
            logits = model(ids, **forward_kwargs(name, checkout, ids)).logits
        prompts = ids[[0, 2], :PROMPT]
        runs = (mdlm_runs(model, checkout, family, prompts) if name in ("a2d_qwen3", "a2d_qwen2") else
                bd3lm_runs(model, checkout, family, ids[0]) if name == "a2d_qwen3_bd3lm" else
                open_dcoder_runs(model, checkout, family, prompts) if name == "open_dcoder" else [])
    check_no_improbable(family, runs)
    meta_path, logits_path = fixture_paths(name)
    save_file({"ids": ids.contiguous(), "logits": logits.float().contiguous()}, str(logits_path))
    reference = {"files": file_record(checkout, sources), "shims": [s for s, who in SHIMS.items() if name in who],
                 "transformers": transformers.__version__, "torch": torch.__version__}
    if name == "open_dcoder":
        reference["forward"] = f"transformers {transformers.__version__} Qwen2ForCausalLM, all-True 4-D mask"
    meta = {"family": name, "made_by": "tests/parity_fixtures_qwen.py", "reference": reference,
            "checkpoint": {"built_by": "tests/parity_qwen.py", "seed": SEED, "fingerprint": weights},
            "logits": {"file": logits_path.name, "tolerance": LOGITS_TOLERANCE,
                       "what": "the reference model's raw output logits (B, L, V) on `ids`, float32, under "
                               "the attention mask its own sampler builds"},
            "sampler": runs}
    meta_path.write_text(json.dumps(meta, indent=1) + "\n")
    print(f"wrote {meta_path.relative_to(ROOT)} and {logits_path.name}: {len(runs)} sampler runs")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    for flag in ("dllm", "sdar", "open_dllm"):
        parser.add_argument(f"--{flag.replace('_', '-')}", type=Path, metavar="DIR",
                            help=f"checkout of {dict(dllm=DLLM, sdar=SDAR, open_dllm=OPEN_DLLM)[flag]['repo']}")
    args = parser.parse_args(argv)
    chosen = {name: getattr(args, flag) for name, (flag, _) in SOURCES.items() if getattr(args, flag)}
    if not chosen:
        parser.error("give at least one of --dllm, --sdar, --open-dllm")
    torch.set_num_threads(1)
    for name, checkout in chosen.items():
        missing = [p for p in SOURCES[name][1] if not (checkout / p).is_file()]
        if missing:
            raise SystemExit(f"{checkout}: missing {', '.join(missing)}")
        write_fixture(name, checkout)


if __name__ == "__main__":
    main()
