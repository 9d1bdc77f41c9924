"""Accepting a run, called as the page calls its handlers: buttons that can act, confirmation for code
that does not parse, visible branches, and nothing of one run left in the next."""
import pytest

from page import runs, views
from page.document_editor import EditorValue
from page.state import NEW_DOC, Doc
from tests.page.helpers import args, finished, scripted_page

TEXT = "The quick brown fox jumps over the lazy dog."
CODE = "def f(x):\n    return x + 1\n"
# The outputs of a regeneration (outputs.run_outputs, then the message) and of an accept
# (the text, outputs.document_outputs, the run panel, the message, the confirmation row).
LIVE, METRICS, RUN, INSPECTOR, ACCEPT, BRANCH, REJECT, STOP = 0, 1, 2, 5, 6, 7, 8, 9
DOC_WIDTH = 1 + 15  # the text and document_outputs
TREE = 2


@pytest.fixture
def page():
    yield from scripted_page()


def regenerate(page, doc=NEW_DOC, text=TEXT, a=4, b=15, previous=None):
    _, language, *rest = args(text, a, b, candidates=2)
    return list(runs.regenerate(page, "selection", EditorValue(text, a, b), doc, language, *rest, previous=previous))


def interactive(update) -> bool:
    return update["interactive"]


def button_states(updates, index):
    """Whether a button is enabled after each update, as the page applies them (an update without
    `interactive` leaves it as it was)."""
    states, state = [], None
    for update in updates:
        state = update[index].get("interactive", state)
        states.append(state)
    return states


def run_panel(outputs):
    """The run panel in an accept's outputs."""
    return outputs[DOC_WIDTH:DOC_WIDTH + 10]


def test_accept_reject_and_stop_are_enabled_only_when_they_can_act(page):
    updates = regenerate(page)
    for button in (ACCEPT, BRANCH, REJECT):
        assert button_states(updates, button) == [False] * (len(updates) - 1) + [True]
    assert button_states(updates, STOP) == [True] * (len(updates) - 1) + [False]
    done = updates[-1]
    assert interactive(done[ACCEPT]) and interactive(done[BRANCH]) and interactive(done[REJECT])
    assert not interactive(done[STOP])
    run = done[RUN]
    accepted = runs.accept(page, EditorValue(TEXT), run, 0, NEW_DOC, "a.txt", "text", None)
    panel = run_panel(accepted)
    assert not any(interactive(panel[i]) for i in (ACCEPT, BRANCH, REJECT, STOP))
    stopped = runs.stopped(run)  # a run that finished just as Stop came can still be accepted
    assert interactive(stopped[2]) and not interactive(stopped[5])
    run.steps = run.steps[:-1]  # one stopped mid-way cannot
    stopped = runs.stopped(run)
    assert not interactive(stopped[2]) and interactive(stopped[4]) and not interactive(stopped[5])


def test_accepting_code_that_does_not_parse_asks_first_and_records_nothing_until_confirmed(page):
    h = page.history
    rev = h.create_document("f.py", CODE, "python")
    doc = Doc(rev.document_id, rev.id)
    a = CODE.index("x + 1")
    run = finished(CODE, (a, a + 5), ["x +", "x - 1"], document=doc.id, base_revision=doc.revision)
    asked = runs.accept(page, EditorValue(CODE), run, 0, doc, "f.py", "python", None)
    row, text, pending = asked[-3:]
    assert row["visible"] and "does not parse" in text and "line 2:" in text and pending == "accept"
    assert len(h.history(doc.id)) == 1  # nothing recorded yet
    # a candidate that parses: no question
    fine = runs.accept(page, EditorValue(CODE), run, 1, doc, "f.py", "python", None)
    assert fine[0]["value"].text == CODE.replace("x + 1", "x - 1") and not fine[-3]["visible"]
    h.restore(rev.id)
    head = h.head(doc.id)
    doc = Doc(doc.id, head.id)
    run = finished(CODE, (a, a + 5), ["x +"], document=doc.id, base_revision=doc.revision)
    confirmed = runs.accept_anyway(page, "branch", EditorValue(CODE), run, 0, doc, "f.py", "python", None)
    assert confirmed[0]["value"].text == CODE.replace("x + 1", "x +") and h.head(doc.id).branch
    assert runs.cancel_accept()[0]["visible"] is False


def test_accept_as_branch_on_the_head_draws_a_branch_in_the_history(page):
    h = page.history
    first = h.create_document("notes.txt", TEXT, "text")
    doc = Doc(first.document_id, first.id)
    a = TEXT.index("quick")
    run = finished(TEXT, (a, a + 5), ["slow"], language="text", document=doc.id, base_revision=doc.revision)
    out = runs.accept(page, EditorValue(TEXT), run, 0, doc, "notes.txt", "text", None)
    doc = out[1]
    text = out[0]["value"].text
    run = finished(text, (a, a + 4), ["red"], language="text", document=doc.id, base_revision=doc.revision)
    out = runs.accept_branch(page, out[0]["value"], run, 0, doc, "notes.txt", "text", None)
    tree = out[TREE]
    rows = tree.split("<li")[1:]
    assert len(rows) == 3 and "↳ branch from #2" in rows[2] and "margin-left: 1.5em" in rows[2]
    assert "margin-left: 0.0em" in rows[1] and "(a branch)" in out[DOC_WIDTH + 10]


def test_nothing_of_a_run_is_left_in_the_next_one_or_after_accept(page):
    first = regenerate(page)
    stale_inspector = views.inspector_html(first[-1][RUN].last, first[-1][RUN].canvas, 0,
                                           int(first[-1][RUN].last.positions[0]))
    assert "committed at step" in stale_inspector  # what a click on a token showed
    empty = views.inspector_html(None, None, 0, 0)
    second = regenerate(page)
    assert second[0][INSPECTOR] == empty  # the inspector is cleared as the next run starts
    accepted = runs.accept(page, EditorValue(TEXT), second[-1][RUN], 0, NEW_DOC, "a.txt", "text", None)
    panel = run_panel(accepted)
    assert panel[LIVE] == views.EMPTY_VIEW and panel[METRICS] == "" and panel[INSPECTOR] == empty
    assert panel[RUN] is None


def test_a_new_run_sets_the_last_ones_candidates_aside_and_they_come_back(page):
    """Starting a run while a finished one still offers candidates does not drop them: 'Last
    candidates' brings them back (as ranked), and again swaps to the newer run's."""
    first = regenerate(page)[-1][RUN]
    outputs = regenerate(page, a=20, b=25, previous=first)
    second, message = outputs[-1][RUN], outputs[-1][-2]
    assert second.aside is first and "set aside" in message
    back = runs.back_to_aside(second, False)
    assert back[RUN] is first and first.aside is second and second.aside is None
    assert back[4]["choices"] == [(runs.candidate_label(first, i), i) for i in first.order]
    assert runs.back_to_aside(first, False)[RUN] is second
    rejected = runs.reject()  # rejected or accepted runs are not set aside: nothing to come back to
    third = regenerate(page, previous=rejected[RUN])[-1][RUN]
    assert third.aside is None
    with pytest.raises(Exception, match="No earlier candidates"):
        runs.back_to_aside(third, False)


def test_tab_asks_first_when_only_pythons_compiler_rejects_the_candidate(page):
    """Issue 18's wrong verdict: tree-sitter reads this rewrite of a condition as a valid tree, so it
    was labelled as parsing and Tab accepted it; Python's compiler rejects it, and now so does the page."""
    import inspect
    import textwrap
    source = inspect.getsource(textwrap)
    old = 'chunks[i+1] == " " and patsearch(chunks[i])'
    new = "i < len(chunks):\n                i = i + 1\n            else:\n            if i"
    rev = page.history.create_document("textwrap.py", source, "python")
    doc = Doc(rev.document_id, rev.id)
    a = source.index(old)
    run = finished(source, (a, a + len(old)), [new], document=doc.id, base_revision=doc.revision)
    assert run.problems[0] is not None and not run.problems[0].parses
    assert "does not parse at line" in runs.candidate_label(run, 0) and "Python:" in run.problems[0].detail
    asked = runs.accept(page, EditorValue(source), run, 0, doc, "textwrap.py", "python", None)
    row, text, pending = asked[-3:]
    assert row["visible"] and "does not parse" in text and pending == "accept"
    assert len(page.history.history(doc.id)) == 1  # nothing recorded until confirmed
