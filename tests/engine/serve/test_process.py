"""`python -m engine serve` as a user starts it: a real process on a free port, loading a model folder."""
import os
import signal
import socket
import subprocess
import sys
import time

import httpx
import pytest
from openai import OpenAI

from tests.engine.serve.conftest import FIXTURE, TEXT

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def healthy(server: subprocess.Popen, port: int, seconds: float) -> str:
    """The URL of `server` on `port` once its /health answers; fails if it exits or takes `seconds`."""
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + seconds
    while True:
        assert server.poll() is None, server.stderr.read() if server.stderr else ""
        assert time.monotonic() < deadline, f"the service did not come up in {seconds:g} s"
        try:
            if httpx.get(f"{url}/health").status_code == 200:
                return url
        except httpx.ConnectError:
            time.sleep(0.2)


@pytest.fixture(scope="module")
def process_url():
    port = free_port()
    command = [sys.executable, "-m", "engine", "serve", "--model", str(FIXTURE), "--device", "cpu",
               "--port", str(port), "--max-batch", "4", "--preset", "quality", "--seed", "11"]
    server = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    yield healthy(server, port, 120)
    server.send_signal(signal.SIGINT)
    try:
        server.wait(10)
    finally:
        server.kill()


def test_the_served_process_edits_and_completes_with_its_flags_as_defaults(process_url, model):
    from engine import PRESETS, Span, build_canvas, run
    from engine.correct import corrected
    result = httpx.post(f"{process_url}/v1/edits", json={"text": TEXT, "spans": [[19, 31]]}, timeout=60).json()
    canvas = build_canvas(model.codec, TEXT, [Span(19, 31)], model.max_length)
    expected = run(corrected(model, canvas, PRESETS["quality"].replace(seed=11)))  # scope constraints, no rounds
    assert result["text"] == expected.texts[0]
    with OpenAI(base_url=f"{process_url}/v1", api_key="unused") as client:
        assert [m.id for m in client.models.list()] == ["tiny-dream"]
        done = client.completions.create(model="tiny-dream", prompt=TEXT[:19], suffix=TEXT[31:], max_tokens=4)
    assert done.choices[0].finish_reason in ("stop", "length")


def test_bad_flags_exit_2_with_one_line(tmp_path):
    done = subprocess.run([sys.executable, "-m", "engine", "serve", "--model", str(tmp_path / "nowhere")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and done.stderr.strip().startswith("error: No model at")
    assert len(done.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("flags, message", [
    (["--budget", "0"], "error: --budget must be >= 1 and --max-seconds > 0"),
    (["--max-seconds", "inf"], "error: --budget must be >= 1 and --max-seconds > 0"),
    (["--api-key-file", "/nowhere/keys"], "error: cannot read the API key file /nowhere/keys"),
])
def test_bad_limits_and_key_files_exit_2_before_the_model_loads(flags, message):
    done = subprocess.run([sys.executable, "-m", "engine", "serve", "--model", "/nowhere", *flags],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and done.stderr.strip().startswith(message), done.stderr


def test_a_key_from_the_environment_guards_the_process_and_it_says_so_at_start(tmp_path):
    port = free_port()
    log = tmp_path / "stderr"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "SHARPEN_API_KEY": "s3cret"}
    with open(log, "w") as err:
        server = subprocess.Popen([sys.executable, "-m", "engine", "serve", "--model", str(FIXTURE), "--device", "cpu",
                                   "--port", str(port), "--open-health"], stderr=err, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert server.poll() is None and time.monotonic() < deadline, log.read_text()
            try:
                if httpx.get(f"{url}/health").status_code == 200:
                    break
            except httpx.ConnectError:
                time.sleep(0.2)
        assert httpx.get(f"{url}/v1/models").status_code == 401
        assert httpx.get(f"{url}/v1/models", headers={"Authorization": "Bearer s3cret"}).status_code == 200
        assert "1 API key(s)" in log.read_text() and "/health and /metrics open" in log.read_text()
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(10)
