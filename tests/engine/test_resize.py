"""Variable-length infill (DreamOn's expand/delete tokens) around the one denoising loop."""
import pytest
import torch

from engine import SamplerSettings, Span, TextCodec, build_canvas, infill, run
from engine.length import choose_length, lengths_around
from engine.model import DiffusionLM
from engine.resize import ResizingInfill, resizes
from page.actions import auto_lengths, length_note
from tests.tiny import ScriptedModel, byte_bpe_tokenizer

TEXT = "The quick brown fox jumps over the lazy dog."
SPAN = Span(4, 9)  # "quick": its region is the token " quick", no frozen edge text
SETTINGS = SamplerSettings(strategy="low_confidence")


@pytest.fixture(scope="module")
def codec():
    tok = byte_bpe_tokenizer(bos=True)
    tok.add_special_tokens({"additional_special_tokens": ["<|expand|>", "<|delete|>"]})
    return TextCodec.from_tokenizer(tok)


class LengthSeeking(DiffusionLM):
    """Wants its one span to hold `want` slots: shorter, it writes expand at the span's first
    undecided slot; longer, delete at its last one; at `want`, slot k gets `fill[k]`. The length
    token is the most confident prediction, so the loop commits it first."""

    def __init__(self, codec: TextCodec, canvas, want: int, fill: list[int]):
        (a, b), = canvas.span_ranges
        self.codec, self.noise, self.mask_id = codec, "mask", codec.mask_id
        self.vocab_size, self.max_length = len(codec.tokenizer), 4096
        self.device, self.label = torch.device("cpu"), "seek"
        self.expand_id = codec.tokenizer.convert_tokens_to_ids("<|expand|>")
        self.delete_id = codec.tokenizer.convert_tokens_to_ids("<|delete|>")
        self.start, self.outside, self.want, self.fill = a, canvas.length - (b - a), want, fill
        self.widths: list[int] = []

    def logits(self, ids: torch.Tensor) -> torch.Tensor:
        B, L = ids.shape
        width = L - self.outside
        self.widths.append(width)
        logits = torch.zeros(B, L, self.vocab_size)
        slots = torch.arange(self.start, self.start + width)
        logits[:, slots, torch.tensor([self.fill[k % len(self.fill)] for k in range(width)])] = 5.0
        undecided = slots[(ids[0, slots] == self.mask_id)]
        if width != self.want and len(undecided):
            at, token = (undecided[0], self.expand_id) if width < self.want else (undecided[-1], self.delete_id)
            logits[:, at, token] = 12.0
        return logits


def fill_ids(codec, n=40):
    allowed = [i for i in range(len(codec.tokenizer)) if i not in codec.banned_ids]
    return allowed[50:50 + n]


def resizing_run(codec, start, want, **kwargs):
    canvas = build_canvas(codec, TEXT, [Span(SPAN.start, SPAN.end, start)])
    model = LengthSeeking(codec, canvas, want, fill_ids(codec))
    resizing = ResizingInfill(model, canvas, SETTINGS, **kwargs)
    steps = list(resizing)
    return model, resizing, steps


@pytest.mark.parametrize("start, want", [(2, 7), (9, 3)], ids=["grows", "shrinks"])
def test_the_span_grows_and_shrinks_to_the_length_the_model_writes(codec, start, want):
    model, resizing, steps = resizing_run(codec, start, want)
    last = steps[-1]
    assert last.done and resizing.growth == [want - start] and resizing.rounds == abs(want - start) + 1
    assert last.tokens[0].tolist() == fill_ids(codec)[:want]  # slot k holds what the model wants there
    assert last.texts[0] == TEXT[:SPAN.start] + codec.decode(fill_ids(codec)[:want]) + TEXT[SPAN.end:]
    assert model.widths[0] == start and model.widths[-1] == want
    assert [s.forwards for s in steps] == list(range(1, len(steps) + 1))  # forwards count across rounds


def test_decided_slots_are_carried_into_the_next_round(codec):
    canvas = build_canvas(codec, TEXT, [Span(SPAN.start, SPAN.end, 3)])
    fill = fill_ids(codec)

    class LateExpand(LengthSeeking):  # writes two tokens first, then asks for one more slot
        def logits(self, ids):
            out = super().logits(ids)
            if len(self.widths) <= 2:
                out[:, self.start: self.start + self.want] = 0.0
                out[:, self.start + 1, fill[1]] = out[:, self.start + 2, fill[2]] = 9.0
            return out
    model = LateExpand(codec, canvas, 4, fill)
    resizing = ResizingInfill(model, canvas, SETTINGS)
    steps = list(resizing)
    # slots 1 and 2 were decided in round 1 and kept, shifted right by the slot the expand added
    assert resizing.growth == [1] and steps[-1].tokens[0, 2:4].tolist() == fill[1:3]
    second_round = build_canvas(codec, TEXT, [Span(SPAN.start, SPAN.end, 4)]).span_ranges[0][0]
    assert resizing.canvas.fixed[second_round + 2: second_round + 4].all()


def test_growth_stops_at_the_slot_limit(codec):
    model, resizing, steps = resizing_run(codec, 2, 10**6, max_slots=9)
    assert steps[-1].done and resizing.growth == [7] and max(model.widths) == 9
    assert model.expand_id not in steps[-1].tokens[0].tolist()


def test_a_fixed_length_run_never_writes_length_tokens(codec):
    canvas = build_canvas(codec, TEXT, [Span(SPAN.start, SPAN.end, 2)])
    model = LengthSeeking(codec, canvas, 7, fill_ids(codec))
    last = run(infill(model, canvas, SETTINGS))
    assert last.tokens[0].tolist() == fill_ids(codec)[:2]


def test_choose_length_reports_the_length_the_model_ended_at(codec):
    canvas = build_canvas(codec, TEXT, [Span(SPAN.start, SPAN.end, 2)])
    model = LengthSeeking(codec, canvas, 6, fill_ids(codec))
    assert resizes(model) and lengths_around(2, resizing=True) == (2,) and lengths_around(0, resizing=True) == (4,)
    seen = []
    chosen, tried = choose_length(model, TEXT, SPAN, SETTINGS.replace(candidates=3), (2,),
                                  lambda doc, s, e: seen.append(doc[s:e]) or 1.5)
    assert chosen == 6 and tried == [(6, 1.5)] and seen == [codec.decode(fill_ids(codec)[:6]).lstrip()]
    assert auto_lengths(codec, "quick", "auto", lambda *a: 0.0, resizing=True) == (len(codec.encode("quick")),)
    assert "The model grew or shrank the span to 6 tokens" in length_note(tried, chosen, resizing=True)


def test_models_without_length_tokens_are_refused(codec):
    canvas = build_canvas(codec, TEXT, [SPAN])
    plain = ScriptedModel(codec, torch.zeros(64, dtype=torch.long), torch.full((64,), 0.5))
    with pytest.raises(ValueError, match="no expand/delete tokens"):
        ResizingInfill(plain, canvas, SETTINGS)
    model = LengthSeeking(codec, canvas, 3, fill_ids(codec))
    with pytest.raises(ValueError, match="one candidate"):
        ResizingInfill(model, canvas, SETTINGS.replace(candidates=2))
