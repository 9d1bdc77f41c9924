"""The quality measure: base-model fluency without a second copy of the weights, parse checks
that see a broken edit, agreement; and, on the bundled model, fluency that sees repeated words."""
import pytest
import torch
from safetensors.torch import save_file

from engine.codec import window
from engine.families.bundled import apply_adapter
from engine.families.llama import LlamaDiffusionLM, build_net
from engine.families.score import LlamaFluency
from engine.tools.quality import agreement, code_block, edit_parses
from tests.tiny import tiny_llama

TEXT = "The quick brown fox jumps over the lazy dog. It was the best of times."


def adapted_tiny(tmp_path):
    """A tiny shifted Llama, and the same net with a random LoRA adapter merged (bundled format)."""
    base = tiny_llama(True, True)
    g = torch.Generator().manual_seed(1)
    factors = {}
    for name in ("blocks.0.attn.q.weight", "blocks.1.mlp.down.weight"):
        out, inp = dict(base.net.named_parameters())[name].shape
        factors[name + ".lora_a"] = torch.randn(2, inp, generator=g)
        factors[name + ".lora_b"] = torch.randn(out, 2, generator=g)
    path = tmp_path / "adapter.safetensors"
    save_file(factors, str(path), metadata={"lora_scale": "0.5"})
    state = apply_adapter(dict(base.net.state_dict()), path, base.mask_id)
    net = build_net(base.shape, state, lambda n: n, device=torch.device("cpu"), dtype=torch.float32)
    adapted = LlamaDiffusionLM(net, base.codec, label="adapted", shifted=True, start_id=base.start_id)
    return base, adapted, path


def test_base_fluency_of_an_adapted_net_equals_the_base_nets_own(tmp_path):
    base, adapted, path = adapted_tiny(tmp_path)
    want = LlamaFluency(base).nll(TEXT)
    assert LlamaFluency(adapted, path).nll(TEXT) == pytest.approx(want, rel=1e-4)
    assert abs(LlamaFluency(adapted).nll(TEXT) - want) > 1e-2  # the adapter does change the scores


def test_scoring_leaves_the_model_as_it_was(tmp_path):
    """Hooks removed, nothing left causal: the denoiser's own logits are the same after scoring."""
    _, adapted, path = adapted_tiny(tmp_path)
    ids = torch.tensor([adapted.codec.encode(TEXT)])
    before = adapted.logits(ids)
    LlamaFluency(adapted, path).nll(TEXT)
    assert torch.equal(adapted.logits(ids), before)


def test_window_keeps_the_span_and_a_bounded_context():
    codec = tiny_llama(True, True).codec
    doc = TEXT * 20
    start, end = len(TEXT) * 10, len(TEXT) * 10 + 9
    w = window(codec, doc, start, end, side=8)
    assert doc[start:end] in w and len(codec.encode(w)) <= 8 + len(codec.encode(doc[start:end])) + 8 + 2
    assert window(codec, doc, 0, 5, side=8).startswith(doc[:5])


CODE = '''import os


def f(x):
    if x:
        y = x + 1
        return y
    return 0


class A:
    def g(self):
        """Doc."""
        return 1
'''


def test_code_block_is_the_enclosing_block_that_parses():
    at = CODE.index("y = x + 1")
    a, b = code_block(CODE, at, at + 9)
    assert CODE[a:b].startswith("    if x:") and "return y" in CODE[a:b] and "return 0" not in CODE[a:b]
    assert code_block(CODE + 'def h():\n    """open', at, at + 9) == (a, b)  # the cut tail does not matter
    assert code_block('x = """open\n', 0, 3) is None


@pytest.mark.parametrize("new, ok", [
    ("y = x + 2", True),
    (" y = x + 1", False),     # an extra leading space: IndentationError
    ("y = (x + 1", False),
    ("y = x\n        z = 2", True),
])
def test_edit_parses_sees_edits_that_break_the_block(new, ok):
    at = CODE.index("y = x + 1")
    edited = CODE[:at] + new + CODE[at + 9:]
    assert edit_parses(CODE, edited, at, at + 9) is ok


def test_agreement_counts_equal_tokens_at_equal_places():
    assert agreement([[1, 2, 3], [4]], [[1, 9, 3], [4]]) == 0.75
    assert agreement([[1, 2]], [[1, 2, 3]]) == pytest.approx(2 / 3)
    assert agreement([[], [5]], [[], [5]]) == 1.0  # an empty span agrees with an empty one


@pytest.mark.default_model
@pytest.mark.slow
def test_bundled_base_fluency_scores_repeated_neighbours_worse():
    """What parallel commits of neighbouring slots give ("the the light") reads worse to the base
    model than the original, in the window the benchmark scores."""
    from engine.load import load_model

    torch.set_num_threads(1)
    fluency = load_model(None, device="cpu").fluency()
    doc = ("The keeper climbed the stairs every evening to tend the light of the old lighthouse. "
           "Ships passed the rocks safely while he watched the sea. In the morning he slept.")
    broken = doc.replace("to tend the light of the old", "to to tend the the light of of the")
    start = doc.index("every")
    end = doc.index(" Ships")
    assert fluency.window_nll(broken, start, end + len(broken) - len(doc)) > fluency.window_nll(doc, start, end) + 0.2
