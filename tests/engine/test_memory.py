"""The memory estimate at load: right sizes, printed, and a clear refusal before any weight is read."""
import io
import logging

import pytest
import torch

from engine import load_model
from engine.cli import main as cli_main
from engine.families.llada import llada_shape
from engine.families.llama_net import LlamaNet
from engine.load import parse_dtype
from engine.memory import PLANNED_TOKENS, ModelSize, ModelTooLarge, plan
from engine.tools.speed import LLADA_8B
from tests.tiny import save_tiny_llada


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return save_tiny_llada(tmp_path_factory.mktemp("llada") / "tiny", dtype=torch.bfloat16)


def test_llada_8b_estimate_has_its_published_size():
    with torch.device("meta"):
        net = LlamaNet(llada_shape(LLADA_8B))
    size = ModelSize.of_net(net)
    assert abs(size.params / 8.0e9 - 1) < 0.01  # "LLaDA 8B": 8.02e9 parameters
    memory = plan(size, torch.bfloat16, torch.device("cpu"), batch=8)
    # every layer's keys and values, 4096 positions x 4096 wide, 8 candidates, 2 bytes
    assert memory.cache == 32 * 2 * 4096 * 4096 * 8 * 2
    assert str(memory).startswith("model 16.0 GB bfloat16 + cache 17.2 GB at 4096 tokens x 8 + activations")
    assert plan(size, torch.float32, torch.device("cpu"), batch=8).weights == 2 * memory.weights


def test_a_long_context_is_planned_at_an_editors_canvas_not_its_whole_context():
    # Qwen3-0.6B's released shape: 28 layers, width 1024, 8 KV heads of 128, context 40,960
    size = ModelSize(params=596_000_000, layers=28, width=1024, kv_width=1024, ffn=3072, vocab=151_936,
                     max_length=40_960, stored=torch.bfloat16)
    memory = plan(size, torch.float32, torch.device("cpu"))
    assert memory.tokens == PLANNED_TOKENS < size.max_length
    assert memory.total < 24e9  # fits the laptop it is meant for; at 40,960 tokens it would not
    assert plan(size, torch.float32, torch.device("cpu"), tokens=40_960).total > 24e9
    short = ModelSize(**{**size.__dict__, "max_length": 1024})
    assert plan(short, torch.float32, torch.device("cpu")).tokens == 1024


def test_folder_size_comes_from_the_headers(folder):
    size = ModelSize.of_folder(folder, {"n_layers": 2, "d_model": 32, "n_heads": 4, "n_kv_heads": 2})
    model = load_model(folder, device="cpu")
    assert size.params == sum(p.numel() for p in model.net.parameters())
    assert size.stored == torch.bfloat16 and (size.layers, size.kv_width) == (2, 16)


def test_load_logs_the_estimate_and_keeps_it(folder, caplog):
    with caplog.at_level(logging.INFO, logger="engine.load"):
        model = load_model(folder, device="cpu")
    assert model.memory is not None and model.memory.fits
    assert "memory: model 0.0 GB float32 + cache" in caplog.text and "GB free on cpu" in caplog.text


def test_a_model_that_will_not_fit_is_refused_before_its_weights_are_read(folder, monkeypatch):
    monkeypatch.setattr("engine.memory.free_memory", lambda device: 1000)
    monkeypatch.setattr("engine.families.llada.load", lambda *a: pytest.fail("read the weights first"))
    with pytest.raises(ModelTooLarge, match=r"will not fit: model 0\.0 GB float32 .* of 0\.0 GB free .*--dtype"):
        load_model(folder, device="cpu")


def test_the_cli_prints_the_estimate_and_refuses_with_it(folder, tmp_path, monkeypatch):
    doc = tmp_path / "doc.txt"
    doc.write_text("def add(a, b):\n    return a + b\n")
    args = ["infill", "--model", str(folder), "--device", "cpu", "--text-file", str(doc), "--span", "15:31"]
    out, err = io.StringIO(), io.StringIO()
    assert cli_main(args + ["--dtype", "bfloat16", "--steps", "2"], out, err) == 0
    assert "memory: model 0.0 GB bfloat16 + cache" in err.getvalue()
    assert out.getvalue().startswith("def add(a, b):\n")
    monkeypatch.setattr("engine.memory.free_memory", lambda device: 1000)
    err = io.StringIO()
    assert cli_main(args, io.StringIO(), err) == 2
    assert err.getvalue().startswith("error: the model will not fit: model 0.0 GB float32")


def test_dtype_by_name_loads_those_weights_and_bad_names_are_refused(folder):
    model = load_model(folder, device="cpu", dtype="bfloat16")
    assert {p.dtype for p in model.net.parameters()} == {torch.bfloat16}
    assert load_model(folder, device="cpu").net.embed.weight.dtype == torch.float32  # CPU default
    with pytest.raises(ValueError, match="unknown dtype 'fp8': use one of bfloat16, float16, float32"):
        parse_dtype("fp8")
