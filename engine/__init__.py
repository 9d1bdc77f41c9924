"""Sharpen's diffusion engine: token ids in, a stream of denoising steps out."""
from .canvas import MASK_GLYPH, Canvas, Constraint, Span, build_canvas
from .codec import TextCodec
from .infill import infill, infill_text
from .load import load_model
from .loop import Step, denoise, run
from .model import DiffusionLM, ModelNotFound, UnsupportedModel
from .settings import DEFAULT_PRESET, PRESETS, STRATEGIES, SamplerSettings

__all__ = [
    "MASK_GLYPH", "Canvas", "Constraint", "Span", "build_canvas", "TextCodec", "infill",
    "infill_text", "load_model", "Step", "denoise", "run", "DiffusionLM", "ModelNotFound",
    "UnsupportedModel", "DEFAULT_PRESET", "PRESETS", "STRATEGIES", "SamplerSettings",
]
