"""engine.tools.eval's case selection and plot (the model-dependent parts run in `python -m engine.tools.eval`)."""
import ast

import pytest

from engine.tools.eval import chosen_lines, infill_cases, plot, same_lines, table

SOURCE = '''def f(x):
    """Doc."""
    a = x + 1
    print(a)
    b = [
        a,
    ]
    c = a * 2
    return c
'''


def test_one_line_choice_is_a_single_line_statement_that_is_not_a_bare_expression():
    body = ast.parse(SOURCE).body[0].body[1:]
    first, last = chosen_lines(body, 1)
    assert first == last
    assert SOURCE.splitlines()[first - 1].strip() in {"a = x + 1", "c = a * 2", "return c"}


def test_block_choice_covers_two_to_four_whole_lines():
    body = ast.parse(SOURCE).body[0].body[1:]
    first, last = chosen_lines(body, 4)
    assert 2 <= last - first + 1 <= 4
    starts = {s.lineno for s in body}
    ends = {s.end_lineno for s in body}
    assert first in starts and last in ends  # whole statements only
    assert chosen_lines(body[:1], 4) == (None, None)  # one one-line statement: no block


def test_same_lines_ignores_trailing_spaces_only():
    assert same_lines("    a = 1  \n    b = 2", "    a = 1\n    b = 2\n")
    assert not same_lines("a = 1", "    a = 1")
    assert not same_lines("a = 1\nb = 2", "a = 1")


@pytest.mark.slow
@pytest.mark.parametrize("lines", [1, 4])
def test_cases_cut_whole_lines_out_of_held_out_functions(lines):
    cases = infill_cases(5, lines)
    assert len(cases) == 5 and len({c["file"] for c in cases}) >= 3
    for case in cases:
        text, answer = case["text"], case["answer"]
        ast.parse(text)
        assert text[case["start"]:case["end"]] == answer and answer.startswith("\n")
        assert answer.count("\n") == case["lines"] and (lines == 1) == (case["lines"] == 1)
        assert text[case["end"]] == "\n"  # the span ends at a line end


def test_plot_writes_a_png(tmp_path):
    pytest.importorskip("matplotlib")
    report = {"steps_curve": [{"kind": k, "steps": s, "adapted": 0.1 * s, "base_ar_greedy": 0.2}
                              for k in ("prose", "code") for s in (1, 2, 4)],
              "curve": [{"step": s, "heldout_ce": 9 - s / 100} for s in (0, 100, 200)]}
    plot(report, tmp_path / "out" / "eval.png")
    data = (tmp_path / "out" / "eval.png").read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000


def test_table_shows_about_a_dozen_curve_rows_ending_with_the_last():
    curve = [{"step": s, "train_loss": 1.0, "heldout_ce": 9 - s / 1000, "heldout_acc": 0.1} for s in range(0, 1301, 10)]
    empty = {"cases": 0, "lines": 1, "examples": []}
    report = {"masked_accuracy": [], "line_infill": empty, "block_infill": empty, "steps_curve": [], "curve": curve}
    rows = [r for r in table(report).splitlines() if r.startswith("| ") and r[2].isdigit()]
    assert 12 <= len(rows) <= 14
    assert rows[0].startswith("| 0 |") and rows[-1].startswith("| 1300 |")
