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
