"""What the page's buttons mean: selections to spans, syntax nodes, candidate checks and ranking.

No gradio here: errors are ValueError / EditorError with a message a person can act on; app.py
shows them in the page.
"""
from __future__ import annotations

import dataclasses
import itertools
import math
import time
from collections.abc import Collection
from contextlib import suppress
from dataclasses import dataclass, field
from html import escape
from typing import Any

from editor import prose
from editor.checks import findings
from editor.languages import get_language
from editor.structure import FUNCTIONS, NodeSpan, NoTarget, Structure
from editor.text import EditorError, check_document
from editor.validity import check_edit
from engine import Canvas, Constraint, SamplerSettings, Span, Step
from engine.budget import check_budget
from engine.instruct import read_instruction, with_instruction
from engine.length import Scorer, lengths_around
from engine.limits import MAX_SPAN_TOKENS
from engine.pins import lay_out
from engine.resize import resizes
from engine.template import DEFAULT_MARKER, holes

from .state import Page

LENGTH_MODES = ("auto", "keep", "N tokens", "pick")
PICK_SLACK = 1.25  # "pick": room to grow by a quarter; the model may end a span early with end-of-text
# What one run keeps for the scrubber. Past either bound, every other earlier step is dropped (the
# first and the last stay), so a session's memory is bounded whatever the span, steps or candidates.
MAX_STEPS_KEPT = 128
MAX_RUN_BYTES = 16 * 2**20


@dataclass(frozen=True)
class Problem:
    """What is wrong with a candidate: it does not parse, or it parses but the edited node changed kind."""

    parses: bool
    message: str                     # in words: "does not parse at line 14", "changes a statement into a call"
    detail: str = ""                 # the parser's own words, for a tooltip: "line 14:9 syntax error: ..."
    rough: bool = True               # fails the checks (a kind change alone does not)

    def __str__(self) -> str:
        return self.message


_RUN_NUMBERS = itertools.count(1)


@dataclass
class Run:
    """One regeneration: what it started from and every step the engine yielded (kept server side)."""

    canvas: Canvas
    base_text: str
    span: tuple[int, int]            # characters [start, end) of base_text that were regenerated
    language: str
    document: Any = None             # the document's id (None: not stored yet)
    base_revision: Any = None        # the revision the edit started from (None: unsaved document)
    kind: str | None = None          # syntax node kind for the syntax-node action
    settings: SamplerSettings = field(default_factory=SamplerSettings)
    steps: list[Step] = field(default_factory=list)
    problems: list[Problem | None] = field(default_factory=list)  # per candidate: None is fine
    scores: list[float | None] = field(default_factory=list)  # per candidate: window NLL, None unscored
    order: list[int] = field(default_factory=list)            # candidates best first (rank_candidates)
    rough: list[bool] = field(default_factory=list)           # per candidate: below the quality floor
    original_score: float | None = None                       # the original text's window NLL
    streamed: bool = False  # a hosted model's text, streamed: no forwards, confidences or rounds to speak of
    stopped: bool = False  # Stop was handled: the run yields no step after it (it would land after "stopped")
    aside: Run | None = None  # the finished run this one replaced, its candidates still to be had (one deep)
    model: str = ""  # the label of the model that ran it (the picker may swap another in before Accept)
    started: float = field(default_factory=time.monotonic)  # when it was asked for: "auto" runs several
    # trials and checks come after the loop, so the person's wait is longer than any step's own clock
    number: int = field(default_factory=lambda: next(_RUN_NUMBERS))  # tells the editor a new run began

    @property
    def last(self) -> Step | None:
        return self.steps[-1] if self.steps else None

    @property
    def offered(self) -> bool:
        """Finished, checked and ranked: its candidates are on offer until accepted or rejected."""
        return self.last is not None and self.last.done and bool(self.order)

    def record(self, step: Step) -> None:
        """Keep `step` for the scrubber: documents only on the last step (the views draw the others
        from their span slots), and within MAX_STEPS_KEPT / MAX_RUN_BYTES."""
        if self.steps:
            self.steps[-1] = dataclasses.replace(self.steps[-1], texts=())
        self.steps.append(step)
        while len(self.steps) > 2 and (len(self.steps) > MAX_STEPS_KEPT
                                       or sum(s.nbytes for s in self.steps) > MAX_RUN_BYTES):
            self.steps = self.steps[:-1:2] + self.steps[-1:]

    def result(self, candidate: int) -> str:
        """The finished document of one candidate."""
        step = self.last
        if step is None or not step.done:
            raise ValueError("this run did not finish; regenerate again")
        if not 0 <= candidate < len(step.texts):
            raise ValueError(f"there is no candidate {candidate + 1}")
        return step.texts[candidate]

    def new_span(self, candidate: int) -> tuple[int, int]:
        """Where the regenerated span lies in a candidate: text outside spans comes back unchanged.
        With several spans, `span` covers them all (the text between them is kept, so the checks,
        the score and the diff read the edit as one)."""
        after = self.result(candidate)
        return self.span[0], len(after) - (len(self.base_text) - self.span[1])

    def new_spans(self, candidate: int) -> list[tuple[int, int]]:
        """Where each regenerated span lies in a candidate (one revision records them all)."""
        if self.canvas is None or len(self.canvas.spans) < 2 or self.last is None:
            return [self.new_span(candidate)]
        return self.canvas.placed(self.last.tokens[candidate])


def page_document(text: Any) -> str:
    """The document the page sent, checked as an opened file is: text, no NUL, valid Unicode, not too large."""
    if text is None:
        raise EditorError("There is no document: type or open one first.")
    if not isinstance(text, str):
        raise EditorError(f"The document must be text, not {type(text).__name__}.")
    return check_document(text)


def span_length(codec: Any, original: str, mode: str, n: Any) -> int | None:
    """Tokens to generate: keep the span's count, exactly N, or let the engine pick (original + slack).
    "auto" starts as "keep" (N for an empty span); `auto_lengths` says which lengths the model tries."""
    if mode not in LENGTH_MODES:
        raise ValueError(f"unknown length mode {mode!r}; choose one of {', '.join(LENGTH_MODES)}")
    if mode == "N tokens" or not original:
        return token_count(n)
    if mode in ("keep", "auto"):
        return None
    return max(1, math.ceil(PICK_SLACK * len(codec.encode(original))))


def token_count(n: Any) -> int:
    """The "N tokens" box's value as a length, refused (ValueError) unless a whole number from 1 to
    the longest span (engine.limits), whatever the browser sent ("abc", None, 1e308, inf)."""
    try:
        number = float(n)  # a str from the REST API, a float from the box
    except (TypeError, ValueError):
        number = math.nan
    if isinstance(n, bool) or not (number.is_integer() and 1 <= number <= MAX_SPAN_TOKENS):
        raise ValueError(f"N tokens must be a whole number from 1 to {MAX_SPAN_TOKENS:,}, got {n!r}")
    return int(number)


def auto_lengths(codec: Any, original: str, mode: str, score: Scorer | None,
                 resizing: bool = False) -> tuple[int, ...]:
    """The lengths "auto" tries around the original's token count (engine.length.lengths_around;
    `resizing`: the model grows and shrinks the span itself, one start); none (the span's own
    length stands: "keep") for other modes or without a scorer."""
    if mode != "auto" or score is None:
        return ()
    return lengths_around(len(codec.encode(original)) if original else 0, resizing)


def length_note(tried: list[tuple[int, float]], chosen: int, resizing: bool = False) -> str:
    """What "auto" chose, for the page's message, in words; each length tried with its window NLL (the
    base model's loss per token: lower reads better) in a tooltip. For a model that resizes spans
    itself (DreamOn), the length it ended at."""
    if resizing:
        return f"The model grew or shrank the span to {chosen} tokens. "
    scores = ", ".join(f"{n} tokens: {s:.2f}" for n, s in tried)
    tip = escape(f"Lengths tried, with the base model's loss over the text around the span, normalised "
                 f"by length (engine.length.length_score; lower reads better): {scores}")
    tokens = "1 token" if chosen == 1 else f"{chosen} tokens"
    return f'<span class="sh-tip" title="{tip}">{tokens} fitted best</span> of {len(tried)} lengths tried. '


# Syntax node kinds as people say them, where dropping the generic words is not enough.
KIND_WORDS = {"identifier": "name", "block": "block of statements", "inc statement": "increment",
              "dec statement": "decrement", "short var": "variable declaration", "var": "variable declaration"}
GENERIC_KIND_WORDS = ("expression", "definition", "declaration", "item", "literal")


def kind_words(kind: str) -> str:
    """A syntax node's kind as people say it: "expression_statement" -> "statement", "call_expression"
    -> "call", "function_definition" -> "function", "return_statement" -> "return statement"."""
    words = kind.replace("_", " ").split()
    plain = " ".join([w for w in words if w not in GENERIC_KIND_WORDS] or words)
    return KIND_WORDS.get(plain, plain)


def with_article(words: str) -> str:
    """"an assignment", "a call"."""
    return f"{'an' if words[:1].lower() in tuple('aeiou') else 'a'} {words}"


@dataclass(frozen=True)
class Pins:
    """The constraint row: text the new span starts with, text it ends with, and text it must include
    where the model finds it most likely (engine.pins: every place tried in one batch)."""

    starts: str = ""
    ends: str = ""
    include: str = ""

    @classmethod
    def of(cls, starts: Any, ends: Any = "", include: Any = "") -> Pins:
        for name, value in (("starts with", starts), ("ends with", ends), ("must include", include)):
            if value is not None and not isinstance(value, str):
                raise ValueError(f"'{name}' must be text, got {type(value).__name__}")
        return cls(starts or "", ends or "", include or "")

    @property
    def constraints(self) -> tuple[Constraint, ...]:
        pinned = ((self.starts, "start"), (self.ends, "end"), (self.include, "anywhere"))
        return tuple(Constraint(text, 0, anchor) for text, anchor in pinned if text)


def make_span(codec: Any, text: str, start: int, end: int, mode: str, n: Any, pins: Pins | str = "") -> Span:
    """The engine span for characters [start, end) with the chosen length and optional pinned words."""
    pins = Pins(pins) if isinstance(pins, str) else pins
    return Span(start, end, span_length(codec, text[start:end], mode, n), pins.constraints)


def syntax_node(text: str, language: str, start: int, end: int) -> NodeSpan:
    """The smallest syntax node around a selection; a function gives its body (the signature and a
    docstring are its spec and stay); for prose, the sentence around the cursor."""
    info = get_language(language)
    if info.module is None or info.prose:
        return prose.prose_span(text, start, "sentence")
    st = Structure(text, info.name)
    node = st.enclosing(start, end)
    if node.kind in FUNCTIONS:
        with suppress(NoTarget):  # a signature without a body is regenerated whole
            return st.target("function body", node.start, node.end)
    return node


def move_node(text: str, language: str, start: int, end: int, direction: str,
              toward: int | None = None) -> NodeSpan | None:
    """Expand the selection to the next larger node or shrink it to the next smaller one around
    `toward` (the cursor Expand started from; default the selection's start); in prose the nodes
    are words, sentences, paragraphs and (Markdown) sections."""
    info = get_language(language)
    if info.module is None or info.prose:
        units = prose.UNITS if info.name == "markdown" else prose.UNITS[:3]
        if direction == "expand":
            return prose.expand(text, start, end, units)
        return prose.shrink(text, start, end, units, toward)
    st = Structure(text, info.name)
    return st.expand(start, end) if direction == "expand" else st.shrink(start, end, toward)


def check_candidates(run: Run, words: Collection[str] = ()) -> list[Problem | None]:
    """Per candidate: None if it parses and keeps the edited node's kind (code) or reads clean
    (prose), else what is wrong: the first new syntax error (line and column in the document; for
    Python, its own compiler has the last word), the change of kind, or the prose defects
    (editor.defects; `words`: real words for its broken-word test)."""
    info = get_language(run.language)
    if run.last is None or not run.last.done:
        return [None] * (len(run.last.texts) if run.last is not None else 0)
    out: list[Problem | None] = []
    for b in range(len(run.last.texts)):
        if info.module is None or info.prose:
            found = findings(info.name, run.base_text, run.result(b), run.span, run.new_span(b), words)
            kinds = sorted({f.kind for f in found})
            out.append(Problem(True, f"has a {' and a '.join(kinds)}", "; ".join(kinds)) if found else None)
            continue
        result = check_edit(run.base_text, run.result(b), info.name, run.span, run.new_span(b), run.kind)
        if result.ok:
            out.append(None)
        elif result.error is not None:
            e = result.error
            out.append(Problem(False, f"does not parse at line {e.line}", f"line {e.line}:{e.column} {e.message}"))
        else:
            before, after = kind_words(result.before_kind or "?"), kind_words(result.after_kind or "?")
            change = (f"changes {with_article(before)} into {with_article(after)}" if before != after
                      else f"reshapes the {before}")
            out.append(Problem(True, change, f"{result.before_kind} became {result.after_kind}", rough=False))
    return out


def rank_candidates(run: Run, score: Scorer | None) -> None:
    """Score each finished candidate once (one causal forward over its window: the span and
    engine.codec.SIDE tokens either side) and order them best first. The quality floor first: a
    candidate is rough when it still fails the checks (`run.problems`) or its window NLL is worse
    than the original text's by more than `settings.rough_margin`; rough ones go last. Then
    candidates that parse and keep the node's kind (or read clean), then those that change its kind
    (or have prose defects), then those that do not parse; within each, lower NLL first. Without a
    scorer (a model with no causal view) the loop's order stands within each group and no score is shown.
    A candidate whose text repeats a better-ranked one is left out of the order: each text once."""
    n = len(run.problems)
    run.scores = [score(run.result(i), *run.new_span(i)) if score is not None else None for i in range(n)]
    run.original_score = score(run.base_text, *run.span) if score is not None and n else None
    base, margin = run.original_score, run.settings.rough_margin
    run.rough = [bool(p and p.rough) or (s is not None and base is not None and s - base > margin)
                 for p, s in zip(run.problems, run.scores)]

    def key(i: int) -> tuple[bool, int, float]:
        s, problem = run.scores[i], run.problems[i]
        group = 0 if problem is None else 1 if problem.parses else 2
        return run.rough[i], group, math.inf if s is None or math.isnan(s) else s
    seen: set[str] = set()
    run.order = []
    for i in sorted(range(n), key=key):
        if run.result(i) not in seen:
            seen.add(run.result(i))
            run.order.append(i)


@dataclass(frozen=True)
class RunPlan:
    """A regeneration as asked for, checked: the document, the span, its length(s), the settings."""

    text: str
    start: int
    end: int
    kind: str | None          # the syntax node's kind for "node"
    span: Span                # the first span; [start, end) covers every span (text between them is kept)
    lengths: tuple[int, ...]  # "auto": the lengths to try first; else none
    settings: SamplerSettings
    others: tuple[Span, ...] = ()  # several selections, or a template's holes: the spans after the first
    instruction: str | None = None  # an instruction edit's (engine/instruct.py); None: a plain regeneration
    note: str = ""  # what the page says of the plan before the run: "auto" that kept the span's length, and why


def plan_run(page: Page, action: str, text: str, a: int, b: int, language: str, mode: str, n: Any,
             pins: Pins | str, settings: SamplerSettings, ranges: tuple[tuple[int, int], ...] = (),
             instruction: str | None = None) -> RunPlan:
    """A regenerate action on the selection [a, b) (code points) as a checked `RunPlan` (EditorError /
    ValueError say what is wrong); the widest canvas it may build is checked against the per-request
    budget. "selection_or_fill" (the editor's Ctrl/Cmd+Enter) is the selection, or fill at the cursor.
    Several selections (`ranges`) are several spans of one run; "holes" fills a template's holes.
    `instruction`: an instruction edit's (blank: none)."""
    model = page.model
    text = page_document(text)
    instruction = read_instruction(instruction)
    kind = None
    pins = Pins(pins) if isinstance(pins, str) else pins
    if action == "holes" or (action in ("selection", "selection_or_fill") and len(ranges) > 1):
        return plan_spans(page, text, several(text, action, ranges, mode, n), mode, n, pins, settings, instruction)
    if action == "selection_or_fill":
        action = "selection" if a < b else "fill"
    if action == "selection" and a == b:
        raise EditorError("Select some text in the document first (or use Fill at cursor).")
    if action == "node":
        node = syntax_node(text, language, a, b)
        a, b, kind = node.start, node.end, node.kind
    if action == "fill":
        a = b
        mode = mode if mode == "auto" else "N tokens"
    span = make_span(model.codec, text, a, b, mode, n, pins)
    # "auto" tries lengths one canvas each; a word the model places has its own canvas per place.
    lengths = () if pins.include else auto_lengths(model.codec, text[a:b], mode, page.score, resizes(model))
    # "auto": each tried length is one run of at most the longest one's cost; that one is checked.
    widest = dataclasses.replace(span, length=max(lengths)) if lengths else span
    check_run_budget(page, text, [widest], settings, instruction)
    kept = ("a word the model places tries each place instead" if pins.include
            else "the page has no base model here to score lengths with")
    note = auto_kept(kept) if mode == "auto" and not lengths else ""
    return RunPlan(text, a, b, kind, span, lengths, settings, (), instruction, note)


def auto_kept(why: str) -> str:
    """The message when "auto" length could not try lengths and kept the span's own."""
    return f'"auto" length kept each span\'s length ({why}). '



def several(text: str, action: str, ranges: tuple[tuple[int, int], ...], mode: str,
            n: Any) -> list[tuple[int, int, Any]]:
    """[start, end, length or None] of each span of a run over several places: a template's holes
    (engine.template; "N tokens" sets an empty hole's length) or the selections."""
    if action != "holes":
        return [(a, b, None) for a, b in ranges]
    try:
        found = holes(text, DEFAULT_MARKER, token_count(n) if mode == "N tokens" else None)
    except ValueError as err:
        words = str(err).removeprefix('"template": ')
        raise EditorError(f"Fill holes: {words}.") from None
    return [(s.start, s.end, s.length) for s in found]


def plan_spans(page: Page, text: str, places: list[tuple[int, int, Any]], mode: str, n: Any, pins: Pins,
               settings: SamplerSettings, instruction: str | None = None) -> RunPlan:
    """A run over several spans (each keeps its length, or the one given), the pinned words in the first."""
    codec = page.model.codec
    fixed = "N tokens" if mode == "N tokens" else "keep"  # "auto" tries lengths for one span at a time
    spans = [Span(a, b, length) if length is not None else make_span(codec, text, a, b, fixed, n)
             for a, b, length in places]
    spans[0] = dataclasses.replace(spans[0], constraints=pins.constraints)
    check_run_budget(page, text, spans, settings, instruction)
    note = auto_kept("it tries lengths for one span at a time") if mode == "auto" else ""
    return RunPlan(text, spans[0].start, spans[-1].end, None, spans[0], (), settings, tuple(spans[1:]), instruction,
                   note)


def check_run_budget(page: Page, text: str, spans: list[Span], settings: SamplerSettings,
                     instruction: str | None = None) -> None:
    """The run's canvas (one row per place of a word the model places; the instruction laid out
    around it) within the per-request budget."""
    model = page.model
    canvas, laid = lay_out(model.codec, text, spans, settings, model.max_length)
    check_budget(laid, with_instruction(canvas, instruction, model.max_length), page.limits.budget)
