"""SamplerSettings: the one frozen, validated set of knobs for the denoising loop, plus presets."""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any

STRATEGIES = ("low_confidence", "random", "threshold", "entropy")
CACHES = ("none", "dual")


@dataclass(frozen=True)
class SamplerSettings:
    """How a span is denoised. Validated once, here; the loop trusts it.

    steps: most forwards the loop may run; None means one per `tokens_per_step` tokens to fill
      (with the default 1: one forward per token, LLaDA's best quality).
    tokens_per_step: with steps=None, the budget is ceil(tokens to fill / this), so the budget
      scales with the span (LLaDA's "steps = length / k").
    block_length: tokens per semi-autoregressive block inside each span (None: whole span at once).
    strategy: how to pick the positions to commit each step:
      low_confidence  the most confident predictions (LLaDA)
      random          uniformly random positions (LLaDA's baseline)
      threshold       the best one plus every one with confidence >= threshold (Fast-dLLM)
      entropy         lowest-entropy ones while their summed entropy minus the largest stays
                      <= entropy_bound (EB-sampler; HF DiffusionGemma)
    temperature: 0 takes the argmax; > 0 samples (Gumbel-max) at that temperature.
    seed: seeds the one torch.Generator every random draw goes through.
    remask_below: self-correction, off by default: each step, earlier commits whose confidence was
      below this go back to undecided (at most as many as were committed that step).
    candidates: alternatives of the same canvas denoised together in one batch.
    alternatives: top-k alternatives recorded per committed position for token inspectors.
    cache: "none" runs the whole canvas every forward; "dual" caches the context's keys/values and
      runs only the span slots between refreshes (Fast-dLLM DualCache; models with
      `supports_cache`, others run in full).
    refresh_every: with cache="dual", recompute the context every this many steps (None: only at
      the start and when a span moves to its next block).
    context_window: tokens of context the model sees either side of the spans (None: all).
    spacing: slots committed in the same forward stay at least this many positions apart while
      enough such slots are left (1: neighbours allowed; 2: no two neighbours), so neighbouring
      slots do not each pick the same likely token from their own marginal ("the the").
    """

    steps: int | None = None
    tokens_per_step: int = 1
    block_length: int | None = None
    strategy: str = "threshold"
    threshold: float = 0.9
    entropy_bound: float = 0.1
    temperature: float = 0.0
    seed: int = 0
    remask_below: float | None = None
    candidates: int = 1
    alternatives: int = 5
    cache: str = "none"
    refresh_every: int | None = None
    context_window: int | None = None
    spacing: int = 1

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise ValueError(f"unknown strategy {self.strategy!r}; choose one of {', '.join(STRATEGIES)}")
        if self.steps is not None and (not isinstance(self.steps, int) or self.steps < 1):
            raise ValueError(f"steps must be a whole number >= 1 (or None), got {self.steps!r}")
        if not isinstance(self.tokens_per_step, int) or self.tokens_per_step < 1:
            raise ValueError(f"tokens_per_step must be a whole number >= 1, got {self.tokens_per_step!r}")
        if self.block_length is not None and (not isinstance(self.block_length, int) or self.block_length < 1):
            raise ValueError(f"block_length must be a whole number >= 1 (or None), got {self.block_length!r}")
        if not 0.0 < self.threshold <= 1.0:
            raise ValueError(f"threshold must be in (0, 1], got {self.threshold!r}")
        if self.entropy_bound < 0:
            raise ValueError(f"entropy_bound must be >= 0, got {self.entropy_bound!r}")
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature!r}")
        if not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"seed must be a whole number >= 0, got {self.seed!r}")
        if self.remask_below is not None and not 0.0 < self.remask_below < 1.0:
            raise ValueError(f"remask_below must be in (0, 1) or None, got {self.remask_below!r}")
        if not isinstance(self.candidates, int) or not 1 <= self.candidates <= 64:
            raise ValueError(f"candidates must be a whole number from 1 to 64, got {self.candidates!r}")
        if not isinstance(self.alternatives, int) or not 1 <= self.alternatives <= 20:
            raise ValueError(f"alternatives must be a whole number from 1 to 20, got {self.alternatives!r}")
        if self.cache not in CACHES:
            raise ValueError(f"unknown cache {self.cache!r}; choose one of {', '.join(CACHES)}")
        if not isinstance(self.spacing, int) or not 1 <= self.spacing <= 64:
            raise ValueError(f"spacing must be a whole number from 1 to 64, got {self.spacing!r}")
        for name in ("refresh_every", "context_window"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ValueError(f"{name} must be a whole number >= 1 (or None), got {value!r}")

    def replace(self, **changes: Any) -> "SamplerSettings":
        """A copy with `changes`, validated again."""
        return dataclasses.replace(self, **changes)

    def with_values(self, values: dict[str, Any]) -> "SamplerSettings":
        """A copy with user-supplied `values` (e.g. from JSON); unknown keys are an error."""
        known = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown setting(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        return dataclasses.replace(self, **values)


PRESETS: dict[str, SamplerSettings] = {
    # LLaDA's reference: one token per forward, most confident first, whole canvas every forward.
    "quality": SamplerSettings(strategy="low_confidence", cache="none"),
    # The reference's commit order over cached context (DualCache): the same tokens on most slots.
    "quality_cached": SamplerSettings(strategy="low_confidence", cache="dual"),
    # The page's and the CLI's default: the most confident slot plus every slot >= 0.3 sure (this
    # model's confidence seldom reaches Fast-dLLM's 0.9: 0.3 sits near its 95th percentile), never
    # two neighbours in one forward, over cached context, 128 tokens either side; ~1.2 tokens per
    # forward. The fastest setting measured that kept the reference's fluency and parse rate on
    # both the benchmark and the held-out infills (docs/PERFORMANCE.md).
    "fast": SamplerSettings(strategy="threshold", threshold=0.3, tokens_per_step=1, spacing=2,
                            cache="dual", context_window=128),
    # Two tokens per forward (more where >= 0.9 sure), never two neighbours in one forward:
    # ~1.6x faster than `fast`, as fluent on single lines, but parses 19 points less on blocks.
    "two_apart": SamplerSettings(strategy="threshold", threshold=0.9, tokens_per_step=2, spacing=2,
                                 cache="dual", context_window=128),
    # Fast-dLLM's parallel commits with at least 4 tokens per forward: fewest forwards, and the
    # neighbour repeats ("the the") that cost fluency.
    "four_per_forward": SamplerSettings(strategy="threshold", threshold=0.9, tokens_per_step=4,
                                        cache="dual", context_window=128),
    # EB-sampler: as many low-entropy tokens as fit under the bound.
    "balanced": SamplerSettings(strategy="entropy", entropy_bound=0.1),
}
DEFAULT_PRESET = "fast"  # what the page starts with (docs/PERFORMANCE.md: why this one)


def parse_variant(spec: str, preset: str) -> tuple[str, SamplerSettings]:
    """"w64:context_window=64,cache=none" -> ("<preset>+w64", that preset so changed). Values are
    read as JSON where they parse (64, 0.8, null) and as text otherwise (none, dual)."""
    name, sep, body = spec.partition(":")
    if not sep or not name or not body:
        raise ValueError(f"variant {spec!r}: expected NAME:KEY=VALUE[,KEY=VALUE...]")
    values = {}
    for item in body.split(","):
        key, eq, raw = item.partition("=")
        if not eq:
            raise ValueError(f"variant {spec!r}: {item!r} is not KEY=VALUE")
        try:
            values[key.strip()] = json.loads(raw)
        except json.JSONDecodeError:
            values[key.strip()] = raw.strip()
    return f"{preset}+{name}", PRESETS[preset].with_values(values)
