"""Compiled forwards in length buckets: the same logits and tokens as eager, one graph per bucket."""
import pytest
import torch
from torch._dynamo.utils import counters

from engine import SamplerSettings, Span, TextCodec, build_canvas, infill, load_model, run
from engine.families.compiled import BucketedRows, bucket, compile_model
from tests.tiny import ScriptedModel, byte_bpe_tokenizer, save_tiny_llada, tiny_llama

DOC = "import os\nimport sys\n\nclass Foo:\n    pass\n\ndef add(a, b):\n    return a + b\n" * 6  # 162 tokens


def graphs() -> int:
    return counters["stats"]["unique_graphs"]


def forwards_match(eager, compiled, length: int, span: tuple[int, int]) -> None:
    """Full, cache-filling and cached forwards of `compiled` equal `eager`'s on one canvas."""
    ids = torch.tensor([eager.codec.encode(DOC)[:length]] * 2)                 # (2, length)
    assert ids.shape[1] == length
    pos = torch.arange(*span)
    torch.testing.assert_close(compiled.logits_at(ids, pos), eager.logits_at(ids, pos), atol=1e-4, rtol=1e-4)
    (got, cache), (want, fresh) = compiled.cached_logits(ids, pos, None), eager.cached_logits(ids, pos, None)
    torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)
    ids[:, pos] = eager.mask_id
    torch.testing.assert_close(compiled.cached_logits(ids, pos, cache)[0], eager.cached_logits(ids, pos, fresh)[0],
                               atol=1e-4, rtol=1e-4)


def test_buckets_are_powers_of_two_above_a_floor():
    assert [bucket(n, 64) for n in (1, 64, 65, 129, 4096)] == [64, 64, 128, 256, 4096]
    assert bucket(17, 16) == 32


@pytest.mark.parametrize("shifted,start", [(False, False), (True, True)])  # LLaDA, bundled layouts
def test_padding_is_invisible_and_a_bucket_traces_once(shifted, start, one_thread):
    torch._dynamo.reset()  # graphs are shared by every model of the same shapes: start from none
    eager = tiny_llama(shifted, start)
    compiled = compile_model(tiny_llama(shifted, start), backend="eager")  # dynamo's graphs, no codegen
    forwards_match(eager, compiled, 70, (20, 30))
    before = graphs()
    forwards_match(eager, compiled, 74, (40, 52))   # another length and slot count, the same buckets
    assert graphs() == before
    forwards_match(eager, compiled, 140, (40, 52))  # a longer canvas: its own bucket
    assert graphs() > before


@pytest.mark.slow
def test_inductor_compiled_loop_gives_the_eager_tokens(one_thread):
    torch._dynamo.reset()
    model = tiny_llama(True, True)
    start = DOC.index("return")
    canvas = build_canvas(model.codec, DOC, [Span(start, start + 12, 6)], model.max_length)
    runs = (SamplerSettings(strategy="low_confidence", cache="none"),
            SamplerSettings(strategy="low_confidence", cache="dual", candidates=2, temperature=1.0))
    eager = [run(infill(model, canvas, settings)) for settings in runs]
    compile_model(model)  # inductor: C++ kernels on this CPU
    for settings, want in zip(runs, eager):
        got = run(infill(model, canvas, settings))
        assert torch.equal(got.tokens, want.tokens) and got.texts == want.texts
    before = graphs()
    shorter = build_canvas(model.codec, DOC[:-20], [Span(start, start + 9, 5)], model.max_length)
    run(infill(model, shorter, runs[0]))
    assert graphs() == before  # a shorter document and span in the same buckets: no new compile


def test_load_model_compiles_on_request_and_refuses_what_it_cannot(tmp_path):
    folder = save_tiny_llada(tmp_path / "llada")
    assert isinstance(load_model(folder, device="cpu", compile="default").runner, BucketedRows)
    assert not isinstance(load_model(folder, device="cpu").runner, BucketedRows)
    with pytest.raises(ValueError, match="unknown compile mode 'fast'"):
        load_model(folder, device="cpu", compile="fast")
    scripted = ScriptedModel(TextCodec.from_tokenizer(byte_bpe_tokenizer()), torch.zeros(8, dtype=torch.long),
                             torch.ones(8))
    with pytest.raises(ValueError, match="Llama-family"):
        compile_model(scripted)
