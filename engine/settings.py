"""SamplerSettings: the one frozen, validated set of knobs for the denoising loop, plus presets.

Each field carries its help, choices, bounds and dial range (`setting(...)`). CLI flags, the page's
dial and JSON read them through `knobs()`, so a field is described once and shows up everywhere.
"""
from __future__ import annotations

import dataclasses
import functools
import json
import math
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .limits import MAX_CANDIDATES, MAX_DOCUMENT_TOKENS, MAX_GUIDANCE, MAX_SPAN_TOKENS, MAX_STEPS, MAX_TEMPERATURE

STRATEGIES = ("low_confidence", "random", "threshold", "entropy")
CACHES = ("none", "dual", "delayed")
ROUND_CONTEXTS = ("reread", "carry")
SCOPES = ("lines", "off")
MAX_STEERED = 16        # concepts one edit may steer
MAX_WEIGHT = 100.0      # |WEIGHT|: a concept's own weight is 0..1; the package's examples use -1 and 2
MAX_NAME = 200          # characters of one concept name

Pairs = tuple[tuple[str, float], ...]   # (concept name, the weight it is set to)
KINDS = {int: "a whole number", float: "a finite number", str: "text"}
ENTROPY_CAP = 1000.0  # nats summed over the slots one step commits: past it every slot qualifies anyway


def parse_steer(text: str) -> Pairs:
    """"formal tone=2, sarcasm=-1" -> (("formal tone", 2.0), ("sarcasm", -1.0)); "" -> ().
    A ValueError naming the field says what is wrong (a name may hold spaces, not "=" or ",")."""
    pairs: list[tuple[str, float]] = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        name, eq, raw = (s.strip() for s in item.rpartition("="))
        if not eq or not name:
            raise ValueError(f"steer: {item!r} is not NAME=WEIGHT (e.g. \"formal tone=2, sarcasm=-1\")")
        if len(name) > MAX_NAME:
            raise ValueError(f"steer: a concept name is at most {MAX_NAME} characters")
        try:
            weight = float(raw)
        except ValueError:
            raise ValueError(f"steer: the weight of {name!r} must be a number, got {raw!r}") from None
        if not math.isfinite(weight) or abs(weight) > MAX_WEIGHT:
            raise ValueError(f"steer: the weight of {name!r} must be a finite number from "
                             f"{-MAX_WEIGHT:g} to {MAX_WEIGHT:g}, got {raw}")
        if any(name == seen for seen, _ in pairs):
            raise ValueError(f"steer: {name!r} is named twice")
        pairs.append((name, weight))
    if len(pairs) > MAX_STEERED:
        raise ValueError(f"steer: at most {MAX_STEERED} concepts per edit, got {len(pairs)}")
    return tuple(pairs)


def _number(x: float) -> str:
    """A bound in words: whole numbers in full (a seed's 2**63 - 1), others short (0.05)."""
    return str(x) if isinstance(x, int) else f"{x:g}"


@dataclass(frozen=True)
class Bounds:
    """The interval a number setting lies in; an open end leaves its own value out."""

    low: float
    high: float | None = None
    low_open: bool = False
    high_open: bool = False

    def __contains__(self, x: float) -> bool:
        above = x > self.low if self.low_open else x >= self.low
        below = self.high is None or (x < self.high if self.high_open else x <= self.high)
        return above and below

    def __str__(self) -> str:
        if self.high is None:
            return f"{'>' if self.low_open else '>='} {_number(self.low)}"
        if not (self.low_open or self.high_open):
            return f"from {_number(self.low)} to {_number(self.high)}"
        left, right = "(" if self.low_open else "[", ")" if self.high_open else "]"
        return f"in {left}{_number(self.low)}, {_number(self.high)}{right}"


@dataclass(frozen=True)
class Knob:
    """One SamplerSettings field as CLI flags, the page's dial and JSON see it."""

    name: str
    kind: type                       # int, float or str
    optional: bool                   # None is allowed: `none` says what it means (the dial shows 0)
    default: Any
    help: str
    none: str = ""
    choices: tuple[str, ...] = ()
    bounds: Bounds | None = None
    slider: tuple[float, float, float] | None = None  # the dial's (low, high, step); None: a number box

    def wants(self) -> str:
        """What a valid value is, in words: "a whole number >= 1 (or none)"."""
        what = f"one of {', '.join(self.choices)}" if self.choices else KINDS[self.kind]
        bounds = f" {self.bounds}" if self.bounds is not None else ""
        return what + bounds + (" (or none)" if self.optional else "")

    def check(self, value: Any) -> None:
        """Raise a ValueError saying what is wrong, unless `value` is valid for this field."""
        if value is None and self.optional:
            return
        if self.choices and isinstance(value, str) and value not in self.choices:
            raise ValueError(f"unknown {self.name} {value!r}; choose one of {', '.join(self.choices)}")
        # bool is an int in Python, but True is no count, seed or temperature.
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        typed = {int: number and isinstance(value, int), float: number, str: isinstance(value, str)}[self.kind]
        if not typed:
            raise ValueError(f"{self.name} must be {self.wants()}, got {value!r} ({type(value).__name__})")
        # Whole numbers are compared exactly (math.isfinite(10**400) would overflow).
        finite = isinstance(value, int) or (number and math.isfinite(value))
        if number and not (finite and (self.bounds is None or value in self.bounds)):
            raise ValueError(f"{self.name} must be {self.wants()}, got {value!r}")

    def from_text(self, text: str) -> Any:
        """A value typed on a command line: "none" for None, else read as this field's type."""
        if self.optional and text.strip().lower() == "none":
            return None
        try:
            return self.kind(text)
        except ValueError:
            raise ValueError(f"{self.name} must be {self.wants()}, got {text!r}") from None


def setting(default: Any, help: str, **about: Any) -> Any:
    """A SamplerSettings field: its default plus what Knob reads (help, none, choices, bounds, slider)."""
    return dataclasses.field(default=default, metadata={"help": help, **about})


@dataclass(frozen=True)
class SamplerSettings:
    """How a span is denoised. Validated once, here, against each field's Knob; the loop trusts it.

    Each field's help says what it does (`python -m engine infill --help` prints them all).
    """

    steps: int | None = setting(
        None, "most forwards the loop may run", bounds=Bounds(1, MAX_STEPS), slider=(0, 256, 1),
        none="one forward per tokens_per_step tokens to fill")
    tokens_per_step: int = setting(
        1, "with steps none, the budget is the tokens to fill / this, so it scales with the span "
        "(LLaDA's steps = length / k; 1 is LLaDA's best quality)", bounds=Bounds(1, MAX_SPAN_TOKENS), slider=(1, 16, 1))
    block_length: int | None = setting(
        None, "tokens per semi-autoregressive block inside each span (1: strictly left to right)",
        bounds=Bounds(1, MAX_SPAN_TOKENS), slider=(0, 64, 1), none="the whole span at once")
    strategy: str = setting(
        "threshold", "which positions to commit each step: low_confidence the most confident (LLaDA); "
        "random uniformly random ones (LLaDA's baseline); threshold the best one plus every one at "
        "least threshold sure (Fast-dLLM); entropy the lowest-entropy ones while their summed entropy "
        "minus the largest stays within entropy_bound (EB-sampler)", choices=STRATEGIES)
    threshold: float = setting(
        0.9, "with strategy threshold: commit every position at least this sure",
        bounds=Bounds(0, 1, low_open=True), slider=(0.05, 1.0, 0.05))
    entropy_bound: float = setting(
        0.1, "with strategy entropy: the EB-sampler's bound", bounds=Bounds(0, ENTROPY_CAP), slider=(0, 1, 0.01))
    temperature: float = setting(
        0.0, "0 takes the argmax; above 0 samples (Gumbel-max) at that temperature",
        bounds=Bounds(0, MAX_TEMPERATURE), slider=(0, 2, 0.05))
    seed: int = setting(0, "seeds the one torch.Generator every random draw goes through",
                        bounds=Bounds(0, 2**63 - 1))  # torch.Generator.manual_seed takes a signed 64-bit int
    remask_below: float | None = setting(
        None, "self-correction: each step, earlier commits less sure than this go back to undecided "
        "(at most as many as were committed that step)",
        bounds=Bounds(0, 1, low_open=True, high_open=True), slider=(0, 0.95, 0.05), none="off")
    candidates: int = setting(
        1, "alternatives of the same canvas denoised together in one batch", bounds=Bounds(1, MAX_CANDIDATES),
        slider=(1, 8, 1))
    candidate_temperature: float = setting(
        0.7, "with temperature 0 and more than one candidate: candidates 2.. sample at this "
        "temperature so that they differ, while candidate 1 stays the argmax (0: every candidate "
        "is the argmax, N identical copies)", bounds=Bounds(0, 2), slider=(0, 2, 0.05))
    alternatives: int = setting(
        5, "top-k alternatives recorded per committed position for the token inspector",
        bounds=Bounds(1, 20), slider=(1, 20, 1))
    cache: str = setting(
        "none", "none runs the whole canvas every forward; dual caches the context's keys and values "
        "and runs only the span slots between refreshes (Fast-dLLM DualCache; models without "
        "supports_cache run in full); delayed is dual that also stops running committed slots: their "
        "keys and values join the cached context one step after the commit (dKV-Cache)", choices=CACHES)
    refresh_every: int | None = setting(
        None, "with cache dual: recompute the context every this many steps", bounds=Bounds(1, MAX_STEPS),
        slider=(0, 64, 1), none="only at the start and when a span moves to its next block")
    context_window: int | None = setting(
        None, "tokens of context the model sees either side of the spans", bounds=Bounds(1, MAX_DOCUMENT_TOKENS),
        none="all")
    spacing: int = setting(
        1, "slots committed in the same forward stay at least this many positions apart while enough "
        "such slots are left (1: neighbours allowed; 2: no two neighbours), so neighbouring slots do "
        "not each pick the same likely token from their own marginal (\"the the\")",
        bounds=Bounds(1, 64), slider=(1, 8, 1))
    guide: float = setting(
        0.0, "frontier guide: at the first undecided slot, whose left is all decided, mix in a causal "
        "language model's next-token log-probs with this weight (product of experts: log p = "
        "log p_denoiser + guide * log p_causal); the bundled model's own base LM guides it, other "
        "families have none (0: off)", bounds=Bounds(0, 8), slider=(0, 4, 0.25))
    guidance: float = setting(
        0.0, "instruction edits: classifier-free guidance scale w (LLaDA's cfg_scale); each forward "
        "also runs the canvas without the instruction, packed with it, and the logits become "
        "uncond + (1 + w) (cond - uncond) (0: off, the instructed canvas alone; no effect without "
        "an instruction)", bounds=Bounds(0, MAX_GUIDANCE), slider=(0, 4, 0.25))
    correct_rounds: int = setting(
        3, "error correction: after the spans are filled, rounds in which what the checker rejects "
        "(a doubled word, a repetition loop, a broken word; code that does not parse) is re-masked "
        "with its least confident neighbours and denoised again (0: off; needs a checker, which the "
        "CLI, the service and the page bring for the document's language; 3: held-out Python "
        "parses 40% -> 88%, prose defects 18% -> 0%, docs/PERFORMANCE.md)",
        bounds=Bounds(0, 8), slider=(0, 6, 1))
    round_context: str = setting(
        "reread", "with cache dual or delayed, how a correction round sees the context: reread refreshes "
        "the cache with one full forward over the window; carry goes on from the cache the fill left "
        "(the text outside the span has not changed), so a round runs only span rows",
        choices=ROUND_CONTEXTS)
    scope: str = setting(
        "lines", "scope constraints: lines keeps an edit inside what its selection spanned (no line "
        "break in a selection inside one line, no blank line inside a paragraph); off lets a span "
        "write any token", choices=SCOPES)
    rough_margin: float = setting(
        0.5, "quality floor: a candidate whose window NLL (nats per token, base model) is worse "
        "than the original text's by more than this is marked rough and ranked after the rest "
        "(0.5: on held-out edits, only ones a reader would not keep lay past it, docs/PERFORMANCE.md)",
        bounds=Bounds(0, 100), slider=(0, 3, 0.1))
    steer: str = setting(
        "", "concept steering (models with named concepts: Steerling): NAME=WEIGHT pairs, comma-separated; "
        "each named concept's weight is set to WEIGHT wherever the model reads out, as the steerling "
        "package's steer_known/steer_unknown (a concept's own weight is 0..1: 2 amplifies, -1 suppresses; "
        "empty: off)")

    def __post_init__(self) -> None:
        for knob in knobs():
            knob.check(getattr(self, knob.name))
        parse_steer(self.steer)

    def replace(self, **changes: Any) -> SamplerSettings:
        """A copy with `changes`, validated again."""
        return dataclasses.replace(self, **changes)

    def with_values(self, values: Mapping[str, Any]) -> SamplerSettings:
        """A copy with user-supplied `values` by field name; unknown names and bad values are a
        ValueError that says which."""
        if not isinstance(values, Mapping):
            raise ValueError(f"settings must be an object of name: value, got {type(values).__name__}")
        known = {knob.name for knob in knobs()}
        unknown = sorted(str(name) for name in values if name not in known)
        if unknown:
            raise ValueError(f"unknown setting(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        return dataclasses.replace(self, **values)

    @classmethod
    def from_json(cls, values: Any) -> SamplerSettings:
        """Settings from a parsed JSON object (an API request's body): the defaults changed by
        `values`, null unsetting an optional field. Unknown names and wrong types are refused
        (`true` is not a number, "3" is not a whole number) with a ValueError that says which."""
        return cls().with_values(values)


@functools.cache
def knobs() -> tuple[Knob, ...]:
    """Every SamplerSettings field, in order, with its type, default and what `setting` says of it."""
    hints = typing.get_type_hints(SamplerSettings)
    out = []
    for f in dataclasses.fields(SamplerSettings):
        args = typing.get_args(hints[f.name])  # (int, NoneType) for `int | None`; () for `int`
        kind = next((a for a in args if a is not type(None)), hints[f.name])
        out.append(Knob(f.name, kind, type(None) in args, f.default, **f.metadata))
    return tuple(out)


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
    # Committed slots' rows join the cached context (delayed) and correction rounds go on from the
    # fill's cache (carry): 1.3x less CPU per benchmark edit at the same fluency (docs/PERFORMANCE.md).
    "fast": SamplerSettings(strategy="threshold", threshold=0.3, tokens_per_step=1, spacing=2,
                            cache="delayed", context_window=128, round_context="carry"),
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
    # `fast` with the frontier guide at weight 1, left to right: the default of models that have a
    # causal view (the bundled one); chosen in a blind reading (docs/MODEL.md, "Frontier guide").
    # Dual, not delayed: on held-out single-line Python delayed + carry parsed 90% after the rounds,
    # dual + carry 100% (the same edits as dual + reread, 7% less time); its spans are short, where
    # delayed saves little (docs/PERFORMANCE.md, "Correction rounds": the presets' caches).
    "guided": SamplerSettings(strategy="threshold", threshold=0.3, tokens_per_step=1, spacing=2,
                              cache="dual", context_window=128, round_context="carry", guide=1.0),
}
DEFAULT_PRESET = "fast"  # the default of models without a guide (docs/PERFORMANCE.md: why this one)
GUIDED_PRESET = "guided"  # the default of models with one (engine.guide.default_preset)


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
