"""engine.tools.quant's variants: what it reports as batch independence is the scheduler's promise."""
import pytest
import torch

from engine.quantize import Int4Linear, Int8Linear
from engine.tools.quant import batch_independent, variant
from tests.tiny import tiny_llama


@pytest.fixture(scope="module")
def model():
    return tiny_llama(shifted=True, start=True)


@pytest.mark.parametrize("name,layer", [("int8", Int8Linear), ("int8-packed", Int8Linear), ("int4-cpu", Int4Linear)])
def test_weight_only_variants_keep_rows_independent(model, name, layer):
    quantized = variant(model, name)
    assert any(isinstance(m, layer) for m in quantized.net.modules())
    assert not any(isinstance(m, (Int8Linear, Int4Linear)) for m in model.net.modules())  # a copy
    torch.manual_seed(0)
    assert batch_independent(quantized)


def test_dynamic_int8_shares_one_activation_scale_across_the_batch(model):
    torch.manual_seed(0)
    assert batch_independent(model) and not batch_independent(variant(model, "dynamic"))


def test_int8_becomes_the_default_only_faster_per_forward_fluent_and_batch_independent():
    from engine.tools.quant import keep_int8

    def report(ms, fluency=0.0, independent=True):
        return {"forward_cpu_ms": {"float32": {32: 250, 288: 1170}, "int8": dict(zip((32, 288), ms))},
                "batch_independent": {"int8": independent},
                "rows": [{"model": "int8", "fluency_vs_float32": fluency, "cpu_speedup_vs_float32": 1.06}]}

    assert keep_int8(report((200, 900)))
    assert not keep_int8(report((266, 1238)))            # this CPU: slower per forward, whatever the edits' p50
    assert not keep_int8(report((200, 900), fluency=0.03))
    assert not keep_int8(report((200, 900), independent=False))
