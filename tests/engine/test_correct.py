"""Correction rounds (engine.correct) and scope constraints (engine.scope) on the trained fixture
model: further runs of the one loop that redo only what the checker names."""
import inspect
import math
import re
import textwrap
from pathlib import Path

import pytest
import torch

from editor.checks import checker_for, findings
from engine import SamplerSettings, Span, build_canvas, load_model
from engine.correct import CorrectingInfill, corrected, up_to
from engine.loop import run
from engine.scheduler import Scheduler
from engine.scope import starting_with, token_texts, word_start

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "tiny-dream"
SOURCE = inspect.getsource(textwrap)
# Whole top-level functions of textwrap (they compile alone), and their one-line statements.
FUNCTIONS = [m.group() for m in re.finditer(r"^def \w+\(.*?(?=^\S)", SOURCE, re.M | re.S)]
LINES = [(f, m.start(1), m.end(1)) for f in FUNCTIONS
         for m in re.finditer(r"^ {4,}([a-z_][^\n#'\"]{8,50})$", f, re.M)]


@pytest.fixture(scope="module")
def model():
    torch.set_num_threads(1)
    return load_model(str(FIXTURE), device="cpu")


def edit(model, text, a, b, checker=None, **settings):
    canvas = build_canvas(model.codec, text, [Span(a, b)], model.max_length)
    steps = list(corrected(model, canvas, SamplerSettings(**settings), checker))
    start, end = canvas.placed(steps[-1].tokens[0])[0]
    return steps, steps[-1].texts[0], (start, end)


def test_a_selection_inside_one_line_gets_no_line_break(model):
    cases = LINES[:12]
    off = [edit(model, t, a, b, scope="off", correct_rounds=0) for t, a, b in cases]
    on = [edit(model, t, a, b, correct_rounds=0) for t, a, b in cases]
    assert any("\n" in doc[s:e] for _, doc, (s, e) in off)  # unconstrained, the model breaks lines
    assert not any("\n" in doc[s:e] for _, doc, (s, e) in on)


def test_a_round_redoes_only_the_slots_the_checker_names_and_their_neighbour(model):
    text, a, b = LINES[3]
    first, doc, (s, e) = edit(model, text, a, b, correct_rounds=0)
    target = s + (e - s) // 2  # name one character in the middle of the new text

    def checker(before, after, span, new_span):
        return [(target, target + 1)] if after == doc else []
    steps, fixed, _ = edit(model, text, a, b, checker, correct_rounds=2)
    assert [x.round for x in steps[:len(first)]] == [0] * len(first)
    assert steps[len(first) - 1].texts == first[-1].texts  # round 0 is the uncorrected run
    again = [x for x in steps if x.round == 1]
    assert again and all(x.round <= 1 for x in steps)  # the redone text passes: no second round
    assert [x.index for x in steps] == list(range(len(steps)))  # one run, numbered on
    redone = (steps[len(first) - 1].tokens != steps[-1].tokens)[0]
    undecided = again[0].masked[0]
    assert 1 <= int(undecided.sum()) <= 3  # the named slot(s) and one neighbour
    assert not redone[~undecided].any()   # every other slot kept its token
    assert fixed != doc and redone.any()  # the named token was banned: it changed


def test_a_corrected_run_repairs_code_an_uncorrected_run_leaves_broken(model):
    check = checker_for("python")
    broken = {0: [], 2: []}
    for text, a, b in LINES[:16]:
        for rounds in (0, 2):
            _, doc, place = edit(model, text, a, b, check, correct_rounds=rounds)
            broken[rounds].append(bool(findings("python", text, doc, (a, b), place)))
    repaired = sum(x and not y for x, y in zip(broken[0], broken[2]))
    assert repaired >= 2 and sum(broken[2]) < sum(broken[0])


def test_same_seed_same_corrected_output(model):
    text, a, b = LINES[5]
    check = checker_for("python")
    assert edit(model, text, a, b, check)[1] == edit(model, text, a, b, check)[1]


def test_a_checker_that_fails_leaves_the_edit_uncorrected_and_says_so(model):
    text, a, b = LINES[2]

    def broken(*args):
        raise UnicodeError("cannot read this")
    canvas = build_canvas(model.codec, text, [Span(a, b)], model.max_length)
    runner = CorrectingInfill(model, canvas, SamplerSettings(), broken)
    last = run(runner)
    assert last.texts[0] == edit(model, text, a, b, correct_rounds=0)[1]
    assert runner.failures and "cannot read this" in runner.failures[0] and last.round == 0


def test_rounds_run_through_the_scheduler_as_they_do_alone(model):
    text, a, b = LINES[0]
    check = checker_for("python")
    canvas = build_canvas(model.codec, text, [Span(a, b)], model.max_length)
    alone = list(corrected(model, canvas, SamplerSettings(), check))
    with Scheduler(model, max_batch=2) as scheduler:
        shared = list(scheduler.submit(canvas, SamplerSettings(), check))
    assert [s.texts for s in shared] == [s.texts for s in alone]
    assert [s.round for s in shared] == [s.round for s in alone]


@pytest.mark.parametrize("name, value, words", [
    ("correct_rounds", -1, "correct_rounds must be a whole number from 0 to 8"),
    ("rough_margin", math.nan, "rough_margin must be a finite number"),
    ("scope", "words", "unknown scope 'words'"),
])
def test_bad_correction_settings_are_refused_naming_the_setting(name, value, words):
    with pytest.raises(ValueError, match=re.escape(words)):
        SamplerSettings(**{name: value})


def test_words_a_checker_names_are_banned_at_its_slot_not_only_the_token_the_slot_had(model):
    text, a, b = LINES[0]
    first, doc, (s, e) = edit(model, text, a, b, correct_rounds=0)
    texts = token_texts(model.codec, model.vocab_size)
    words = [re.match(r"\s*(\w*)", texts[i]).group(1) for i in first[-1].top_ids[0, 0].tolist()]
    liked = frozenset(w for w in words if w)  # the words the first slot liked best ("return", "if", "def")
    assert words[0] in liked and len(liked) >= 2  # banning only the one it took would leave the others

    def checker(before, after, span, new_span):
        return [(s, s + 1, liked)] if after == doc else []
    steps, fixed, (s2, _) = edit(model, text, a, b, checker, correct_rounds=1)
    assert steps[-1].round == 1 and fixed != doc
    assert re.match(r"\s*(\w*)", fixed[s2:]).group(1) not in liked


def test_the_ids_a_word_ban_covers_begin_with_the_word_as_a_whole_word(model):
    texts = token_texts(model.codec, model.vocab_size)
    ids = starting_with(model.codec, model.vocab_size, frozenset({"for", "if"})).nonzero().flatten()
    banned = {texts[i] for i in ids.tolist()}
    assert " for" in banned and "if" in banned
    assert not any(t.strip().startswith(("format", "ifn", "iff")) for t in banned)
    assert not starting_with(model.codec, model.vocab_size, frozenset()).any()
    starts = word_start(frozenset({"for", "#"}))
    assert starts.match("\tfor") and starts.match(" for(") and not starts.match(" format")
    assert starts.match("#include") and starts.match(" ##")  # a mark has no word boundary


def test_a_word_ban_covers_its_span_from_the_start_to_the_named_slot():
    named = torch.tensor([False, False, False, True, False, False])  # spans: slots 0-1 and 2-5
    assert up_to(named, (2, 6)).tolist() == [False, False, True, True, False, False]
    assert not up_to(named, (0, 2)).any()
