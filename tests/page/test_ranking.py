"""Candidates come ranked, best first: those that parse before those that do not, then by the base
model's likelihood of the window around the edit (`DiffusionLM.fluency`)."""
from pathlib import Path

import pytest

from page.actions import rank_candidates
from tests.page.helpers import finished

CODE = "def f(x):\n    return x + 1\n"
START, END = CODE.index("x + 1"), CODE.index("x + 1") + len("x + 1")
TINY_DREAM = Path(__file__).resolve().parents[1] / "fixtures" / "tiny-dream"


def test_a_parsing_more_likely_candidate_comes_first_and_broken_code_last():
    run = finished(CODE, (START, END), ["x + 1", "x +", "x * 2"])
    nll = {"x + 1": 2.0, "x +": 0.5, "x * 2": 1.0}  # the broken one is the likeliest: it still goes last
    seen = []

    def score(document: str, start: int, end: int) -> float:
        seen.append((document, start, end))
        return nll[document[start:end]]
    rank_candidates(run, score)
    assert run.problems[1] is not None and run.problems[0] is None and run.problems[2] is None
    assert run.order == [2, 0, 1] and run.scores == [2.0, 0.5, 1.0]
    assert len(seen) == 4  # one score per candidate, each on its own document and span, and the original's
    assert [d[s:e] for d, s, e in seen] == ["x + 1", "x +", "x * 2", "x + 1"] and seen[3][0] == CODE


def test_without_a_scorer_the_loop_order_stands_and_no_score_is_shown():
    run = finished(CODE, (START, END), ["x +", "x * 2", "x + 1"])
    rank_candidates(run, None)
    assert run.order == [1, 2, 0] and run.scores == [None, None, None]


def test_prose_is_ranked_by_likelihood_alone():
    text = "The keeper climbed the stairs."
    a, b = text.index("keeper"), text.index("keeper") + len("keeper")
    run = finished(text, (a, b), ["man", "woman", "cat"], language="text")
    rank_candidates(run, lambda d, s, e: {"keeper": 2.5, "man": 3.0, "woman": 1.0, "cat": 2.0}[d[s:e]])
    assert run.order == [1, 2, 0] and not any(run.rough)


def test_a_candidate_far_less_fluent_than_the_original_is_rough_and_ranked_after_the_rest():
    """The quality floor: a parsing candidate whose window NLL is worse than the original's by more
    than rough_margin goes after one that changes the node's kind but reads as well as the original."""
    from page.runs import candidate_label
    code = "def f(x):\n    print(x + 1)\n    return x\n"
    a = code.index("x + 1")
    run = finished(code, (a, a + 5), ["x - 1", "len(x)"])
    margin = run.settings.rough_margin
    rank_candidates(run, lambda d, s, e: {"x + 1": 1.0, "x - 1": 1.0 + margin + 0.1, "len(x)": 1.2}[d[s:e]])
    assert run.rough == [True, False] and run.order == [1, 0]
    assert "rough" in candidate_label(run, 0) and "rough" not in candidate_label(run, 1)


def test_when_every_candidate_is_rough_the_page_says_so_in_plain_words():
    from page.runs import verdict
    text = "The keeper climbed the stairs."
    a, b = text.index("keeper"), text.index("keeper") + len("keeper")
    run = finished(text, (a, b), ["man man", "cat"], language="text")
    rank_candidates(run, lambda d, s, e: {"keeper": 1.0, "man man": 1.0, "cat": 5.0}[d[s:e]])
    assert run.problems[0] is not None and "doubled word" in str(run.problems[0])
    assert run.rough == [True, True] and "None of the candidates is good enough" in verdict(run)
    run.rough = [True, False]
    assert "Pick a candidate" in verdict(run)


@pytest.mark.slow
def test_the_trained_fixture_prefers_code_to_noise_in_its_window():
    """The scorer the page uses by default (DiffusionLM.fluency) on a real shifted-head model."""
    from engine import load_model

    fluency = load_model(str(TINY_DREAM), device="cpu").fluency()
    assert fluency is not None
    run = finished(CODE, (START, END), ["zqj ^ Wk", "x + 1"])  # both parse
    rank_candidates(run, fluency.window_nll)
    assert run.order == [1, 0] and run.scores[1] < run.scores[0]


def test_a_candidate_that_parses_but_changes_kind_is_not_called_broken():
    """`x + 1` (an expression) became `x = 1` (an assignment): it parses, so the label says the kind
    changed, and only a candidate that really does not parse says "does not parse"."""
    from page.runs import candidate_label
    code = "def f(x):\n    print(x + 1)\n    return x\n"
    a = code.index("x + 1")
    run = finished(code, (a, a + 5), ["x - 1", "len(x)", "x +"])
    labels = [candidate_label(run, i) for i in range(3)]
    assert "does not parse" not in labels[0] and "does not parse" not in labels[1]
    # in words a programmer reads; the parser's own words are kept for the tooltip
    assert "changes a binary operator into a call" in labels[1] and "does not parse at line 2" in labels[2]
    assert "binary_operator became call" in run.problems[1].detail and "line 2:" in run.problems[2].detail
    assert run.problems[1].parses and not run.problems[2].parses


def test_a_candidate_that_repeats_a_better_one_is_listed_once():
    text = "The keeper climbed the stairs."
    a, b = text.index("keeper"), text.index("keeper") + len("keeper")
    run = finished(text, (a, b), ["man", "cat", "man"], language="text")
    rank_candidates(run, lambda d, s, e: {"man": 3.0, "cat": 1.0}.get(d[s:e], 3.0))  # the original: keeper
    assert run.order == [1, 0]


def test_the_page_offers_distinct_candidates_each_beside_the_original():
    """A model as sure as the bundled one is of a short phrase: at candidate temperature 0.7 its
    candidates 2.. mostly repeat candidate 1. The page draws repeats again, lists 3 distinct texts,
    and shows each as an inline diff against the original (old struck through, new inserted)."""
    import torch

    from editor.history import History
    from engine import PRESETS, TextCodec
    from page import runs
    from page.dial import dial_values
    from page.document_editor import EditorValue
    from page.state import NEW_DOC, Page
    from tests.tiny import ScriptedModel, byte_bpe_tokenizer

    codec = TextCodec.from_tokenizer(byte_bpe_tokenizer(bos=True))
    text = "The keeper climbed the stairs to tend the light.\n"
    a, b = text.index("climbed"), text.index("climbed") + len("climbed")
    length = len(codec.encode(text)) + 16
    allowed = [i for i in range(len(codec.tokenizer)) if i not in codec.banned_ids]
    target = torch.tensor(allowed)[torch.randint(len(allowed), (length,), generator=torch.Generator().manual_seed(3))]
    model = ScriptedModel(codec, target, torch.full((length,), 0.5))
    page = Page.for_model(model, History("sqlite://"), scorer=lambda d, s, e: float(len(d[s:e])))
    dial = dial_values(PRESETS["quality"].replace(candidates=3, candidate_temperature=0.7))
    outputs = list(runs.regenerate(page, "selection", EditorValue(text, a, b), NEW_DOC, "text", "N tokens", 2, "",
                                   "", "", False, *dial))
    view, run, radio = outputs[-1][0], outputs[-1][2], outputs[-1][4]
    assert len(run.order) == 3 and len({run.result(i) for i in run.order}) == 3
    assert len(radio["choices"]) == 3
    assert view.count('<li class="sh-candidate') == 3 and "<del>climbed</del>" in view and view.count("<ins>") >= 3


def test_a_candidate_says_in_words_how_it_reads_beside_the_original_with_the_figures_in_a_tooltip():
    """No "NLL 3.72" in what a writer reads: each candidate reads better than, like, or worse than
    the original text; the base model's figures stay in the note's tooltip."""
    from page.runs import candidate_label, reads
    text = "The keeper climbed the stairs."
    a, b = text.index("keeper"), text.index("keeper") + len("keeper")
    run = finished(text, (a, b), ["man", "woman", "cat"], language="text")
    rank_candidates(run, lambda d, s, e: {"keeper": 2.5, "man": 2.55, "woman": 1.0, "cat": 2.9}[d[s:e]])
    labels = [candidate_label(run, i) for i in range(3)]
    assert "reads like yours" in labels[0] and "reads better than yours" in labels[1], labels
    assert "reads worse than yours" in labels[2] and not any("NLL" in label for label in labels), labels
    words, detail = reads(run, 2)
    assert "2.90" in detail and "2.50" in detail and "NLL" in detail


def test_a_change_of_node_kind_is_said_as_a_programmer_says_it():
    from page.actions import kind_words
    from page.runs import candidate_label
    code = "def f(self, width):\n    self.width = width\n"
    a = code.index("self.width = width")
    run = finished(code, (a, a + len("self.width = width")), ["self.max_lines"], kind="assignment")
    assert "changes an assignment into an attribute" in candidate_label(run, 0)
    assert kind_words("return_statement") == "return statement" and kind_words("inc_statement") == "increment"
    assert kind_words("expression_statement") == "statement" and kind_words("call_expression") == "call"
