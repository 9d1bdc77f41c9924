"""Any Hugging Face *ForMaskedLM folder (BERT, RoBERTa, ModernBERT, ...) as a mask-diffusion model.

A masked LM is a one-step masked-diffusion denoiser: it sees the whole canvas with [MASK] at the
undecided slots and scores every slot bidirectionally, which is exactly what the loop asks for.

Chat fine-tunes (dllm's ModernBERT-{base,large}-chat-v0.1, ZHZisZZ/dllm@ca176752 examples/bert):
their tokenizer carries the chat template ([Question] ... [/Question], [Answer] ... [/Answer]),
which engine/instruct.py lays an instruction out in. dllm trains and samples them on
`apply_chat_template` ids, which hold no [CLS]/[SEP] (dllm/utils/data.py default_sft_map_fn;
its chat.py tokenizes plain prompts with add_special_tokens=False too), so a masked LM whose
tokenizer has a chat template gets no frame here either: its canvas is what it was trained on.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch

from ..codec import TextCodec
from ..model import DiffusionLM, UnsupportedModel


class MaskedLM(DiffusionLM):
    """A transformers masked LM behind the DiffusionLM interface (logits are position-aligned)."""

    noise = "mask"

    def __init__(self, net: torch.nn.Module, tokenizer, folder: Path, device: torch.device):
        self.net = net.eval()
        config: Any = net.config  # a transformers config (torch types a Module's attributes as Tensor | Module)
        self.vocab_size = int(config.vocab_size)
        self.codec = TextCodec.from_tokenizer(tokenizer, vocab_size=self.vocab_size)
        if self.codec.mask_id is None:
            raise UnsupportedModel(f"{folder}: the tokenizer has no mask token, so it is not a masked LM.")
        self.mask_id = self.codec.mask_id
        if getattr(tokenizer, "chat_template", None):  # a chat fine-tune: trained without the frame
            self.codec = dataclasses.replace(self.codec, frame_prefix=(), frame_suffix=())
        self.max_length = _context_length(config, tokenizer)
        self.device = device
        self.label = f"{type(net).__name__} (local: {folder})"

    @torch.inference_mode()
    def logits(self, ids: torch.Tensor) -> torch.Tensor:
        return self.net(input_ids=ids).logits  # (B, L, V)


def load(folder: Path, config: dict, device: torch.device, dtype: torch.dtype | None) -> MaskedLM:
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True, trust_remote_code=False)
    except (OSError, ValueError) as err:
        raise UnsupportedModel(f"{folder}: no usable tokenizer files ({err}).") from err
    net = AutoModelForMaskedLM.from_pretrained(folder, local_files_only=True, dtype=dtype or torch.float32)
    return MaskedLM(net.to(device), tokenizer, folder, device)


def _context_length(config, tokenizer) -> int:
    """Positions the model can attend over; RoBERTa reserves two position rows for padding offsets."""
    n = getattr(config, "max_position_embeddings", None) or tokenizer.model_max_length
    if getattr(config, "model_type", "") in ("roberta", "xlm-roberta", "camembert"):
        n -= 2
    return int(min(n, tokenizer.model_max_length or n))
