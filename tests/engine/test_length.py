"""choose_length: the span length the scorer likes best, found through the one denoising loop."""
import dataclasses

import pytest
import torch

from engine import PRESETS, Span, TextCodec, build_canvas, infill, run
from engine.length import choose_length, lengths_around
from tests.tiny import ScriptedModel, byte_bpe_tokenizer

TEXT = "The quick brown fox jumps over the lazy dog."
SPAN = Span(4, 15)  # "quick brown"
SETTINGS = PRESETS["quality"]


@pytest.fixture(scope="module")
def model():
    codec = TextCodec.from_tokenizer(byte_bpe_tokenizer(bos=True))
    allowed = [i for i in range(len(codec.tokenizer)) if i not in codec.banned_ids]
    g = torch.Generator().manual_seed(0)
    target = torch.tensor(allowed)[torch.randint(len(allowed), (256,), generator=g)]
    return ScriptedModel(codec, target, torch.linspace(0.3, 0.9, 256))


def result(model, length):
    canvas = build_canvas(model.codec, TEXT, [dataclasses.replace(SPAN, length=length)])
    return run(infill(model, canvas, SETTINGS)).texts[0]


def test_lengths_around_the_original_are_clamped_and_an_insertion_gets_sizes():
    assert lengths_around(5) == (3, 5, 7, 9)
    assert lengths_around(1) == (1, 3, 5)
    assert lengths_around(0) == (4, 8, 16)


@pytest.mark.parametrize("liked", [3, 7, 9])
def test_choose_length_picks_the_length_whose_result_the_scorer_prefers(model, liked):
    lengths = (3, 5, 7, 9)
    favourite = result(model, liked)
    assert len({result(model, n) for n in lengths}) == len(lengths)  # the lengths give different edits
    seen = []

    def scorer(document, start, end):
        seen.append(document[start:end])
        assert document[:start] == TEXT[:start] and document[end:] == TEXT[SPAN.end:]  # the edited window
        return 1.0 if document == favourite else 2.0
    chosen, tried = choose_length(model, TEXT, SPAN, SETTINGS.replace(candidates=3), lengths, scorer)
    assert chosen == liked
    assert [n for n, _ in tried] == list(lengths) and len(seen) == len(lengths)
    assert dict(tried)[liked] == 1.0


def test_lengths_that_cannot_hold_the_constraint_are_skipped(model):
    from engine import Constraint
    span = dataclasses.replace(SPAN, constraints=(Constraint("lazy dog lazy dog", 0),))
    need = len(model.codec.encode("lazy dog lazy dog"))
    chosen, tried = choose_length(model, TEXT, span, SETTINGS, (1, need + 1, need + 3), lambda d, s, e: -(e - s))
    assert [n for n, _ in tried] == [need + 1, need + 3] and chosen == need + 3  # the longest edit scores best
    with pytest.raises(ValueError, match="does not fit"):
        choose_length(model, TEXT, span, SETTINGS, (1,), lambda d, s, e: 0.0)
