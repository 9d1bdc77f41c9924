"""Regenerate tests/fixtures/parity/steerling.*: what the steerling package computes on the tiny
Steerling checkpoint (tests/steerling_tiny.py).

    .venv/bin/pip download --no-deps --only-binary=:all: --python-version 3.13 steerling==0.2.0 -d /tmp/steerling
    cd /tmp/steerling && unzip -q steerling-0.2.0-py3-none-any.whl -d pkg
    .venv/bin/python -m tests.steerling_fixtures --steerling /tmp/steerling/pkg --wheel /tmp/steerling/*.whl

The package (Guide Labs, Apache-2.0) is never committed here; the fixture records the wheel's
sha256. It declares Python >= 3.13; its model modules run on 3.11 with these shims:
  1. `steerling` is imported as a bare package over the wheel's folder, so its __init__.py (which
     imports the generator, transformers' AutoModel and pandas) does not run; only steerling.configs
     and steerling.models are loaded.
  2. The flat config.json (the published layout) is split into CausalDiffusionConfig and
     ConceptConfig as the published SteerlingForCausalLM does (concept_block_size -> block_size).
  3. For the "large head" run, both heads' `_is_large` is set after construction, so a steer takes
     the path the released 101,196-concept unknown head takes (a correction on its top-k features)
     on a checkpoint small enough to build here.
Stored: logits on three inputs (words; scattered masks; a prompt then masks, 40 tokens across
16-token attention blocks), the known head's top-k ids and logits and features, the unknown head's
features and top-k, and the logits under three steers (package `intervene`: known, unknown, both)
plus the both-heads steer on large heads.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
import tempfile
import types
from pathlib import Path

import torch

from tests.parity import FIXTURES, SEED, fingerprint
from tests.steerling_tiny import CONFIG, IDS, WORDS, tiny_weights, write_tiny_steerling

VERSION = "0.2.0"
TOLERANCE = {"atol": 1e-4, "rtol": 1e-5}
STEERS = {  # fixture key -> (known {id: weight}, unknown {id: weight}); tests name them by label
    "steer_known": ({3: 2.0, 17: -1.0}, {}),
    "steer_unknown": ({}, {5: 1.5}),
    "steer_both": ({3: 2.0}, {5: 1.5, 60: -1.0}),
}
SHIMS = ["steerling imported as a bare package over the wheel's folder (its __init__.py, which imports the "
         "generator, transformers' AutoModel and pandas, does not run)",
         "the flat config.json split into CausalDiffusionConfig and ConceptConfig as the published "
         "SteerlingForCausalLM does (concept_block_size -> block_size)",
         "steer_both_large: both heads' _is_large set after construction (the released unknown head's path)"]
CONCEPT_KEYS = ("n_concepts", "n_unknown_concepts", "concept_dim", "use_attention_known", "use_attention_unknown",
                "topk_known", "topk_known_features", "use_unknown", "factorize_unknown", "factorize_rank",
                "unknown_topk", "use_epsilon_correction", "pad_multiple", "topk_on_logits",
                "store_unknown_weights", "apply_topk_to_unknown", "inject_layer", "inject_alpha")


def import_package(folder: Path) -> types.ModuleType:
    """Shim 1: `steerling` as a bare package over the wheel's folder."""
    pkg = types.ModuleType("steerling")
    pkg.__path__ = [str(folder / "steerling")]
    sys.modules["steerling"] = pkg
    import steerling.models.interpretable.interpretable_causal_diffusion as icd
    return icd


def reference_model(folder: Path, checkpoint: Path):
    from safetensors.torch import load_file

    icd = import_package(folder)
    from steerling.configs.causal_diffusion import CausalDiffusionConfig
    from steerling.configs.concept import ConceptConfig

    config = json.loads((checkpoint / "config.json").read_text())
    arch = {k: v for k, v in config.items() if k in CausalDiffusionConfig.model_fields and k != "model_type"}
    concept = {k: config[k] for k in CONCEPT_KEYS} | {"block_size": config["concept_block_size"]}   # shim 2
    model = icd.InterpretableCausalDiffusionLM(CausalDiffusionConfig(**arch), ConceptConfig(**concept),
                                               vocab_size=config["vocab_size"])
    missing, unexpected = model.load_state_dict(load_file(str(checkpoint / "model.safetensors")), strict=False)
    assert not unexpected and set(missing) <= {"transformer.lm_head.weight"}, (missing, unexpected)
    model.transformer._restore_weight_tying()
    return model.eval()


def inputs() -> torch.Tensor:
    g = torch.Generator().manual_seed(SEED + 1)
    ids = torch.randint(0, WORDS, (3, 40), generator=g)
    ids[1, [1, 4, 5, 9, 17, 18, 30, 39]] = IDS["mask"]
    ids[2, 6:] = IDS["mask"]
    return ids


def run(folder: Path) -> dict[str, torch.Tensor]:
    ids = inputs()
    out: dict[str, torch.Tensor] = {"ids": ids}
    with tempfile.TemporaryDirectory() as tmp, torch.no_grad():
        checkpoint = Path(tmp) / "steerling"
        write_tiny_steerling(checkpoint)
        model = reference_model(folder, checkpoint)
        logits, o = model(ids, minimal_output=False)
        out |= {"logits": logits, "known_topk_indices": o.known_topk_indices, "known_topk_logits": o.known_topk_logits,
                "known_features": o.known_features, "unknown_features": o.unk_hat,
                "unknown_topk_indices": o.unknown_topk_indices, "unknown_topk_logits": o.unknown_topk_logits}
        for key, (known, unknown) in STEERS.items():
            out[key] = model.intervene(ids, known=known or None, unknown=unknown or None)[0]
        model.known_head._is_large = model.unknown_head._is_large = True                        # shim 3
        known, unknown = STEERS["steer_both"]
        out["steer_both_large"] = model.intervene(ids, known=known, unknown=unknown)[0]
    return {k: v.contiguous() for k, v in out.items()}


def main(argv: list[str] | None = None) -> None:
    from safetensors.torch import save_file

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steerling", type=Path, required=True, help="the unpacked wheel (holds steerling/)")
    parser.add_argument("--wheel", type=Path, required=True, help="the wheel itself, for its sha256")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    tensors = run(args.steerling)
    save_file(tensors, str(FIXTURES / "steerling.safetensors"))
    meta = {"family": "steerling", "made_by": "tests/steerling_fixtures.py",
            "reference": {"package": f"steerling=={VERSION}", "source": "PyPI (Guide Labs, Apache-2.0)",
                          "wheel_sha256": hashlib.sha256(args.wheel.read_bytes()).hexdigest(),
                          "shims": SHIMS,
                          "torch": torch.__version__},
            "checkpoint": {"built_by": "tests/steerling_tiny.py", "seed": SEED,
                           "fingerprint": fingerprint(tiny_weights()), "config": CONFIG},
            "steers": {k: {"known": known, "unknown": unknown} for k, (known, unknown) in STEERS.items()},
            "tolerance": TOLERANCE}
    (FIXTURES / "steerling.json").write_text(json.dumps(meta, indent=1) + "\n")
    print(f"wrote {FIXTURES / 'steerling.json'} and steerling.safetensors: {', '.join(tensors)}")


if __name__ == "__main__":
    main()
