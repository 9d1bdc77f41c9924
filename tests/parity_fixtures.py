"""Regenerate tests/fixtures/parity/: what the model families' own code computes on tiny checkpoints.

    .venv/bin/python -m tests.parity_fixtures --llada DIR --dream DIR --llada-moe DIR --llada2 DIR

Each folder holds one family's reference files, unedited, as published (never committed here;
copy them from where SOURCES says; any subset of the four flags may be given):
  --llada      modeling_llada.py, configuration_llada.py (remote code of the Hugging Face repo
               GSAI-ML/LLaDA-8B-Instruct) and generate.py (github ML-GSAI/LLaDA)
  --dream      modeling_dream.py, configuration_dream.py, generation_utils.py (remote code of
               Dream-org/Dream-v0-Instruct-7B)
  --llada-moe  modeling_lladamoe.py, configuration_lladamoe.py (inclusionAI/LLaDA-MoE-7B-A1B) and
               LLaDA's generate.py, which drives it
  --llada2     modeling_llada2_moe.py, configuration_llada2_moe.py (inclusionAI/LLaDA2.0-mini)
  --dreamon    Dream's three files (above) and generator.py (github DreamLM/DreamOn eval/generator.py)
`--sources FILE` (JSON: family -> file name -> {repo, path, commit}) says where the copies came
from when they are not SOURCES'. The fixtures record each file's sha256 too: the exact bytes that ran.

The tiny checkpoints are rebuilt from a seed by tests/parity.py (the code the tests use); each
fixture records the weights' fingerprint. Per family the script stores the reference forward's
logits on three inputs (masked positions included; LLaDA 2's under the block-diffusion mask its
generate builds) and every step of the reference sampler at temperature 0: LLaDA's `generate`
(low-confidence remasking, whole span and semi-autoregressive blocks; also on LLaDA-MoE) and
Dream's `diffusion_generate` (alg entropy and maskgit_plus). LLaDA 2's generate samples with
torch.multinomial even at temperature 0, so it has logits only. Steps are read without touching
the samplers: LLaDA's model is wrapped to record each canvas it is called on, Dream's through its
own `generation_tokens_hook_func`.

Shims, applied at run time for transformers 5.23 / torch 2.13 (the reference files are not edited;
SHIMS says which family needs which, each fixture lists its own):
  1. transformers 5 no longer keeps `use_cache` on a config built from keyword arguments, and
     LLaDAModelLM.forward reads it: set to False after building each model.
  2. transformers 5 dropped the "default" entry of ROPE_INIT_FUNCTIONS that the Dream / LLaDA-MoE /
     LLaDA 2 rotary embeddings look up: registered as transformers 4's default
     (inv_freq = theta ** (-2i/d) over the partial_rotary_factor part of a head, scaling 1).
  3. transformers 5 calls GenerationConfig.validate(user_set_attributes=...), which
     DreamGenerationConfig.validate(self, is_init=False) does not accept: replaced by a
     validate that takes any keywords and, like the original, does nothing.
  4. transformers 5 removed transformers.utils.import_utils.is_torch_fx_available, which
     modeling_llada2_moe imports: defined, returning False.
  5. DreamOn's eval/generator.py imports OmegaConf from omegaconf (not installed here) and never
     uses it in the functions run: a stand-in module with OmegaConf = None.
"""
from __future__ import annotations

import argparse
import hashlib
import importlib
import json
import sys
import tempfile
import types
from pathlib import Path

import torch
import transformers

from tests.parity import FAMILIES, SEED, TinyFamily, fingerprint, fixture_paths, tiny_weights, write_tiny

ROOT = Path(__file__).resolve().parent.parent

DLLM, DLLM_FIRST = "ZHZisZZ/dllm", "03270de7d134f87244f1ffc2ff3653c809beb1d0"
SOURCES = {
    # The modelling code lives in the Hugging Face model repos ("upstream"), of which the stored
    # index holds no copy; these are the first vendored copies in ZHZisZZ/dllm (its later commits
    # edit them). Checked: modeling_llada.py against therkels/LLaDAText2SQL@59750478's copy of the
    # HF file (a later revision: it adds an all-zero bidirectional attention bias and moves an
    # import; the same forward without an attention mask); modeling_dream.py against
    # NVlabs/Fast-dLLM@24cc59e7 (which adds its caches; same attention, norms and RoPE). dllm's
    # copy of DreamModel.forward also accepts 2-D attention masks; no input here has one.
    "llada": {
        "modeling_llada.py": {"repo": DLLM, "path": "dllm/pipelines/llada/models/modeling_llada.py",
                              "commit": DLLM_FIRST, "upstream": "huggingface.co/GSAI-ML/LLaDA-8B-Instruct"},
        "configuration_llada.py": {"repo": DLLM, "path": "dllm/pipelines/llada/models/configuration_llada.py",
                                   "commit": DLLM_FIRST, "upstream": "huggingface.co/GSAI-ML/LLaDA-8B-Instruct"},
        "generate.py": {"repo": "ML-GSAI/LLaDA", "path": "generate.py",
                        "commit": "b7e6c3565f194352da44b38dd12b6970597309f3"},
    },
    "dream": {
        name: {"repo": DLLM, "path": f"dllm/pipelines/dream/models/{name}", "commit": DLLM_FIRST,
               "upstream": "huggingface.co/Dream-org/Dream-v0-Instruct-7B"}
        for name in ("modeling_dream.py", "configuration_dream.py", "generation_utils.py")
    },
    "llada_moe": {
        **{name: {"repo": DLLM, "path": f"dllm/pipelines/llada/models/{name}", "commit": DLLM_FIRST,
                  "upstream": "huggingface.co/inclusionAI/LLaDA-MoE-7B-A1B-Instruct"}
           for name in ("modeling_lladamoe.py", "configuration_lladamoe.py")},
        "generate.py": {"repo": "ML-GSAI/LLaDA", "path": "generate.py",
                        "commit": "b7e6c3565f194352da44b38dd12b6970597309f3"},
    },
    "dreamon": {
        **{name: {"repo": DLLM, "path": f"dllm/pipelines/dream/models/{name}", "commit": DLLM_FIRST,
                  "upstream": "huggingface.co/Dream-org/Dream-v0-Instruct-7B (DreamOn-v0-7B ships its own "
                              "copy, which the index does not hold)"}
           for name in ("modeling_dream.py", "configuration_dream.py", "generation_utils.py")},
        "generator.py": {"repo": "DreamLM/DreamOn", "path": "eval/generator.py",
                         "commit": "8a0a54918412eda9402a327646f7f067f7160ec8"},
    },
    "llada2": {
        name: {"repo": DLLM, "path": f"dllm/pipelines/llada2/models/{name}",
               "commit": "d8cc1190ddbe47a7c38fd0eb5d29d3a0b12043c5",
               "upstream": "huggingface.co/inclusionAI/LLaDA2.0-mini"}
        for name in ("modeling_llada2_moe.py", "configuration_llada2_moe.py")
    },
}
REFERENCE_CLASSES = {  # family -> (config module, class), (model module, class)
    "llada": (("configuration_llada", "LLaDAConfig"), ("modeling_llada", "LLaDAModelLM")),
    "dream": (("configuration_dream", "DreamConfig"), ("modeling_dream", "DreamModel")),
    "llada_moe": (("configuration_lladamoe", "LLaDAMoEConfig"), ("modeling_lladamoe", "LLaDAMoEModelLM")),
    "llada2": (("configuration_llada2_moe", "LLaDA2MoeConfig"), ("modeling_llada2_moe", "LLaDA2MoeModelLM")),
    "dreamon": (("configuration_dream", "DreamConfig"), ("modeling_dream", "DreamModel")),
}
SHIMS = {  # what each shim does -> the families whose reference needs it (all are applied)
    "config.use_cache = False after construction (transformers 5 drops it from kwargs-built configs; "
    "LLaDAModelLM.forward reads it)": ("llada",),
    "ROPE_INIT_FUNCTIONS['default'] registered as transformers 4's default rope, over the "
    "partial_rotary_factor part of each head (transformers 5 removed it; the rotary embeddings look "
    "it up)": ("dream", "llada_moe", "llada2", "dreamon"),
    "DreamGenerationConfig.validate accepts and ignores keyword arguments (transformers 5 passes "
    "user_set_attributes; the original validate does nothing)": ("dream",),
    "transformers.utils.import_utils.is_torch_fx_available defined, returning False (removed in "
    "transformers 5; modeling_llada2_moe imports it)": ("llada2",),
    "a stand-in omegaconf module (OmegaConf = None): DreamOn's eval/generator.py imports it and the "
    "functions run here do not use it": ("dreamon",),
}
DREAMON = {"start": 4, "max_gen_len": 10, "steps": 64}  # DreamOn: initial masks, its span cap, its forwards cap
LLADA2_BLOCK = 32  # LLaDA 2's generate block_length: its attention blocks
LENGTH = {"llada2": 40}  # logits inputs' length (else 12): LLaDA 2's cross its 32-token blocks
LOGITS_TOLERANCE = {"atol": 1e-4, "rtol": 1e-5}  # float32 on CPU; measured differences are ~0
PROMPT, SPAN = 6, 8                                # sampler canvas: prompt tokens, then masked slots


def import_reference(folder: Path, package: str, module: str) -> types.ModuleType:
    """`module` from `folder` as part of a package named `package` (the files import each other
    relatively), without an __init__.py or any edit to the folder."""
    if package not in sys.modules:
        pkg = types.ModuleType(package)
        pkg.__path__ = [str(folder)]
        sys.modules[package] = pkg
    return importlib.import_module(f"{package}.{module}")


def file_record(folder: Path, sources: dict) -> dict:
    """Source and sha256 of each reference file that ran."""
    out = {}
    for name, where in sources.items():
        data = (folder / name).read_bytes()
        out[name] = dict(where, sha256=hashlib.sha256(data).hexdigest())
    return out


def transformers4_default_rope(config=None, device=None, seq_len=None, **_):
    """Shim 2: transformers 4's default RoPE init, inv_freq over the rotary part of each head."""
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    dim = int(head_dim * getattr(config, "partial_rotary_factor", 1.0))
    exponent = torch.arange(0, dim, 2, dtype=torch.int64).float().to(device) / dim
    return 1.0 / config.rope_theta ** exponent, 1.0


def apply_library_shims() -> None:
    """Shims 2 and 4: names the reference files look up in transformers 5 and no longer find."""
    import transformers.modeling_rope_utils as rope_utils
    import transformers.utils.import_utils as import_utils

    rope_utils.ROPE_INIT_FUNCTIONS.setdefault("default", transformers4_default_rope)
    if not hasattr(import_utils, "is_torch_fx_available"):
        import_utils.is_torch_fx_available = lambda: False


def reference_model(family: TinyFamily, folder: Path, checkpoint: Path):
    """The family's reference model class, built from the checkpoint's config.json and holding
    its weights (every tensor name must match: strict loading)."""
    from safetensors.torch import load_file

    apply_library_shims()
    package = f"ref_{family.name}"
    (config_module, config_class), (model_module, model_class) = REFERENCE_CLASSES[family.name]
    config_cls = getattr(import_reference(folder, package, config_module), config_class)
    model = getattr(import_reference(folder, package, model_module), model_class)(
        config_cls(**json.loads((checkpoint / "config.json").read_text())))
    model.config.use_cache = False                                         # shim 1
    model.load_state_dict(load_file(str(checkpoint / "model.safetensors")), strict=True)
    return model.eval()


def logits_inputs(family: TinyFamily, length: int | None = None) -> torch.Tensor:
    """(3, L) ids: plain words; words with scattered masks; a prompt followed by masks only
    (L: `length`, else the family's LENGTH, else 12)."""
    g = torch.Generator().manual_seed(SEED + 1)
    ids = torch.randint(0, family.words, (3, length or LENGTH.get(family.name, 12)), generator=g)
    mask = family.special_ids()["mask"]
    ids[1, [1, 4, 5, 9, 11]] = mask
    ids[2, PROMPT:] = mask
    return ids


def commits(canvases: list[torch.Tensor], mask_id: int) -> list[list[list[int]]]:
    """[[position, token], ...] newly committed at each step, from the canvas before each step
    followed by the final one (each (L,))."""
    out = []
    for before, after in zip(canvases, canvases[1:]):
        changed = ((before == mask_id) & (after != mask_id)).nonzero().squeeze(-1)
        out.append([[int(p), int(after[p])] for p in changed])
    return out


class Recorder:
    """The model generate.py calls: the reference model, noting each canvas it is shown."""

    def __init__(self, model):
        self.model, self.device = model, model.device
        self.canvases: list[torch.Tensor] = []

    def __call__(self, x, attention_mask=None):
        self.canvases.append(x[0].clone())
        return self.model(x, attention_mask=attention_mask)


def llada_sampler_runs(model, generate, family: TinyFamily, prompts: torch.Tensor) -> list[dict]:
    """generate.py at temperature 0 with low-confidence remasking: one token per forward over the
    whole span and in semi-autoregressive blocks, two per forward, and blocks whose share of the
    steps does not divide their length (4 tokens in 3 steps: 2, 1, 1 per block)."""
    mask = family.special_ids()["mask"]
    calls = [dict(steps=SPAN, gen_length=SPAN, block_length=SPAN),
             dict(steps=SPAN, gen_length=SPAN, block_length=SPAN // 2),
             dict(steps=SPAN // 2, gen_length=SPAN, block_length=SPAN),
             dict(steps=6, gen_length=SPAN, block_length=SPAN // 2)]
    runs = []
    for prompt in prompts:
        for kw in calls:
            recorder = Recorder(model)
            args = dict(kw, temperature=0.0, cfg_scale=0.0, remasking="low_confidence", mask_id=mask)
            out = generate.generate(recorder, prompt[None], **args)
            runs.append(sampler_record("generate.generate", args, prompt, recorder.canvases + [out[0]], mask))
    return runs


TOKEN_IDS = ("mask_token_id", "bos_token_id", "eos_token_id", "pad_token_id")


def dream_sampler_runs(model, generation, family: TinyFamily, prompts: torch.Tensor) -> list[dict]:
    """diffusion_generate at temperature 0, steps = the tokens to generate, alg entropy and
    maskgit_plus; the canvas after each step is read through its generation_tokens_hook_func."""
    mask = family.special_ids()["mask"]
    generation.DreamGenerationConfig.validate = lambda self, *args, **kwargs: None  # shim 3
    runs = []
    for prompt in prompts:
        for alg in ("entropy", "maskgit_plus"):
            canvases: list[torch.Tensor] = []

            def hook(step, x, logits, seen=canvases):
                seen.append(x[0].clone())
                return x

            # The config is passed whole (its special ids from the checkpoint's config), so the
            # sampler never builds one from the model config, which transformers 5 cannot do.
            args = dict(max_new_tokens=SPAN, steps=SPAN, temperature=0.0, alg=alg, alg_temp=0.0,
                        **{k: model.config.to_dict()[k] for k in TOKEN_IDS})
            config = generation.DreamGenerationConfig(**args)
            out = model.diffusion_generate(prompt[None], generation_config=config,
                                           generation_tokens_hook_func=hook)
            runs.append(sampler_record("model.diffusion_generate", args, prompt, canvases, mask))
            assert torch.equal(out[0], canvases[-1])
    return runs


class WindowRecorder:
    """The model DreamOn's generator calls: the reference model, noting the part of each canvas
    its attention mask lets the model see (the rest is padding past the current length)."""

    def __init__(self, model):
        self.model, self.windows = model, []

    def __call__(self, x, attention_mask, tok_idx):
        window = int(attention_mask[0, 0].diagonal().sum())
        self.windows.append(x[0, :window].tolist())
        return self.model(x, attention_mask, tok_idx)


def dreamon_runs(model, generator, family: TinyFamily, words: torch.Tensor) -> list[dict]:
    """DreamOn's own variable-length infill (eval/generator.py batch_generate_with_expand_as_token)
    at temperature 0, alg entropy, one token per forward, deleting end-of-text written at a masked
    slot and leaving the rest of the span alone (pad_eos_to_right off): the input is
    [bos] + prefix + [mask] * start + suffix + [eos], as its quickstart builds it."""
    ids = family.special_ids()
    prefix, suffix = words[:5].tolist(), words[7:10].tolist()
    prompt = [ids["bos"]] + prefix + [ids["mask"]] * DREAMON["start"] + suffix + [ids["eos"]]
    cfg = dict(temperature=0.0, top_p=None, top_k=None, show_progress=False, dtype="fp32", device="cpu",
               max_tokens=2048, min_gen_len=DREAMON["start"], max_prompt_len=1024,
               max_gen_len=DREAMON["max_gen_len"], pad_to_max_len=False, pad_eos_to_right=False,
               batch_size=1, eps=1e-3, steps=DREAMON["steps"], alg="entropy", alg_temp=0.0,
               delete_eos_token=True)
    token_ids = types.SimpleNamespace(mask_id=ids["mask"], expand_id=ids["expand"], eos_id=ids["eos"])
    recorder = WindowRecorder(model)
    sampler = generator.MDMGenerator(types.SimpleNamespace(**cfg), recorder, token_ids)
    x, length = sampler.batch_generate_with_expand_as_token(torch.tensor([prompt]))
    final = x[0, :len(prompt) - DREAMON["start"] + length].tolist()
    if ids["mask"] in final or len(recorder.windows) >= DREAMON["steps"]:
        raise SystemExit("dreamon: the reference run did not finish within its steps")
    return [{"call": "MDMGenerator.batch_generate_with_expand_as_token", "args": cfg, "prompt": prompt,
             "span": [1 + len(prefix), 1 + len(prefix) + DREAMON["start"]], "inputs": recorder.windows,
             "final": final}]


def sampler_record(call: str, args: dict, prompt: torch.Tensor, canvases: list[torch.Tensor],
                   mask: int) -> dict:
    """One reference sampler run as the fixture stores it."""
    return {"call": call, "args": args, "prompt": prompt.tolist(), "span": [PROMPT, PROMPT + SPAN],
            "steps": commits(canvases, mask), "final": canvases[-1].tolist()}


def check_no_improbable(family: TinyFamily, runs: list[dict]) -> None:
    """The comparison is only meaningful if the reference never wrote an id Sharpen bans."""
    banned = set(family.improbable_ids())
    written = [t for run in runs for step in run.get("steps", []) for _, t in step]
    written += [t for run in runs for window in run.get("inputs", []) for t in window[run["span"][0]:]]
    hit = sorted({t for t in written if t in banned} - {family.special_ids()[r] for r in ("eos", "mask")})
    if hit:
        raise SystemExit(f"{family.name}: the reference committed banned ids {hit}; rebuild the "
                         "checkpoint with a larger BANNED_LOGIT")


def write_fixture(family: TinyFamily, folder: Path, sources: dict, fingerprint: str) -> None:
    """Run the reference on the family's tiny checkpoint; write its logits and sampler traces."""
    from safetensors.torch import save_file

    ids = logits_inputs(family)
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = Path(tmp) / family.name
        assert write_tiny(family, checkpoint) == fingerprint
        logits, runs = run_reference(family, folder, checkpoint, ids)
    check_no_improbable(family, runs)
    meta_path, logits_path = fixture_paths(family.name)
    meta_path.parent.mkdir(parents=True, exist_ok=True)
    save_file({"ids": ids.contiguous(), "logits": logits.float().contiguous()}, str(logits_path))
    meta = {"family": family.name, "made_by": "tests/parity_fixtures.py",
            "reference": {"files": file_record(folder, sources),
                          "shims": [text for text, who in SHIMS.items() if family.name in who],
                          "transformers": transformers.__version__, "torch": torch.__version__},
            "checkpoint": {"built_by": "tests/parity.py", "seed": SEED, "fingerprint": fingerprint},
            "logits": {"file": logits_path.name, "tolerance": LOGITS_TOLERANCE,
                       "what": "the reference model's raw output logits (B, L, V) on `ids`, float32"},
            "sampler": runs}
    meta_path.write_text(json.dumps(meta, indent=1) + "\n")
    print(f"wrote {meta_path.relative_to(ROOT)} and {logits_path.name}: {len(runs)} sampler runs")


def block_diffusion_mask(length: int) -> torch.Tensor:
    """(1, 1, L, L) additive mask that LLaDA 2's generate builds (tokens see their own 32-token
    block and every earlier one, blocks from the sequence start), in float32 not bfloat16."""
    blocks = -(-length // LLADA2_BLOCK)
    allowed = torch.tril(torch.ones(blocks, blocks)).repeat_interleave(LLADA2_BLOCK, 0)
    allowed = allowed.repeat_interleave(LLADA2_BLOCK, 1)[:length, :length]
    return allowed.log()[None, None]


def run_reference(family: TinyFamily, folder: Path, checkpoint: Path,
                  ids: torch.Tensor) -> tuple[torch.Tensor, list[dict]]:
    """The reference forward's logits on `ids`, and its sampler's runs on two of their prompts."""
    model = reference_model(family, folder, checkpoint)
    package, prompts = f"ref_{family.name}", ids[[0, 2], :PROMPT]
    kwargs = {}
    if family.name == "llada2":
        kwargs = dict(attention_mask=block_diffusion_mask(ids.shape[1]),
                      position_ids=torch.arange(ids.shape[1])[None])
    with torch.no_grad():
        logits = model(ids, **kwargs).logits
    if family.name in ("llada", "llada_moe"):
        runs = llada_sampler_runs(model, import_reference(folder, package, "generate"), family, prompts)
    elif family.name == "dream":
        runs = dream_sampler_runs(model, import_reference(folder, package, "generation_utils"), family, prompts)
    elif family.name == "dreamon":
        sys.modules.setdefault("omegaconf", types.SimpleNamespace(OmegaConf=None))  # shim 5
        runs = dreamon_runs(model, import_reference(folder, package, "generator"), family, ids[0])
    else:  # LLaDA 2's generate draws with torch.multinomial even at temperature 0: nothing exact to compare
        runs = []
    return logits, runs


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    for name in FAMILIES:
        parser.add_argument(f"--{name.replace('_', '-')}", type=Path, metavar="DIR",
                            help=f"folder with the {name} reference files")
    parser.add_argument("--sources", type=Path, help="JSON: family -> file -> {repo, path, commit}")
    args = parser.parse_args(argv)
    sources = json.loads(args.sources.read_text()) if args.sources else SOURCES
    chosen = {name: getattr(args, name) for name in FAMILIES if getattr(args, name) is not None}
    if not chosen:
        parser.error("give at least one of " + ", ".join(f"--{n.replace('_', '-')}" for n in FAMILIES))
    torch.set_num_threads(1)
    for name, folder in chosen.items():
        missing = [f for f in sources[name] if not (folder / f).is_file()]
        if missing:
            raise SystemExit(f"{folder}: missing {', '.join(missing)}")
        family = FAMILIES[name]()
        write_fixture(family, folder, sources[name], fingerprint(tiny_weights(family)))


if __name__ == "__main__":
    main()
