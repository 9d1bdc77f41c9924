"""An engine service (`python -m engine serve`) as a child process, and the few HTTP calls its clients make.

The load test and the replica test start real services this way: the command a deployment runs,
on a free local port, its output kept in a log file that an error quotes.
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from prometheus_client.parser import text_string_to_metric_families

from ..serve.guard import read_keys

REPO = Path(__file__).resolve().parents[2]


class ServiceError(RuntimeError):
    """The service did not start, or died: the message ends with its log's last lines."""


def free_port() -> int:
    """A TCP port nothing listens on right now (the OS picks it)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def serve_command(port: int, options: Sequence[str] = ()) -> list[str]:
    """The service's command line, as the Dockerfile and compose file run it (there on 0.0.0.0)."""
    return [sys.executable, "-m", "engine", "serve", "--host", "127.0.0.1", "--port", str(port), *options]


@dataclass
class Service:
    """A running `python -m engine serve` child process."""

    process: subprocess.Popen
    url: str
    log: Path

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def cpu_seconds(self) -> float | None:
        """User + system CPU seconds the process has used (Linux /proc; None elsewhere). On a shared
        machine this is its cost, where wall time also counts waiting for a core."""
        try:
            fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return None
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime, in ticks

    def wait_ready(self, timeout: float) -> None:
        """Poll GET /health until it answers 200; raise with the log if the process exits or time runs out."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ServiceError(f"the service exited with status {self.process.returncode}:\n{self.log_tail()}")
            try:
                if get(self.url + "/health", timeout=2).status == 200:
                    return
            except OSError:  # refused while it loads the model
                pass
            time.sleep(0.2)
        raise ServiceError(f"the service did not answer /health within {timeout:.0f} s:\n{self.log_tail()}")

    def stop(self) -> None:
        """SIGTERM (uvicorn finishes its requests), then SIGKILL if it hangs."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@contextmanager
def running_service(options: Sequence[str], log: Path, *, ready_timeout: float = 600.0,
                    env: dict[str, str] | None = None) -> Iterator[Service]:
    """Start the service with `options` (e.g. --model PATH --max-batch 1) on a free port, with `env`
    added to this process's environment; stop it on exit."""
    port = free_port()
    with open(log, "wb") as out:
        process = subprocess.Popen(serve_command(port, options), cwd=REPO, stdout=out, stderr=subprocess.STDOUT,
                                   env={**os.environ, **(env or {})})
    service = Service(process, f"http://127.0.0.1:{port}", log)
    try:
        service.wait_ready(ready_timeout)
        yield service
    finally:
        service.stop()


@dataclass(frozen=True)
class Reply:
    """An HTTP answer: its status and its body, parsed as JSON where it is JSON (else the raw text)."""

    status: int
    body: Any
    headers: dict[str, str]


def key_header() -> dict[str, str]:
    """The service's key as these clients send it: SHARPEN_API_KEY (or the first of SHARPEN_API_KEY_FILE),
    the variables `python -m engine serve` itself reads (engine/serve/guard.py)."""
    keys = read_keys()
    return {"Authorization": f"Bearer {keys[0]}"} if keys else {}


def get(url: str, timeout: float = 30) -> Reply:
    with urllib.request.urlopen(urllib.request.Request(url, headers=key_header()), timeout=timeout) as response:
        return Reply(response.status, response.read().decode(), dict(response.headers))


def post_json(url: str, payload: dict, timeout: float = 600) -> Reply:
    """POST `payload` as JSON; an HTTP error status is an answer (its JSON error), not an exception."""
    request = urllib.request.Request(url, json.dumps(payload).encode(),
                                     {"Content-Type": "application/json", **key_header()})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return Reply(response.status, _json_or_text(response.read()), dict(response.headers))
    except urllib.error.HTTPError as err:
        return Reply(err.code, _json_or_text(err.read()), dict(err.headers))


def post_stream(url: str, payload: dict, timeout: float = 600) -> tuple[int, list[Any]]:
    """POST with `"stream": true`; the status and every NDJSON line, parsed, in the order they came."""
    request = urllib.request.Request(url, json.dumps({**payload, "stream": True}).encode(),
                                     {"Content-Type": "application/json", **key_header()})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, [json.loads(line) for line in _lines(response) if line.strip()]
    except urllib.error.HTTPError as err:
        return err.code, [_json_or_text(err.read())]


def _lines(response: IO[bytes]) -> Iterator[bytes]:
    yield from iter(response.readline, b"")


def _json_or_text(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode(errors="replace")


def metric_samples(exposition: str) -> dict[str, float]:
    """Prometheus text -> {sample name with its labels: value}, e.g. {"sharpen_batch_size_sum": 12.0}."""
    samples = {}
    for family in text_string_to_metric_families(exposition):
        for sample in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
            samples[sample.name + (f"{{{labels}}}" if labels else "")] = sample.value
    return samples


def metrics(service_url: str) -> dict[str, float]:
    return metric_samples(get(service_url + "/metrics").body)
