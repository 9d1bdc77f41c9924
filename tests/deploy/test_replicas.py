"""Two engine services behind Debian's nginx, configured by the repository's deploy/nginx.conf: every
edit (plain and streamed) comes back right through the balancer, and both replicas served some.

Correctness, not throughput: the services run the tests' tiny model.
"""
from __future__ import annotations

import re
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pytest

from engine.tools import loadtest
from engine.tools.service import free_port, metrics, post_json, post_stream, running_service

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "deploy" / "nginx.conf"
TINY = REPO / "tests" / "fixtures" / "tiny-dream"
NGINX = shutil.which("nginx", path="/usr/sbin:/usr/bin")
REQUESTS_METRIC = "sharpen_requests_total"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(NGINX is None, reason="nginx is not installed (scripts/setup.sh dev installs it as root)"),
]


def site_config(replicas: list[str], listen: str) -> str:
    """deploy/nginx.conf with its sample upstream servers replaced by `replicas` and `listen 80` by
    `listen`; everything else verbatim, so the test runs what a deployment runs."""
    sample = SAMPLE.read_text()
    servers = re.findall(r"^ *server \S+:\d+;\n", sample, flags=re.M)
    assert len(servers) == 2, "deploy/nginx.conf should list two sample replicas under upstream"
    indent = servers[0][:len(servers[0]) - len(servers[0].lstrip())]
    site = sample.replace(servers[0], "".join(f"{indent}server {r};\n" for r in replicas), 1)
    site = site.replace(servers[1], "", 1)
    site, listens = re.subn(r"\blisten 80;", f"listen {listen};", site)
    assert listens == 1, "deploy/nginx.conf should have one `listen 80;`"
    return site


def main_config(folder: Path, site: Path) -> str:
    """What Debian's /etc/nginx/nginx.conf provides, for a non-root nginx in `folder`, in the foreground."""
    temp = "\n".join(f"    {kind}_temp_path {folder / kind};" for kind in ("client_body", "proxy", "fastcgi",
                                                                            "uwsgi", "scgi"))
    return (f"daemon off;\nworker_processes 1;\npid {folder / 'nginx.pid'};\nerror_log {folder / 'error.log'};\n"
            f"events {{ worker_connections 256; }}\n"
            f"http {{\n    access_log {folder / 'access.log'};\n{temp}\n    include {site};\n}}\n")


@contextmanager
def running_nginx(folder: Path, replicas: list[str]) -> Iterator[str]:
    """nginx in front of `replicas` (host:port), on a free port; yields its URL."""
    port = free_port()
    site = folder / "sharpen.conf"
    site.write_text(site_config(replicas, f"127.0.0.1:{port}"))
    conf = folder / "nginx.conf"
    conf.write_text(main_config(folder, site))
    command = [NGINX, "-p", str(folder), "-c", str(conf), "-e", str(folder / "error.log")]
    checked = subprocess.run([*command, "-t"], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stderr
    process = subprocess.Popen(command, stderr=subprocess.PIPE)
    try:
        wait_listening(port, process)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=20)


def wait_listening(port: int, process: subprocess.Popen, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, f"nginx exited: {process.stderr.read().decode() if process.stderr else ''}"
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"nginx did not listen on {port} within {timeout} s")


def edits_served(replica_url: str) -> float:
    """Edits this replica answered with 200, by its own /metrics (its /health polls do not count)."""
    wanted = f'{REQUESTS_METRIC}{{route="/v1/edits",status="200"}}'
    return metrics(replica_url).get(wanted, 0.0)


def test_site_config_swaps_only_the_replicas_and_the_port():
    site = site_config(["127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3"], "127.0.0.1:9")
    assert "10.0.0.1" not in site and "listen 80;" not in site
    assert site.count("    server 127.0.0.1:") == 3 and "listen 127.0.0.1:9;" in site
    unchanged = [line for line in SAMPLE.read_text().splitlines() if "server 10." not in line and "listen" not in line]
    assert all(line in site.splitlines() for line in unchanged)


def test_two_replicas_behind_nginx_answer_every_edit(tmp_path, monkeypatch):
    # As deploy/nginx.conf's header says: a key on every replica (the clients send it), the Host name
    # nginx sets, /health and /metrics open for this test's polls.
    monkeypatch.setenv("SHARPEN_API_KEY", "replica-key")  # the replicas read it; engine.tools.service sends it
    options = ["--model", str(TINY), "--max-batch", "4", "--allowed-host", "sharpen_engine", "--open-health"]
    with ExitStack() as stack:
        replicas = [stack.enter_context(running_service(options, tmp_path / f"replica-{i}.log", ready_timeout=180))
                    for i in range(2)]
        balancer = stack.enter_context(running_nginx(tmp_path, [r.url.removeprefix("http://") for r in replicas]))
        tokenizer = loadtest.tokenizer_of(replicas[0].url)
        docs = loadtest.documents(tokenizer, loadtest.source_text(), 6, 96)
        edits = [loadtest.client_edits(tokenizer, doc, c, 1, 6)[0] for c, doc in enumerate(docs)]

        for edit in edits[:4]:
            assert loadtest.check(edit, post_json(balancer + "/v1/edits", edit.payload(), timeout=120)) is None
        for edit in edits[4:]:
            status, lines = post_stream(balancer + "/v1/edits", edit.payload(), timeout=120)
            assert status == 200 and lines, lines
            *steps, last = lines
            assert steps, "a streamed edit sends its steps before the end"
            assert last.get("done") is True and loadtest.check_text(edit, last["text"]) is None

        monkeypatch.delenv("SHARPEN_API_KEY")
        unkeyed = post_json(balancer + "/v1/edits", edits[0].payload(), timeout=120)
        assert unkeyed.status == 401 and "Authorization: Bearer KEY" in unkeyed.body["error"]  # nginx's own
        per_replica = [edits_served(r.url) for r in replicas]
    assert all(n >= 1 for n in per_replica), f"edits served per replica: {per_replica}"
    assert sum(per_replica) == len(edits), "each edit was served once"
