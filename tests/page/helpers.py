"""What the page tests send: the regenerate events' inputs in the page's order, and finished runs."""
import torch

from editor.history import History
from engine import PRESETS, Step, TextCodec
from page.actions import Run, check_candidates
from page.dial import dial_values
from page.state import Page
from tests.tiny import ScriptedModel, byte_bpe_tokenizer

QUALITY = PRESETS["quality"]  # one token per forward: many steps


def editor_value(text, a=0, b=None):
    """The document editor's value as the browser sends it: the text and the selection [a, b) in UTF-16
    code units (default: the cursor at a)."""
    return {"text": text, "selection": [a, a if b is None else b]}


def with_text(outputs):
    """An event's outputs with the first, the document editor's value (or an update carrying it), as its text."""
    first = outputs[0]
    return (first.get("value", first)["text"], *outputs[1:])


def args(text, a, b, language="text", mode="keep", n=8, constraint="", candidates=1, block=None, dial=None,
         ends="", include=""):
    """The regenerate events' inputs: the document with its selection [a, b) (UTF-16), language, length
    mode, N, the constraint row (starts with, ends with, must include), heatmap, then the dial (one value
    per SamplerSettings field, as the page shows it)."""
    dial = dial if dial is not None else dial_values(QUALITY.replace(candidates=candidates, block_length=block))
    return (editor_value(text, a, b), language, mode, n, constraint, ends, include, False, *dial)


def scripted_page():
    """A page over a ScriptedModel (byte-level BPE) and an in-memory history; closed after the test."""
    codec = TextCodec.from_tokenizer(byte_bpe_tokenizer(bos=True))
    target = torch.randint(10, 300, (512,), generator=torch.Generator().manual_seed(0))
    history = History("sqlite://")
    yield Page.for_model(ScriptedModel(codec, target, torch.linspace(0.3, 0.9, 512)), history)
    history.close()


def finished(base: str, span: tuple[int, int], pieces: list[str], language: str = "python", **run) -> Run:
    """A finished run whose candidates rewrote `span` of `base` to `pieces` (the step's documents),
    checked as the page checks them; `run` sets Run fields (document, base_revision)."""
    B = len(pieces)
    texts = tuple(base[:span[0]] + piece + base[span[1]:] for piece in pieces)
    step = Step(index=0, positions=torch.arange(1), tokens=torch.zeros(B, 1, dtype=torch.long),
                masked=torch.zeros(B, 1, dtype=torch.bool), confidence=torch.ones(B, 1),
                committed=torch.ones(B, 1, dtype=torch.bool), committed_at=torch.zeros(B, 1, dtype=torch.long),
                guided=torch.zeros(B, 1, dtype=torch.bool), top_ids=torch.zeros(B, 1, 1, dtype=torch.long),
                top_probs=torch.ones(B, 1, 1), forwards=1,
                elapsed=0.0, texts=texts)
    out = Run(None, base, span, language, **run)  # type: ignore[arg-type]  # accepting reads no canvas
    out.record(step)
    out.problems = check_candidates(out)
    return out
