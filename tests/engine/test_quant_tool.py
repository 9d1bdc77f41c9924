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
