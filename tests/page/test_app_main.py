"""`python app.py` refuses what it cannot run with one line, before anything starts."""
import pytest


@pytest.mark.parametrize("device, message", [("bogus", "unknown device 'bogus'"),
                                             ("cuda:7", "no CUDA GPU|cuda")])
def test_a_device_the_machine_lacks_is_one_line_not_a_traceback(tmp_path, monkeypatch, device, message):
    import torch

    import app
    if device.startswith("cuda") and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    monkeypatch.setenv("SHARPEN_DATA", str(tmp_path))
    with pytest.raises(SystemExit, match=f"error: .*({message})"):
        app.main(["--model", "tests/fixtures/tiny-dream", "--device", device])


def test_a_missing_model_folder_is_one_line(tmp_path, monkeypatch):
    import app
    monkeypatch.setenv("SHARPEN_DATA", str(tmp_path))
    with pytest.raises(SystemExit, match="error: .*nowhere"):
        app.main(["--model", str(tmp_path / "nowhere")])


def test_a_start_says_what_it_is_doing_before_each_slow_step(tmp_path):
    """The first `make run` imports torch and gradio, then loads the model: each is said before it
    starts (a missing model still ends the start, with one line)."""
    import os
    import subprocess
    import sys
    env = dict(os.environ, SHARPEN_DATA=str(tmp_path))
    done = subprocess.run([sys.executable, "app.py", "--model", str(tmp_path / "nowhere")], capture_output=True,
                          text=True, timeout=300, env=env)
    lines = done.stderr.splitlines()
    steps = ["starting: importing torch", "loading the model:", "error:"]
    found = [next((i for i, line in enumerate(lines) if step in line), None) for step in steps]
    assert None not in found and found == sorted(found), done.stderr


def test_a_models_folder_that_is_not_there_is_one_line_before_the_model_loads(tmp_path, monkeypatch):
    import app
    monkeypatch.setenv("SHARPEN_DATA", str(tmp_path))
    with pytest.raises(SystemExit, match=r"^error: --models .*elsewhere: no such folder$"):
        app.main(["--model", str(tmp_path / "nowhere"), "--models", str(tmp_path / "elsewhere")])


def test_the_picker_starts_on_the_pages_model_and_offers_the_models_folders(tmp_path):
    """app.picker_models: the model the page runs first (a folder outside --models), then the catalog."""
    import argparse
    import shutil

    import app
    from engine import load_model

    tiny = "tests/fixtures/tiny-dream"
    shutil.copytree(tiny, tmp_path / "other")
    model = load_model(tiny, device="cpu")
    from engine.load import add_load_flags
    parser = argparse.ArgumentParser()
    add_load_flags(parser)  # app.py's load flags as they are, so a flag added there reaches this test
    args = parser.parse_args(["--model", tiny, "--device", "cpu"])
    args.models = [tmp_path]
    models = app.picker_models(model, args)
    names = [e.name for e in models.entries]
    assert models.current == tiny and names[0] == tiny and str(tmp_path / "other") in names
    assert models.entries[0].family == "dream" and models.entries[0].memory == model.memory
