"""DiffusionGemma (transformers' native `diffusion_gemma`) as a uniform-noise diffusion model.

How the architecture is fed. DiffusionGemma is an encoder-decoder that shares one set of weights:
a causal encoder writes the prompt into a KV cache, and a decoder denoises a canvas with
bidirectional attention over that cache plus the whole canvas. Its logits are position-aligned
(decoder slot i scores canvas token i; HF's sampler writes argmax(logits[:, i]) into slot i).
There is no timestep input; uniform noise means undecided slots hold random vocabulary tokens.

`logits(ids)` gets only the canvas, not which slots are undecided (a uniform model cannot be told),
so the split is fixed and never depends on the spans:
1. The encoder reads the frame prefix the tokenizer puts before a text (Gemma's <bos>). When `ids`
   do not start with it (bare tensors) it is prepended; a tokenizer without a frame gets its (or
   the config's) bos id prepended, as HF's prompts start with it; a model with neither is refused.
2. The decoder reads everything after it: context before, inside and after the spans, so suffix
   context conditions the infill too. Positions continue after the encoder's, as in HF generate.
3. Frame-prefix slots are given, not predicted: their logits put the softcap at the given token and
   minus the softcap elsewhere (finite, like the model's own softcapped range). The loop never reads
   them (spans lie inside the text).
No self-conditioning: HF feeds the previous step's logits back in; the DiffusionLM contract is
stateless, and state carried between calls would leak across runs and break same-seed results, so
every call looks like HF's first denoising step (a zero signal, which HF's self_conditioning_mask
also gives some examples in training).
The model was trained on canvases of `config.canvas_length` (256) tokens after the prompt; longer
documents fit its positions (`max_length`) but are outside what its decoder saw in training.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch

from ..codec import TextCodec
from ..model import DiffusionLM, UnsupportedModel


class DiffusionGemma(DiffusionLM):
    """A transformers DiffusionGemmaForBlockDiffusion behind the DiffusionLM interface."""

    noise = "uniform"
    mask_id = None

    def __init__(self, net: torch.nn.Module, tokenizer, folder: Path, device: torch.device):
        self.net = net.eval()
        config: Any = net.config  # a transformers config (torch types a Module's attributes as Tensor | Module)
        text = config.text_config
        self.vocab_size = int(text.vocab_size)
        self.codec = _codec(tokenizer, config, self.vocab_size)
        frame = self.codec.frame_prefix
        bos = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else text.bos_token_id
        if not frame and bos is None:
            raise UnsupportedModel(f"{folder}: neither tokenizer nor config names a bos token to encode.")
        self.prompt = torch.tensor(frame or (bos,), dtype=torch.long, device=device)  # (n,)
        self.framed = bool(frame)  # ids built by the codec start with the prompt
        # A prepended bos takes one position of the model's range; a frame prefix is already in ids.
        self.max_length = int(text.max_position_embeddings) - (0 if frame else 1)
        self.softcap = float(text.final_logit_softcapping)
        self.device = device
        self.label = f"DiffusionGemma (local: {folder})"

    @torch.inference_mode()
    def logits(self, ids: torch.Tensor) -> torch.Tensor:
        B, n = ids.shape[0], len(self.prompt)
        framed = self.framed and ids.shape[1] > n and bool((ids[:, :n] == self.prompt).all())
        canvas = ids[:, n:] if framed else ids                                # 2 (B, L - n or L)
        out = self.net(input_ids=self.prompt.expand(B, n),                    # 1 (B, n)
                       decoder_input_ids=canvas).logits                       # (B, L', V) float32
        if not framed:
            return out
        given = torch.nn.functional.one_hot(ids[:, :n], self.vocab_size).to(out.dtype)  # 3 (B, n, V)
        return torch.cat([(2 * given - 1) * self.softcap, out], dim=1)        # (B, L, V)


def load(folder: Path, config: dict, device: torch.device, dtype: torch.dtype | None) -> DiffusionGemma:
    from transformers import AutoTokenizer, DiffusionGemmaForBlockDiffusion

    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    except (OSError, ValueError) as err:
        raise UnsupportedModel(f"{folder}: no usable tokenizer files ({err}).") from err
    net: torch.nn.Module = DiffusionGemmaForBlockDiffusion.from_pretrained(folder, local_files_only=True,
                                                          dtype=dtype or torch.float32)
    return DiffusionGemma(net.to(device), tokenizer, folder, device)


def _codec(tokenizer, config, vocab_size: int) -> TextCodec:
    """The tokenizer's codec, also banning the image-placeholder ids the config names."""
    codec = TextCodec.from_tokenizer(tokenizer, mask_id=None, vocab_size=vocab_size)
    named = (getattr(config, name, None) for name in ("boi_token_id", "eoi_token_id", "image_token_id"))
    image = {i for i in named if i is not None and i < vocab_size}
    return dataclasses.replace(codec, banned_ids=tuple(sorted(set(codec.banned_ids) | image)))
