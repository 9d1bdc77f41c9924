"""Span-edge healing: a span that cuts where the tokenizer merges (after a space, after
indentation, mid-word) comes back joined to its neighbours as the original text was."""
import ast

import pytest
import torch
from hypothesis import HealthCheck, given
from hypothesis import settings as hyp_settings
from hypothesis import strategies as st

from engine import SamplerSettings, Span, TextCodec, build_canvas, infill, run
from tests.tiny import ScriptedModel, byte_bpe_tokenizer, original_fill, sentencepiece_tokenizer

PROSE = "The keeper was there to tend the light.\nMy grandmother lived behind the house. She knew it.\n"
CODE = ("def add(a, b):\n    total = a + b\n    if total > 10:\n        return total\n"
        "    return 0\n\nprint(add(1, 2))\n")


@pytest.fixture(scope="module")
def bpe():
    return TextCodec.from_tokenizer(byte_bpe_tokenizer(bos=True))


@pytest.fixture(scope="module")
def sp():
    return TextCodec.from_tokenizer(sentencepiece_tokenizer())


@pytest.fixture(scope="module")
def smol():
    from engine.families.bundled import load_default
    return load_default().codec


def own_tokens(codec, text, start, end):
    """The whole document's tokens that overlap characters [start, end): what a model trained on
    naturally tokenized text writes there (" was" with its space, " return" with the last indent)."""
    ids, out, at = codec.encode(text), [], 0
    for token in ids:
        width = len(codec.decode([token]))  # ASCII documents: one token, whole characters
        if at < end and at + width > start:
            out.append(token)
        at += width
    return out


def write_own_tokens(codec, text, span):
    """Run the product's infill with a scripted model that writes `own_tokens` into the span's
    free slots (end-of-text after them): the final document."""
    canvas = build_canvas(codec, text, [span])
    (a, b), = canvas.span_ranges
    free = a + (~canvas.fixed[a:b]).nonzero().flatten()
    own = own_tokens(codec, text, span.start, span.end)[:len(free)]
    target = canvas.ids.clone()
    target[free] = torch.tensor(own + [codec.eos_id] * (len(free) - len(own)))
    model = ScriptedModel(codec, target, torch.linspace(0.9, 0.5, canvas.length))
    return run(infill(model, canvas, SamplerSettings())).texts[0]


def select(text, phrase, lead=0):
    start = text.index(phrase) + lead
    return Span(start, text.index(phrase) + len(phrase))


@pytest.mark.parametrize("doc,phrase,lead", [
    (PROSE, " was there", 1),           # after a space: "was there", its space left out
    (PROSE, " lived", 1),               # after a space, ending before one
    (PROSE, " She knew it.", 1),        # after a space, ending before a newline
    (CODE, "    total = a + b", 4),     # after indentation: the statement without it
    (CODE, "        return total", 8),  # after deeper indentation
    (CODE, "    return 0", 4),
])
@pytest.mark.parametrize("tokenizer", ["bpe", "sp", pytest.param("smol", marks=pytest.mark.default_model)])
def test_a_model_writing_the_tokenizers_own_tokens_gives_back_the_document(request, tokenizer, doc, phrase, lead):
    codec = request.getfixturevalue(tokenizer)
    out = write_own_tokens(codec, doc, select(doc, phrase, lead))
    assert out == doc  # no doubled space, no shifted indentation
    if doc is CODE:
        ast.parse(out)


@pytest.mark.parametrize("tokenizer", ["bpe", pytest.param("smol", marks=pytest.mark.default_model)])
@pytest.mark.parametrize("written", [" was", "was"])  # the merged token, or one without the space
def test_the_space_before_a_selection_is_neither_doubled_nor_lost(request, tokenizer, written):
    codec = request.getfixturevalue(tokenizer)
    span = select(PROSE, " was", 1)
    canvas = build_canvas(codec, PROSE, [Span(span.start, span.end, length=len(codec.encode(written)))])
    (a, b), = canvas.span_ranges
    tokens = canvas.ids.clone()
    ids = codec.encode(written)
    tokens[a:b] = torch.tensor((ids + [codec.eos_id] * (b - a))[:b - a])
    assert canvas.render(tokens[canvas.slots]).startswith("The keeper was there")
    assert canvas.span_text(tokens[canvas.slots], 0) == "was"


@pytest.mark.parametrize("tokenizer", ["bpe", pytest.param("smol", marks=pytest.mark.default_model)])
def test_insertion_after_a_space_writes_before_the_next_word(request, tokenizer):
    codec = request.getfixturevalue(tokenizer)
    at, new = PROSE.index("was"), codec.encode(" the")
    canvas = build_canvas(codec, PROSE, [Span(at, at, length=len(new) + 1)])  # the cursor after "keeper "
    (a, b), = canvas.span_ranges
    tokens = canvas.ids.clone()
    tokens[a:a + len(new)] = torch.tensor(new)
    tokens[a + len(new)] = codec.eos_id
    assert canvas.render(tokens[canvas.slots]).startswith("The keeper the was there")


@pytest.mark.parametrize("tokenizer", ["bpe", pytest.param("smol", marks=pytest.mark.default_model)])
def test_a_cut_word_keeps_its_letters_in_frozen_slots_and_the_context_is_the_documents_tokens(request, tokenizer):
    codec = request.getfixturevalue(tokenizer)
    start, end = PROSE.index("there") + 2, PROSE.index("grandmother") + 3   # "ere ... gra"
    canvas = build_canvas(codec, PROSE, [Span(start, end)])
    (a, b), = canvas.span_ranges
    head, tail = canvas.edges(0)
    assert head.endswith("th") and tail.startswith("n")
    assert codec.decode(canvas.ids[a:b][canvas.fixed[a:b]].tolist()) == head + tail  # frozen, read by the model
    assert_context_is_the_documents_tokens(codec, canvas)


def assert_context_is_the_documents_tokens(codec, canvas):
    """The tokens before the first span's slots begin the document's tokens, those after the
    last end them: no piece tokenized on its own near a cut."""
    doc = codec.encode(canvas.text)
    before = canvas.ids[len(codec.frame_prefix):canvas.span_ranges[0][0]].tolist()
    after = canvas.ids[canvas.span_ranges[-1][1]:canvas.length - len(codec.frame_suffix)].tolist()
    assert doc[:len(before)] == before
    assert doc[len(doc) - len(after):] == after


WORDS = ["the", "keeper", "was", "there", "return", "total", "x", "a", "b", "=", "+", "(a,", "b):",
         "print(i)", "café", "naïve", "東京", "🙂", "it", "times."]
LINE = st.tuples(st.sampled_from(["", "", "    ", "        ", "\t"]),
                 st.lists(st.sampled_from(WORDS), min_size=1, max_size=6)).map(lambda t: t[0] + " ".join(t[1]))
DOCS = st.lists(LINE, min_size=1, max_size=4).map("\n".join)


def cut_points(text):
    """Offsets where a user's selection tends to start or end: around spaces, after indentation,
    before line ends, plus every offset (mid-word)."""
    near = {i for i, ch in enumerate(text) if ch in " \n\t"} | {i + 1 for i, ch in enumerate(text) if ch in " \n\t"}
    return sorted(near | {0, len(text)}), list(range(len(text) + 1))


@pytest.mark.parametrize("tokenizer", ["bpe", "sp", pytest.param("smol", marks=pytest.mark.default_model)])
@hyp_settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=DOCS, data=st.data())
def test_any_selection_keeps_outside_text_and_reads_the_documents_own_tokens(request, tokenizer, text, data):
    codec = request.getfixturevalue(tokenizer)
    near, every = cut_points(text)
    start = data.draw(st.sampled_from(near) | st.sampled_from(every))
    end = data.draw(st.sampled_from([x for x in near if x >= start]) | st.integers(start, len(text)))
    span = Span(start, end, None if end > start else data.draw(st.integers(1, 3)))
    canvas = build_canvas(codec, text, [span])
    assert_context_is_the_documents_tokens(codec, canvas)
    # Any tokens at all in the free slots: the text outside the selection is byte for byte there.
    (a, b), = canvas.span_ranges
    noise = torch.randint(3, len(codec.tokenizer), (canvas.length,), generator=torch.Generator().manual_seed(start))
    tokens = torch.where(canvas.fixed | (torch.arange(canvas.length) < a) | (torch.arange(canvas.length) >= b),
                         canvas.ids, noise)
    out = canvas.render(tokens[canvas.slots])
    assert out.startswith(text[:start]) and out.endswith(text[end:]) and len(out) >= len(text) - (end - start)
    # The span's own tokens, as its region lays them out, give back the document exactly.
    if end > start:
        assert canvas.render(original_fill(canvas)) == text
