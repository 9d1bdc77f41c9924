"""Regenerate tests/fixtures/parity/: what LLaDA's and Dream's own code computes on tiny checkpoints.

    .venv/bin/python scripts/parity_fixtures.py --llada /tmp/ref/llada --dream /tmp/ref/dream

Each reference folder holds the family's files, unedited, as published (they are never committed
here; copy them from where the sources below say):
  --llada  modeling_llada.py, configuration_llada.py (the GSAI-ML/LLaDA-8B-Instruct model repo's
           remote code) and generate.py (github ML-GSAI/LLaDA)
  --dream  modeling_dream.py, configuration_dream.py, generation_utils.py (the
           Dream-org/Dream-v0-Instruct-7B model repo's remote code)
`--llada-source` / `--dream-source` (JSON: file name -> {repo, path, commit}) say where the copies
came from; they default to the copies the stored fixtures were made with (SOURCES). The
fixtures also record each file's sha256, so they name the exact bytes that ran.

The tiny checkpoints are rebuilt from a seed by tests/parity.py (the same code the tests use); each
fixture records the weights' fingerprint. Per family the script stores the reference forward's
logits on a few inputs (masked positions included) and every step of the reference sampler at
temperature 0: LLaDA's `generate` (low-confidence remasking, whole span and semi-autoregressive
blocks) and Dream's `diffusion_generate` (alg entropy and maskgit_plus). Steps are read without
touching the samplers: LLaDA's model is wrapped to record each canvas it is called on, Dream's
through its own `generation_tokens_hook_func`.

Shims, applied at run time for transformers 5.23 / torch 2.13 (the reference files are not edited):
  1. LLaDA: transformers 5 no longer keeps `use_cache` on a config built from keyword arguments,
     and LLaDAModelLM.forward reads `config.use_cache`: set to False after building the model.
  2. Dream: transformers 5 dropped the "default" entry of ROPE_INIT_FUNCTIONS that
     DreamRotaryEmbedding looks up: registered as transformers 4's default (inv_freq = theta ** (-2i/d),
     attention scaling 1).
  3. Dream: transformers 5 calls GenerationConfig.validate(user_set_attributes=...), which
     DreamGenerationConfig.validate(self, is_init=False) does not accept: replaced by a
     validate that takes any keywords and, like the original, does nothing.
"""
from __future__ import annotations

import argparse
import hashlib
import importlib
import json
import sys
import tempfile
import types
from functools import partial
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.parity import FAMILIES, SEED, TinyFamily, fixture_paths, write_tiny  # noqa: E402

SOURCES = {
    # The Hugging Face model repos hold the modelling code; the search index stores no copy of
    # them, so these are vendored copies (checked in the report against a second copy).
    "llada": {
        "modeling_llada.py": {"repo": "ZHZisZZ/dllm", "path": "dllm/pipelines/llada/models/modeling_llada.py",
                              "commit": "03270de7d134f87244f1ffc2ff3653c809beb1d0",
                              "upstream": "huggingface.co/GSAI-ML/LLaDA-8B-Instruct"},
        "configuration_llada.py": {"repo": "ZHZisZZ/dllm",
                                   "path": "dllm/pipelines/llada/models/configuration_llada.py",
                                   "commit": "03270de7d134f87244f1ffc2ff3653c809beb1d0",
                                   "upstream": "huggingface.co/GSAI-ML/LLaDA-8B-Instruct"},
        "generate.py": {"repo": "ML-GSAI/LLaDA", "path": "generate.py",
                        "commit": "b7e6c3565f194352da44b38dd12b6970597309f3"},
    },
    "dream": {
        name: {"repo": "ZHZisZZ/dllm", "path": f"dllm/pipelines/dream/models/{name}",
               "commit": "03270de7d134f87244f1ffc2ff3653c809beb1d0",
               "upstream": "huggingface.co/Dream-org/Dream-v0-Instruct-7B"}
        for name in ("modeling_dream.py", "configuration_dream.py", "generation_utils.py")
    },
}
SHIMS = {
    "llada": ["config.use_cache = False after construction (transformers 5 drops it from kwargs-built "
              "configs; LLaDAModelLM.forward reads it)"],
    "dream": ["ROPE_INIT_FUNCTIONS['default'] registered as transformers 4's default rope (removed in "
              "transformers 5; DreamRotaryEmbedding looks it up)",
              "DreamGenerationConfig.validate accepts and ignores keyword arguments (transformers 5 "
              "passes user_set_attributes; the original validate does nothing)"],
}
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


def llada_reference(folder: Path, checkpoint: Path):
    """LLaDA's LLaDAModelLM holding the tiny checkpoint, and its generate.py module."""
    from safetensors.torch import load_file

    config_mod = import_reference(folder, "ref_llada", "configuration_llada")
    model_mod = import_reference(folder, "ref_llada", "modeling_llada")
    generate = import_reference(folder, "ref_llada", "generate")
    config = config_mod.LLaDAConfig(**json.loads((checkpoint / "config.json").read_text()))
    model = model_mod.LLaDAModelLM(config)
    model.config.use_cache = False                                         # shim 1
    model.load_state_dict(load_file(str(checkpoint / "model.safetensors")), strict=True)
    return model.eval(), generate


def dream_reference(folder: Path, checkpoint: Path):
    """Dream's DreamModel (with its DreamGenerationMixin) holding the tiny checkpoint, and its
    generation_utils module."""
    import transformers.modeling_rope_utils as rope_utils
    from safetensors.torch import load_file

    def default_rope(config=None, device=None, seq_len=None, **_):        # shim 2
        dim = config.hidden_size // config.num_attention_heads
        exponent = torch.arange(0, dim, 2, dtype=torch.int64).float().to(device) / dim
        return 1.0 / config.rope_theta ** exponent, 1.0

    rope_utils.ROPE_INIT_FUNCTIONS.setdefault("default", default_rope)
    config_mod = import_reference(folder, "ref_dream", "configuration_dream")
    model_mod = import_reference(folder, "ref_dream", "modeling_dream")
    generation = import_reference(folder, "ref_dream", "generation_utils")
    generation.DreamGenerationConfig.validate = lambda self, *args, **kwargs: None  # shim 3
    config = config_mod.DreamConfig(**json.loads((checkpoint / "config.json").read_text()))
    model = model_mod.DreamModel(config)
    model.load_state_dict(load_file(str(checkpoint / "model.safetensors")), strict=True)
    return model.eval(), generation


def logits_inputs(family: TinyFamily) -> torch.Tensor:
    """(3, 12) ids: plain words; words with scattered masks; a prompt followed by masks only."""
    g = torch.Generator().manual_seed(SEED + 1)
    ids = torch.randint(0, family.words, (3, 12), generator=g)
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


def sampler_record(call: str, args: dict, prompt: torch.Tensor, canvases: list[torch.Tensor],
                   mask: int) -> dict:
    """One reference sampler run as the fixture stores it."""
    return {"call": call, "args": args, "prompt": prompt.tolist(), "span": [PROMPT, PROMPT + SPAN],
            "steps": commits(canvases, mask), "final": canvases[-1].tolist()}


def check_no_improbable(family: TinyFamily, runs: list[dict]) -> None:
    """The comparison is only meaningful if the reference never wrote an id Sharpen bans."""
    banned = set(family.improbable_ids())
    hit = [t for run in runs for step in run["steps"] for _, t in step if t in banned]
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
    import transformers

    meta = {"family": family.name, "made_by": "scripts/parity_fixtures.py",
            "reference": {"files": file_record(folder, sources), "shims": SHIMS[family.name],
                          "transformers": transformers.__version__, "torch": torch.__version__},
            "checkpoint": {"built_by": "tests/parity.py", "seed": SEED, "fingerprint": fingerprint},
            "logits": {"file": logits_path.name, "tolerance": LOGITS_TOLERANCE,
                       "what": "the reference model's raw output logits (B, L, V) on `ids`, float32"},
            "sampler": runs}
    meta_path.write_text(json.dumps(meta, indent=1) + "\n")
    print(f"wrote {meta_path.relative_to(ROOT)} and {logits_path.name}: {len(runs)} sampler runs")


def run_reference(family: TinyFamily, folder: Path, checkpoint: Path,
                  ids: torch.Tensor) -> tuple[torch.Tensor, list[dict]]:
    """The reference forward's logits on `ids`, and its sampler's runs on two of their prompts."""
    prompts = ids[[0, 2], :PROMPT]
    if family.name == "llada":
        model, generate = llada_reference(folder, checkpoint)
        sample = partial(llada_sampler_runs, model, generate, family, prompts)
    else:
        model, generation = dream_reference(folder, checkpoint)
        sample = partial(dream_sampler_runs, model, generation, family, prompts)
    with torch.no_grad():
        logits = model(ids).logits
    return logits, sample()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--llada", type=Path, help="folder with LLaDA's reference files")
    parser.add_argument("--dream", type=Path, help="folder with Dream's reference files")
    parser.add_argument("--llada-source", type=json.loads, default=SOURCES["llada"])
    parser.add_argument("--dream-source", type=json.loads, default=SOURCES["dream"])
    args = parser.parse_args(argv)
    if not (args.llada or args.dream):
        parser.error("give --llada and/or --dream")
    torch.set_num_threads(1)
    from tests.parity import fingerprint, tiny_weights

    for name, folder, sources in (("llada", args.llada, args.llada_source),
                                  ("dream", args.dream, args.dream_source)):
        if folder is None:
            continue
        missing = [f for f in sources if not (folder / f).is_file()]
        if missing:
            raise SystemExit(f"{folder}: missing {', '.join(missing)}")
        family = FAMILIES[name]()
        write_fixture(family, folder, sources, fingerprint(tiny_weights(family)))


if __name__ == "__main__":
    main()
