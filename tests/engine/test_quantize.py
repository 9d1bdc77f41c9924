"""Weight-only int8/int4 linear layers: error within the rounding bound, rows independent of their
batch, the memory estimate counting them, and bad --quantize values refused in one line."""
import copy
import io

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from engine import load_model
from engine.cli import main as cli_main
from engine.families.llada import llada_shape
from engine.families.llama_net import LlamaNet
from engine.memory import ModelSize, plan
from engine.model import ForwardCall
from engine.quantize import (
    Int4Linear,
    Int8Linear,
    dequantize_int4,
    pack_nibbles,
    parse_quantize,
    quantize_int4,
    quantize_model,
)
from engine.tools.speed import LLADA_8B
from tests.tiny import save_tiny_llada, tiny_llama

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return save_tiny_llada(tmp_path_factory.mktemp("llada") / "tiny")


def linear(out: int = 48, width: int = 64, bias: bool = True) -> nn.Linear:
    torch.manual_seed(0)
    return nn.Linear(width, out, bias=bias).requires_grad_(False)


@pytest.mark.parametrize("packed", [True, False])  # PyTorch's int8 kernel, and the weight widened
def test_int8_error_is_within_half_a_step_per_weight(packed):
    layer = linear()
    x = torch.cat([torch.eye(64), torch.randn(30, 64)]).reshape(2, 47, 64)  # one-hot rows read single weights
    q = Int8Linear(layer, packed=packed)
    # Each weight moved by at most half its row's scale, so each output by at most |x| . scale/2.
    bound = x.abs() @ (q.scales[:, None] / 2 * torch.ones(1, 64)).T                  # (2, 47, 48)
    error = (q(x) - layer(x)).abs()
    assert (error <= bound + 1e-5).all()
    assert error.max() > 0  # really quantised, not the float weights passed through


def test_int4_packing_is_what_the_kernel_reads():
    layer, x = linear(out=64, width=128), torch.randn(9, 128)
    q, scales_and_zeros = quantize_int4(layer.weight, 32)
    assert q.min() >= 0 and q.max() <= 15 and scales_and_zeros.shape == (4, 64, 2)
    dequantized = dequantize_int4(q, scales_and_zeros, 32)
    # rounding to 15 steps of each group's range: at most half a step per weight
    step = scales_and_zeros[..., 0].T.repeat_interleave(32, dim=1)                   # (64, 128)
    assert ((dequantized - layer.weight).abs() <= step / 2 + 1e-6).all()
    # the CPU tinygemm kernel computes with exactly those weights (CUDA's twin is not run here)
    assert torch.allclose(Int4Linear(layer, 32)(x), F.linear(x, dequantized, layer.bias), atol=1e-4)
    # CUDA's packing: two 4-bit values per byte, the even column in the high nibble
    packed = pack_nibbles(q)
    assert packed.dtype == torch.uint8 and packed.shape == (64, 64)
    assert torch.equal(torch.stack([packed >> 4, packed & 15], dim=-1).reshape(64, 128).int(), q)


def test_an_int8_model_gives_logits_close_to_float32():
    model = tiny_llama(shifted=True, start=True)
    quantized = copy.deepcopy(model)
    quantize_model(quantized, "int8")
    assert sum(isinstance(m, Int8Linear) for m in quantized.net.modules()) == 2 * 7  # q k v o gate up down
    ids = torch.randint(10, 300, (2, 40))
    ref, out = model.logits(ids), quantized.logits(ids)
    # int8 rounding noise is uniform in +-scale/2: RMS ~0.7% of a Gaussian row's typical weight; over
    # the ~8 matmuls of 2 blocks it adds to ~2% of the logits' spread. Allow 5%; int4 (16 levels) misses it.
    assert (out - ref).abs().mean() < 0.05 * ref.std()
    assert (out.argmax(-1) == ref.argmax(-1)).float().mean() >= 0.95
    coarse = copy.deepcopy(model)
    quantize_model(coarse, "int4")
    assert (coarse.logits(ids) - ref).abs().mean() > (out - ref).abs().mean()


@pytest.mark.parametrize("packed", [True, False])
def test_a_quantized_row_is_the_same_alone_and_packed_with_others(packed):
    model = tiny_llama(shifted=True, start=True)
    quantize_model(model, "int8")
    for m in model.net.modules():
        if isinstance(m, Int8Linear):
            m.packed = packed
    torch.manual_seed(1)
    mine, other = torch.randint(10, 300, (1, 24)), torch.randint(10, 300, (1, 57))
    calls = [ForwardCall(mine, torch.arange(24)), ForwardCall(other, torch.arange(57))]
    alone = model.forward_many(calls[:1])[0]
    packed_out = model.forward_many(calls)[0]
    assert torch.equal(alone, packed_out)


def test_the_memory_estimate_counts_quantized_weights():
    with torch.device("meta"):
        size = ModelSize.of_net(LlamaNet(llada_shape(LLADA_8B)))
    bf16, int8, int4 = (plan(size, torch.bfloat16, CPU, batch=1, quantize=q).weights for q in (None, "int8", "int4"))
    # LLaDA 8B: 7.0e9 of its 8.0e9 weights are in linear layers, at ~1 byte (int8) or ~0.53 (int4:
    # half a byte plus a bfloat16 scale and zero per 128); the 1.0e9 of embedding and head stay 2 bytes
    assert 0.55 < int8 / bf16 < 0.58 and 0.34 < int4 / bf16 < 0.38
    assert "model 9.1 GB bfloat16 (int8 linear layers)" in str(plan(size, torch.bfloat16, CPU, batch=1,
                                                                    quantize="int8"))


def test_the_estimate_matches_what_a_quantized_model_holds(folder):
    model = load_model(folder, device="cpu", quantize="int8")
    held = sum(t.numel() * t.element_size() for t in [*model.net.parameters(), *model.net.buffers()])
    float_model = load_model(folder, device="cpu")
    assert model.memory.quantize == "int8" and model.memory.weights < float_model.memory.weights
    assert abs(model.memory.weights / held - 1) < 0.05
    assert any(isinstance(m, Int8Linear) for m in model.net.modules())


def test_bad_quantize_values_are_refused_in_one_line(folder, tmp_path):
    with pytest.raises(ValueError, match="unknown --quantize 'int3': use int8 or int4"):
        parse_quantize("int3", CPU)
    with pytest.raises(ValueError, match="--quantize int4 runs on a CUDA GPU only, not on cpu"):
        load_model(folder, device="cpu", quantize="int4")
    doc = tmp_path / "doc.txt"
    doc.write_text("def add(a, b):\n    return a + b\n")
    base = ["infill", "--model", str(folder), "--device", "cpu", "--text-file", str(doc), "--span", "15:31"]
    err = io.StringIO()
    assert cli_main([*base, "--quantize", "int4"], stdout=io.StringIO(), stderr=err) == 2
    assert err.getvalue().count("\n") == 1 and err.getvalue().startswith("error: --quantize int4 runs on a CUDA")
    with pytest.raises(SystemExit):  # argparse: "invalid choice: 'int3' (choose from int8, int4)"
        cli_main([*base, "--quantize", "int3"], stdout=io.StringIO(), stderr=io.StringIO())


def test_the_cli_edits_with_int8_weights(folder, tmp_path):
    doc = tmp_path / "doc.txt"
    doc.write_text("def add(a, b):\n    return a + b\n")
    out, err = io.StringIO(), io.StringIO()
    args = ["infill", "--model", str(folder), "--device", "cpu", "--text-file", str(doc), "--span", "15:31",
            "--quantize", "int8", "--steps", "4"]
    assert cli_main(args, stdout=out, stderr=err) == 0, err.getvalue()
    assert "(int8 linear layers)" in err.getvalue()
    assert out.getvalue().startswith("def add(a, b):\n")


def test_tensor_parallel_refuses_quantized_weights():
    err = io.StringIO()
    assert cli_main(["serve", "--tp", "2", "--quantize", "int8"], stdout=io.StringIO(), stderr=err) == 2
    assert err.getvalue() == "error: --quantize int8 does not combine with --tp yet: the shards slice float weights\n"


@pytest.mark.slow
def test_int8_layers_compile_to_the_eager_logits():
    model = tiny_llama(shifted=True, start=True)
    quantize_model(model, "int8")
    ids, positions = torch.randint(10, 300, (1, 40)), torch.arange(30, 40)
    eager = model.logits_at(ids, positions)
    model.compile("default")
    assert torch.allclose(model.logits_at(ids, positions), eager, atol=1e-4)
