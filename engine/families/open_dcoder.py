"""Open-dCoder (fredzzp/open-dcoder-0.5B, pengzhangzhi/Open-dLLM): a Qwen2.5-Coder checkpoint trained
as a masked diffusion model, loaded as Dream is (Qwen2 layout with q/k/v biases, shifted head).

Its config says model_type "qwen2"; load.py (AUTO_MAPS) tells it from a plain Qwen2 by the
auto_map that Open-dLLM's upload script writes (AutoModelForCausalLM =
modeling_qwen2.Qwen2ForCausalLM, its own modelling file). Its sampler
(veomni/models/transformers/qwen2/generation_utils.py@8b38787) reads position i from raw logits
i-1, position 0 from raw 0, as Dream's does; the mask token is its tokenizer's.
"""
from __future__ import annotations

from pathlib import Path

import torch

from . import dream
from .llama import LlamaDiffusionLM


def load(folder: Path, config: dict, device: torch.device, dtype: torch.dtype | None) -> LlamaDiffusionLM:
    """Dream's loader, labelled as Open-dCoder."""
    model = dream.load(folder, config, device, dtype)
    model.label = f"Open-dCoder (local: {folder})"
    return model
