"""What the page tests send: the regenerate events' inputs in the page's order."""
from engine import PRESETS
from page.dial import dial_values

QUALITY = PRESETS["quality"]  # one token per forward: many steps


def editor_value(text, a=0, b=None):
    """The document editor's value as the browser sends it: the text and the selection [a, b) in UTF-16
    code units (default: the cursor at a)."""
    return {"text": text, "selection": [a, a if b is None else b]}


def with_text(outputs):
    """An event's outputs with the first, the document editor's value (or an update carrying it), as its text."""
    first = outputs[0]
    return (first.get("value", first)["text"], *outputs[1:])


def args(text, a, b, language="text", mode="keep", n=8, constraint="", candidates=1, block=None, dial=None):
    """The regenerate events' inputs: the document with its selection [a, b) (UTF-16), language, length
    mode, N, constraint, heatmap, then the dial (one value per SamplerSettings field, as the page shows it)."""
    dial = dial if dial is not None else dial_values(QUALITY.replace(candidates=candidates, block_length=block))
    return (editor_value(text, a, b), language, mode, n, constraint, False, *dial)
