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
