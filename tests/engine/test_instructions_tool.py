"""engine.tools.instructions: every held-out case is found in its paragraph, fails its own check as
written, and each check tells a hit from a miss."""
import pytest

from engine.tools.instructions import cases, passes


def test_every_case_is_found_and_its_original_sentence_fails_its_check():
    found = cases()
    assert len(found) >= 20
    for case in found:
        old = case["text"][case["start"]:case["end"]]
        assert " ".join(old.split()) == case["sentence"]
        assert not passes(case["check"], old, old), old


@pytest.mark.parametrize("check,old,hit,miss", [
    (["question"], "It is.", "Is it?", "It is."),
    (["mentions", "pip"], "Install it.", "Install it with PIP.", "Install it."),
    (["past"], "It is fast.", "It was fast.", "It is fast."),
    (["negative"], "It works.", "It does not work.", "It works."),
    (["upper"], "Pin it.", "PIN BOTH PACKAGES.", "Pin both packages."),
    (["starts", "However"], "Note it.", "However, note it.", "Note it, however."),
    (["commas"], "A cell wraps.", "Cells, rows, and columns wrap.", "A cell wraps, again."),
    (["french"], "It is copied.", "Le module est copié dans le projet.", "The module is copied."),
])
def test_each_check_tells_a_hit_from_a_miss(check, old, hit, miss):
    assert passes(check, hit, old) and not passes(check, miss, old)
