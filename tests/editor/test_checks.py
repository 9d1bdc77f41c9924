"""The checks behind correction rounds and candidate verdicts fire on what issue 18 saw, and not on
clean text."""
import inspect
import textwrap

import pytest

from editor.checks import checker_for, findings
from editor.compiles import unbalanced
from editor.languages import UnknownLanguage
from editor.validity import check_edit

BEFORE = "We looked at the results and wrote a short note."
AT = BEFORE.index("the results"), BEFORE.index("the results") + len("the results")


def prose_kinds(piece: str, known: frozenset[str] = frozenset()) -> set[str]:
    after = BEFORE[:AT[0]] + piece + BEFORE[AT[1]:]
    return {f.kind for f in findings("text", BEFORE, after, AT, (AT[0], AT[0] + len(piece)), known)}


@pytest.mark.parametrize("piece, kind", [
    ("built-in functions functions", "doubled word"),            # issue 18's doubled word
    ("it yet, but I'm sure yet", "doubled word"),                 # ... and one a few words apart
    ("removes remove any", "doubled word"),                       # ... and another form of it
    ("a of the code of the code of the code", "loop"),           # its repetition loop
    ("a backback-back problem", "broken word"),                  # its glued words
    ("the lines filtereded", "broken word"),
    ("the\n\nresults", "line break"),                           # a paragraph break inside a phrase
    ("the ################ results", "junk"),                     # a clause replaced by "#"s
])
def test_each_prose_check_fires_on_the_issue_examples(piece, kind):
    assert kind in prose_kinds(piece)


@pytest.mark.parametrize("piece", ["the new results", "what they needed", "the figures, the tables",
                                   "every value"])
def test_clean_prose_has_no_findings(piece):
    assert prose_kinds(piece, frozenset({"needed"})) == set()


def test_a_glued_looking_word_the_vocabulary_knows_is_not_broken():
    assert "broken word" in prose_kinds("what they needed")
    assert prose_kinds("what they needed", frozenset({"needed"})) == set()


def test_a_defect_outside_the_span_is_not_the_edits():
    before = "It was was late. We looked at the results."
    a, b = before.index("the results"), before.index("the results") + len("the results")
    assert findings("text", before, before, (a, b), (a, b)) == []


TEXTWRAP = inspect.getsource(textwrap)
OLD = 'chunks[i+1] == " " and patsearch(chunks[i])'
# Issue 18's wrong verdict, indented as the model wrote it: tree-sitter recovers into a valid-looking
# tree; Python's compiler does not accept an `else:` with nothing indented under it.
NEW = "i < len(chunks):\n                i = i + 1\n            else:\n            if i"


def test_python_verdict_is_pythons_own_where_tree_sitter_would_accept_it():
    s = TEXTWRAP.index(OLD)
    after = TEXTWRAP.replace(OLD, NEW, 1)
    result = check_edit(TEXTWRAP, after, "python", (s, s + len(OLD)), (s, s + len(NEW)))
    assert not result.parses and result.error.message.startswith("Python:")
    assert result.error.line == TEXTWRAP[:s].count("\n") + 4  # the line after `else:`
    ranges = checker_for("python")(TEXTWRAP, after, (s, s + len(OLD)), (s, s + len(NEW)))
    assert ranges and all(s <= a <= s + len(NEW) + 20 for a, _ in ranges)


def test_an_edit_that_compiles_has_no_code_findings():
    s = TEXTWRAP.index(OLD)
    new = 'chunks[i+1] == "  " and patsearch(chunks[i])'
    after = TEXTWRAP.replace(OLD, new, 1)
    assert findings("python", TEXTWRAP, after, (s, s + len(OLD)), (s, s + len(new))) == []


def test_brackets_that_balanced_must_still_balance():
    assert unbalanced("[c for c in chunks if c]", "[c for c in chunks if c") == [(0, 1), (23, 23)]
    assert unbalanced("f(a, b)", "f(a, b))") == [(7, 8)]
    assert unbalanced("s = 'a'", "s = 'a") == [(4, 5), (6, 6)]
    assert unbalanced("f(a, b)", "g(a)[0]") == []
    assert unbalanced("f(a,", "g(b") == []  # a selection that cut a pair may keep it cut


def test_an_unknown_language_is_refused_when_the_checker_is_made():
    with pytest.raises(UnknownLanguage, match="unknown language 'klingon'"):
        checker_for("klingon")


FUNCTION = "def tags(self):\n    self.tokens = {}\n    return self.tokens\n"
LINE = "\n    self.tokens = {}"


@pytest.mark.parametrize("new, flagged", [
    ("\n    if output_type is None: # # #", "if"),  # held-out results the rounds left broken
    ("\n    for label in self.labels:  if type == token.NAME:", "for"),
])
def test_a_one_line_statement_turned_into_a_block_header_is_flagged_at_its_keyword(new, flagged):
    s = FUNCTION.index(LINE)
    after = FUNCTION.replace(LINE, new, 1)
    found = findings("python", FUNCTION, after, (s, s + len(LINE)), (s, s + len(new)))
    opened = [f for f in found if f.kind == "opens a block"]
    assert len(opened) == 1 and after[opened[0].start:opened[0].end] == flagged


def test_a_statement_turned_into_a_header_may_start_with_no_block_keyword_but_the_originals():
    s = FUNCTION.index(LINE)
    new = "\n    for line in self.tokens:"
    after = FUNCTION.replace(LINE, new, 1)
    place = [p for p in checker_for("python")(FUNCTION, after, (s, s + len(LINE)), (s, s + len(new))) if len(p) > 2]
    assert len(place) == 1 and after[place[0][0]:place[0][1]] == "for"
    assert {"for", "while", "if", "with"} <= place[0][2]  # not only the keyword it had: a round swaps them
    text = "def f(x):\n    if x: return 1\n    return 0\n"
    old = "\n    if x: return 1"
    s = text.index(old)
    new = "\n    for x in y:"
    after = text.replace(old, new, 1)
    opened = [f for f in findings("python", text, after, (s, s + len(old)), (s, s + len(new)))
              if f.kind == "opens a block"]
    assert opened and "if" not in opened[0].not_starting and "for" in opened[0].not_starting


@pytest.mark.parametrize("new", ["\n    match = re.match(r'x', self.tokens", "\n    case(self.tokens"])
def test_soft_keywords_used_as_names_are_not_block_headers(new):
    s = FUNCTION.index(LINE)
    after = FUNCTION.replace(LINE, new, 1)
    found = findings("python", FUNCTION, after, (s, s + len(LINE)), (s, s + len(new)))
    assert found and not [f for f in found if f.kind == "opens a block"]


@pytest.mark.parametrize("new", ["\n    if self.tokens: return {}", "\n    self.tokens = dict()"])
def test_a_block_header_that_parses_on_one_line_is_left_alone(new):
    s = FUNCTION.index(LINE)
    after = FUNCTION.replace(LINE, new, 1)
    assert findings("python", FUNCTION, after, (s, s + len(LINE)), (s, s + len(new))) == []


@pytest.mark.parametrize("new, kind", [
    ("\n    stdout = stdout is None and not # stdout is None", "does not parse"),  # a held-out result
    ("\n    x = [1, # no", "unbalanced"),  # its missing closer belongs before the comment
])
def test_code_left_unfinished_before_a_comment_is_flagged_at_the_comment_not_past_it(new, kind):
    s = FUNCTION.index(LINE)
    after = FUNCTION.replace(LINE, new, 1)
    found = [f for f in findings("python", FUNCTION, after, (s, s + len(LINE)), (s, s + len(new))) if f.kind == kind]
    comment = new[new.index("#"):]
    assert [after[f.start:f.end] for f in found if f.end > f.start + 1] == [comment]
    assert all(f.start < s + len(new) for f in found)  # none past the span, where only its last slot is redone
