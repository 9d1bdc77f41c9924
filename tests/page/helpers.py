"""What the page tests send: the regenerate events' inputs in the page's order."""
from engine import PRESETS
from page.dial import dial_values

QUALITY = PRESETS["quality"]  # one token per forward: many steps


def args(text, a, b, language="text", mode="keep", n=8, constraint="", candidates=1, block=None, dial=None):
    """The regenerate events' inputs: document, start, end (UTF-16), language, length mode, N,
    constraint, heatmap, then the dial (one value per SamplerSettings field, as the page shows it)."""
    dial = dial if dial is not None else dial_values(QUALITY.replace(candidates=candidates, block_length=block))
    return (text, a, b, language, mode, n, constraint, False, *dial)
