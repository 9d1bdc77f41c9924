"""Canvas: characters <-> token slots, span validation, and verbatim rendering of outside text."""
import pytest
import torch

from engine import Constraint, Span, TextCodec, build_canvas
from engine.canvas import MASK_GLYPH
from tests.tiny import byte_bpe_tokenizer, original_fill, wordpiece_tokenizer


@pytest.fixture(scope="module")
def bpe():
    return TextCodec.from_tokenizer(byte_bpe_tokenizer(bos=True))


@pytest.fixture(scope="module")
def wordpiece():
    return TextCodec.from_tokenizer(wordpiece_tokenizer())


def fill_with_original(canvas, original_ids):
    """P-space slots (every span's slots in order) holding `original_ids`, one list per span."""
    slots = torch.zeros(len(canvas.slots), dtype=torch.long)
    for (a, b), ids in zip(canvas.slot_ranges, original_ids):
        slots[a:b] = torch.tensor(ids)
    return slots


@pytest.mark.parametrize("text,start,end", [
    ("Héllo wörld, naïve café", 1, 9),            # multi-byte characters inside and at the edges
    ("emoji 🙂 in 東京 text", 6, 7),               # a character outside the BMP is one offset
    ("  leading and trailing spaces  ", 0, 3),    # whitespace-only edges
    ("The quick brown fox", 6, 13),                # a span that cuts two words mid-token
    ("def add(a, b):\n    return a + b\n", 14, 19),  # newline + indentation
])
def test_span_keeps_its_original_text_when_refilled_with_its_own_tokens(bpe, text, start, end):
    canvas = build_canvas(bpe, text, [Span(start, end)])
    (a, b), = canvas.span_ranges
    (ra, rb), = canvas.regions  # the span widened to the whole document's token edges
    assert ra <= start <= end <= rb
    assert canvas.render(original_fill(canvas)) == text
    assert canvas.segments == (text[:ra], text[rb:])


def test_outside_text_is_verbatim_even_when_the_tokenizer_is_lossy(wordpiece):
    text = "The QUICK   brown fox;\tjumps"           # uppercase and odd spacing do not survive decode
    canvas = build_canvas(wordpiece, text, [Span(10, 16)])
    out = canvas.render(fill_with_original(canvas, [wordpiece.encode("brown")]))
    assert out.startswith("The QUICK ") and out.endswith(" fox;\tjumps")


def test_a_tokenizer_that_does_not_spell_the_text_cuts_at_the_span_edges(wordpiece):
    canvas = build_canvas(wordpiece, "The QUICK brown fox", [Span(5, 12)])  # cuts two words
    assert canvas.regions == ((5, 12),) and not canvas.fixed.any()


def test_frame_tokens_wrap_the_canvas(bpe, wordpiece):
    c = build_canvas(bpe, "abc def", [Span(4, 7)])
    assert c.ids[: len(bpe.frame_prefix)].tolist() == list(bpe.frame_prefix)
    w = build_canvas(wordpiece, "abc def", [Span(4, 7)])
    assert w.ids[0].item() == wordpiece.frame_prefix[0] and w.ids[-1].item() == wordpiece.frame_suffix[-1]


def test_several_spans_get_their_own_slots_and_lengths(bpe):
    text = "one two three four five"
    canvas = build_canvas(bpe, text, [Span(14, 18, length=5), Span(0, 3)])
    assert [s.start for s in canvas.spans] == [0, 14]  # sorted
    (a0, b0), (a1, b1) = canvas.span_ranges
    assert b1 - a1 == 5 and b0 - a0 == len(bpe.encode("one")) and b0 <= a1
    undecided = torch.zeros(b0 - a0 + b1 - a1, dtype=torch.bool)
    undecided[b0 - a0:] = True
    assert canvas.render(fill_with_original(canvas, [bpe.encode("one"), [0] * 5]), undecided) == \
        "one two three " + MASK_GLYPH * 5 + " five"


def test_insertion_point_needs_a_length(bpe):
    with pytest.raises(ValueError, match="empty: give a length"):
        build_canvas(bpe, "abc", [Span(1, 1)])
    canvas = build_canvas(bpe, "abc", [Span(1, 1, length=4)])
    assert canvas.span_ranges[0][1] - canvas.span_ranges[0][0] == 4


@pytest.mark.parametrize("spans,message", [
    ([Span(-1, 2)], "outside the document"),
    ([Span(2, 99)], "outside the document"),
    ([Span(3, 1)], "outside the document"),
    ([Span(0, 4), Span(2, 6)], "overlaps"),
    ([Span(0, 2, length=0)], "length must be"),
    ([], "at least one span"),
])
def test_bad_spans_are_refused_with_a_clear_message(bpe, spans, message):
    with pytest.raises(ValueError, match=message):
        build_canvas(bpe, "some text here", spans)


def test_canvas_longer_than_the_context_is_refused(bpe):
    with pytest.raises(ValueError, match="context is 8"):
        build_canvas(bpe, "a fairly long piece of text", [Span(0, 1, length=20)], max_length=8)


def test_constraints_are_forced_slots(bpe):
    span = Span(0, 3, length=8, constraints=(Constraint("return", 2),))
    canvas = build_canvas(bpe, "abc def", [span])
    a, b = canvas.span_ranges[0]
    forced = bpe.encode("return")
    assert canvas.ids[a + 2:a + 2 + len(forced)].tolist() == forced
    assert canvas.fixed[a + 2:a + 2 + len(forced)].all() and canvas.fixed.sum() == len(forced)
    with pytest.raises(ValueError, match="does not fit"):
        build_canvas(bpe, "abc", [Span(0, 3, length=2, constraints=(Constraint("return a + b", 1),))])


@pytest.mark.parametrize("text", ["naïve café 東京 🙂!", "plain ascii words", "🙂🙂 x", "𝔘𝔫𝔦"])
def test_pieces_cut_decoded_text_at_token_edges_without_broken_characters(text):
    from tests.tiny import byte_bpe_tokenizer
    codec = TextCodec.from_tokenizer(byte_bpe_tokenizer())
    ids = codec.encode(text)
    pieces = codec.pieces(ids)
    assert len(pieces) == len(ids) and "".join(pieces) == codec.decode(ids) == text
    assert not any("\ufffd" in p for p in pieces)


@pytest.mark.parametrize("text", ["naïve café 東京 🙂!", "🙂🙂 x", "𝔘𝔫𝔦"])
def test_token_text_shows_the_bytes_of_a_token_that_splits_a_character(text):
    from tests.tiny import byte_bpe_tokenizer
    codec = TextCodec.from_tokenizer(byte_bpe_tokenizer())
    shown = [codec.token_text(i) for i in codec.encode(text)]
    assert not any("\ufffd" in s for s in shown)
    # Whole tokens read as text; split ones as <0xNN> bytes; together they spell the text's bytes.
    raw = b"".join(bytes.fromhex(s.replace("<0x", "").replace(">", "")) if s.startswith("<0x") else s.encode()
                   for s in shown)
    assert raw == text.encode()
    assert any(s.startswith("<0x") for s in shown)


def test_char_edges_place_token_edges_in_the_text_and_skip_edges_inside_a_character(bpe, wordpiece):
    from engine.codec import sentencepiece_bytes
    text = "naïve 🙂 café"
    ids = bpe.encode(text)
    edges = bpe.char_edges(text, ids)
    assert len(edges) == len(ids) + 1 and edges[0] == 0 and edges[-1] == len(text)
    assert all(a is None or b is None or a <= b for a, b in zip(edges, edges[1:]))
    assert None in edges  # the emoji is four bytes over more than one token
    assert wordpiece.char_edges("The QUICK fox", wordpiece.encode("The QUICK fox")) is None  # lowercased
    assert sentencepiece_bytes("\u2581was") == b" was" and sentencepiece_bytes("<0x0A>") == b"\n"


@pytest.mark.parametrize("length, message", [
    (10**9, "the longest span is 32,768 tokens"),
    (10**30, "the longest span is 32,768 tokens"),
    (9000, "the spans ask for 9,000 tokens; the model's context is 8,192 tokens"),
])
def test_a_span_too_long_is_refused_by_arithmetic_before_its_slots_exist(bpe, length, message):
    """10^9 slots would be ~40 GB of lists: the refusal must come from the count, at once."""
    with pytest.raises(ValueError, match=message):
        build_canvas(bpe, "It was the best of times.", [Span(6, 6, length)], max_length=8192)


FAMILY = "family: \U0001F468\u200D\U0001F469\u200D\U0001F467 ok"  # one emoji of 5 code points at 8:13


@pytest.mark.parametrize("start, end", [(9, 13), (8, 10), (10, 12), (0, 11)])
def test_a_span_edge_inside_a_zwj_emoji_is_refused_naming_the_character(bpe, start, end):
    with pytest.raises(ValueError, match=r"falls inside the character .*\(8:13\); move the edge to 8 or 13"):
        build_canvas(bpe, FAMILY, [Span(start, end)])


def test_span_edges_around_whole_graphemes_are_taken(bpe):
    canvas = build_canvas(bpe, FAMILY, [Span(8, 13)])
    assert canvas.render(original_fill(canvas)) == FAMILY
    accent = "cafe\u0301 noir"  # e + combining acute: one character on screen
    with pytest.raises(ValueError, match="falls inside"):
        build_canvas(bpe, accent, [Span(0, 4)])
    build_canvas(bpe, accent, [Span(0, 5)])
