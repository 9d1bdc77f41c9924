"""A local stand-in for the Hugging Face Hub's HTTP API: the endpoints huggingface_hub calls to pull a
repository (repo info, tree listing, file resolve with Range), served on 127.0.0.1, nothing else.

Tests point huggingface_hub at it (`endpoint=` or HF_ENDPOINT), so `engine.pull` runs the real
download code: cache layout, `.incomplete` blobs and resuming with a Range header.
"""
from __future__ import annotations

import hashlib
import json
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

COMMIT = "0123456789abcdef0123456789abcdef01234567"  # every repo's one revision ("main" resolves to it)
PIECE = 256 * 1024  # bytes written at a time, so a paced download can be interrupted midway


@dataclass
class FakeHub:
    """Repos by id (path -> bytes), the requests seen (method, path, Range), and a pace: seconds
    to wait before each PIECE of a file larger than `paced_over` bytes (a slow link)."""

    repos: dict[str, dict[str, bytes]] = field(default_factory=dict)
    requests: list[tuple[str, str, str | None]] = field(default_factory=list)
    pace: float = 0.0
    paced_over: int = 1 << 20
    drop: dict[str, int] = field(default_factory=dict)  # file name -> bytes sent before the next GET is cut

    def add_folder(self, repo_id: str, folder: Path, extra: dict[str, bytes] | None = None) -> None:
        files = {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}
        self.repos[repo_id] = {**files, **(extra or {})}

    def ranges(self, name: str) -> list[str | None]:
        """The Range header of every GET of a file named `name`."""
        return [r for method, path, r in self.requests if method == "GET" and path.endswith("/" + name)]


def tree_entry(path: str, data: bytes) -> dict:
    entry = {"type": "file", "path": path, "size": len(data), "oid": hashlib.sha1(data).hexdigest()}
    if path.endswith(".safetensors"):  # weights are LFS files on the hub
        entry["lfs"] = {"oid": hashlib.sha256(data).hexdigest(), "size": len(data), "pointerSize": 134}
    return entry


def handler_for(hub: FakeHub) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:  # quiet: the tests read hub.requests
            pass

        def do_HEAD(self) -> None:
            self.answer(body=False)

        def do_GET(self) -> None:
            self.answer(body=True)

        def answer(self, body: bool) -> None:
            path = unquote(urlsplit(self.path).path)
            hub.requests.append((self.command, path, self.headers.get("Range")))
            if m := re.fullmatch(r"/api/models/([^/]+/[^/]+)/revision/(.+)", path):
                self.known(m[1], m[2]) and self.repo_info(m[1], body)
            elif m := re.fullmatch(r"/api/models/([^/]+/[^/]+)/tree/([^/]+)/?(.*)", path):
                self.known(m[1], m[2]) and self.tree(m[1], body)
            elif m := re.fullmatch(r"/([^/]+/[^/]+)/resolve/([^/]+)/(.+)", path):
                self.known(m[1], m[2]) and self.resolve(m[1], m[3], body)
            else:
                self.error(404, "EntryNotFound", "no such route")

        def known(self, repo_id: str, revision: str) -> bool:
            """The repo exists and has `revision` (main, or the one commit); else the hub's 404."""
            if repo_id in hub.repos and revision not in ("main", COMMIT):
                self.error(404, "RevisionNotFound", f"Invalid rev id: {revision}")
                return False
            return True

        def repo(self, repo_id: str) -> dict[str, bytes] | None:
            files = hub.repos.get(repo_id)
            if files is None:
                self.error(404, "RepoNotFound", f"Repository {repo_id} not found")
            return files

        def repo_info(self, repo_id: str, body: bool) -> None:
            if (files := self.repo(repo_id)) is not None:
                self.json({"id": repo_id, "modelId": repo_id, "sha": COMMIT, "private": False,
                           "siblings": [{"rfilename": p} for p in files]}, body)

        def tree(self, repo_id: str, body: bool) -> None:
            if (files := self.repo(repo_id)) is not None:
                self.json([tree_entry(p, data) for p, data in files.items()], body)

        def resolve(self, repo_id: str, name: str, body: bool) -> None:
            files = self.repo(repo_id)
            if files is None:
                return
            if name not in files:
                self.error(404, "EntryNotFound", f"{name} does not exist in {repo_id}", commit=True)
                return
            data = files[name]
            etag = hashlib.sha256(data).hexdigest() if name.endswith(".safetensors") else hashlib.sha1(data).hexdigest()
            start = int(m[1]) if (m := re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range") or "")) else 0
            self.send_response(206 if start else 200)
            self.send_header("X-Repo-Commit", COMMIT)
            self.send_header("ETag", f'"{etag}"')
            self.send_header("Content-Length", str(len(data) - start))
            if start:
                self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            self.end_headers()
            if body:
                cut = hub.drop.pop(name, None)  # once: the connection drops after `cut` bytes
                self.stream(data[start:], paced=len(data) > hub.paced_over, cut=cut)

        def stream(self, data: bytes, paced: bool, cut: int | None = None) -> None:
            if cut is not None:
                self.wfile.write(data[:cut])
                self.wfile.flush()
                self.close_connection = True
                self.connection.shutdown(2)  # socket.SHUT_RDWR: the client sees the body end early
                return
            for at in range(0, len(data), PIECE):
                if paced and hub.pace:
                    time.sleep(hub.pace)
                try:
                    self.wfile.write(data[at:at + PIECE])
                    self.wfile.flush()
                except (BrokenPipeError, ConnectionResetError):  # the client went away (interrupted)
                    return

        def json(self, item: object, body: bool) -> None:
            raw = json.dumps(item).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            if body:
                self.wfile.write(raw)

        def error(self, status: int, code: str, message: str, commit: bool = False) -> None:
            raw = json.dumps({"error": message}).encode()
            self.send_response(status)
            self.send_header("X-Error-Code", code)
            self.send_header("X-Error-Message", message)
            if commit:
                self.send_header("X-Repo-Commit", COMMIT)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(raw)

    return Handler


@contextmanager
def serving(hub: FakeHub) -> Iterator[str]:
    """`hub` on a free port of 127.0.0.1 in a thread; yields its base URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler_for(hub))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
