"""On a CUDA GPU: half precision, the context cache and compiled forwards keep the engine's results.

Skipped without CUDA; scripts/device-check.sh runs them on the lent GPU machine. This file imports
only what that machine has (torch, transformers, tokenizers), never gradio or tree-sitter.
"""
import pytest
import torch

from engine.families.compiled import compile_model
from engine.loop import denoise, run
from engine.memory import ModelSize, plan
from engine.settings import PRESETS
from engine.tools.speed import TOY, random_model

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]

CUDA = torch.device("cuda")
# A small model of LLaDA's layout, wide enough that bf16 rounding is like a real model's.
SMALL = {**TOY, "d_model": 256, "n_layers": 4, "n_heads": 8, "n_kv_heads": 8, "mlp_hidden_size": 768}


def canvas(model, length=200, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, model.codec.eos_id, (1, length), generator=g).to(CUDA)


def test_bfloat16_logits_stay_close_to_float32():
    full, half = random_model(SMALL, CUDA, torch.float32), random_model(SMALL, CUDA, torch.bfloat16)
    ids, pos = canvas(full), torch.arange(80, 112, device=CUDA)
    want, got = full.logits_at(ids, pos), half.logits_at(ids, pos).float()
    rel = (got - want).norm() / want.norm()
    agree = (got.argmax(-1) == want.argmax(-1)).float().mean()
    assert rel < 0.05 and agree > 0.8, (rel, agree)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_cached_context_equals_the_full_forward_on_the_gpu(dtype):
    model = random_model(SMALL, CUDA, dtype)
    ids, pos = canvas(model), torch.arange(80, 112, device=CUDA)
    first, cache = model.cached_logits(ids, pos, None)
    again, _ = model.cached_logits(ids, pos, cache)  # nothing changed: the cached step is the full one
    tol = 1e-3 if dtype == torch.float32 else 5e-2
    torch.testing.assert_close(again, model.logits_at(ids, pos), atol=tol, rtol=tol)
    torch.testing.assert_close(first, model.logits_at(ids, pos), atol=tol, rtol=tol)


def test_compiled_forwards_equal_eager_and_reuse_their_bucket():
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    eager = random_model(SMALL, CUDA, torch.float32)
    compiled = compile_model(random_model(SMALL, CUDA, torch.float32))
    for length, span in ((200, (80, 112)), (230, (90, 110))):  # both in the 256 bucket
        ids, pos = canvas(eager, length), torch.arange(*span, device=CUDA)
        torch.testing.assert_close(compiled.logits_at(ids, pos), eager.logits_at(ids, pos), atol=1e-3, rtol=1e-3)
        if length == 200:
            graphs = counters["stats"]["unique_graphs"]
    assert counters["stats"]["unique_graphs"] == graphs  # the second length compiled nothing new


def test_a_bfloat16_run_is_the_same_for_the_same_seed():
    model = random_model(SMALL, CUDA, torch.bfloat16)
    ids, forced = canvas(model)[0], torch.zeros(200, dtype=torch.bool)
    settings = PRESETS["fast"].replace(candidates=4, seed=7)
    a, b = (run(denoise(model, ids, ((80, 112),), forced, settings)) for _ in range(2))
    assert torch.equal(a.tokens, b.tokens) and not a.masked.any()


def test_the_memory_estimate_covers_the_weights_the_gpu_holds():
    torch.cuda.empty_cache()
    before = torch.cuda.memory_allocated()
    model = random_model(SMALL, CUDA, torch.bfloat16)
    held = torch.cuda.memory_allocated() - before
    estimate = plan(ModelSize.of_net(model.net), torch.bfloat16, CUDA, tokens=256, batch=1)
    assert held <= estimate.weights * 1.01 and estimate.weights <= held * 1.01
    assert estimate.free is not None and 0 < estimate.free <= torch.cuda.get_device_properties(0).total_memory


@pytest.mark.parametrize("mode", ["int8", "int4"])
def test_quantized_layers_compute_with_their_own_weights_on_the_gpu(mode):
    """The CUDA kernels read the packing engine/quantize.py writes (the CPU tests cover the math)."""
    from engine.quantize import Int4Linear, Int8Linear, dequantize_int4, quantize_int4

    torch.manual_seed(0)
    layer = torch.nn.Linear(256, 768, bias=False).to(CUDA, torch.bfloat16).requires_grad_(False)
    x = torch.randn(40, 256, device=CUDA, dtype=torch.bfloat16)
    if mode == "int8":
        q = Int8Linear(layer)
        want = torch.nn.functional.linear(x.float(), q.weight.float() * q.scales.float()[:, None])
    else:
        q = Int4Linear(layer, 128)
        codes, scales_and_zeros = quantize_int4(layer.weight, 128)
        want = torch.nn.functional.linear(x.float(), dequantize_int4(codes, scales_and_zeros, 128))
    got = q(x).float()
    assert (got - want).norm() / want.norm() < 0.02  # bf16 activations and scales


@pytest.mark.parametrize("mode", ["int8", "int4"])
def test_a_quantized_model_is_batch_independent_on_the_gpu(mode):
    from engine.model import ForwardCall
    from engine.quantize import quantize_model

    model = random_model(SMALL, CUDA, torch.bfloat16)
    quantize_model(model, mode)
    calls = [ForwardCall(canvas(model, 64), torch.arange(64, device=CUDA)),
             ForwardCall(canvas(model, 96, seed=1), torch.arange(96, device=CUDA))]
    assert torch.equal(model.forward_many(calls[:1])[0], model.forward_many(calls)[0])
