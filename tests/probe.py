"""Probe the running page, the engine service and the CLI: bad input, kill -9 mid-save, memory.

`python -m tests.probe` starts the page in a child process on 127.0.0.1 (a scripted model by
default, `--model bundled` for the bundled one), so its memory is measured alone and kill -9 hits
only it; drives it with gradio_client sessions and gradio's REST API (JSON with ASCII escapes,
so even lone surrogates arrive); runs the CLI on the tiny fixture model; and prints its figures:
tries, tracebacks, lost revisions, peak memory. It also starts `python -m engine serve` on the
tiny fixture and sends it what an attacker or a clumsy client would (issue 20): it prints tries,
clean refusals, 500s, hangs, kills and the service's memory before, at its peak and after. It is
bounded: every request has a timeout and the session check opens no more sessions once the page's
resident memory passes `--max-rss-mb`.
Its last line is the figures as JSON. docs/PERFORMANCE.md has its memory figures.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
TINY_MODEL = REPO / "tests" / "fixtures" / "tiny-dream"
TRACEBACK = "Traceback (most recent call last)"
TRY_TIMEOUT = 120  # seconds one request may take before the probe counts it as hung
SESSION_TIMEOUT = 900  # seconds one heavy regeneration may take (the bundled model on a CPU is slow)
PAGE_LOGGER = " page: "  # how the page's log records name their logger (the child's basicConfig)
UNHANDLED = '"error": null'  # gradio's answer to an unhandled exception (no message to show)
LINE = "It was the best of times, the quick brown fox jumps over the lazy dog. def add(a, b): return a + b\n"

# (what, document, selection start, end, changes to the dial): each one is a regeneration request.
PAGE_BAD = [
    ("temperature nan", LINE, 4, 9, {"temperature": "nan"}),
    ("temperature inf", LINE, 4, 9, {"temperature": "inf"}),
    ("threshold nan", LINE, 4, 9, {"threshold": "nan"}),
    ("reversed span", LINE, 9, 4, {}),
    ("span past the end", LINE, 4, 10_000, {}),
    ("NUL bytes", "abc\x00def " + LINE, 4, 9, {}),
    ("lone surrogate", "ab\ud800cd " + LINE, 4, 9, {}),
    ("no document", None, 4, 9, {}),
    ("huge candidates", LINE, 4, 9, {"candidates": 10**9}),
    ("huge length", LINE, 4, 9, {"mode": "N tokens", "n": 10**7}),
    ("huge seed", LINE, 4, 9, {"seed": 2**70}),
    ("true as a count", LINE, 4, 9, {"candidates": "true"}),
    ("HTML in constraint", LINE, 4, 9, {"constraint": "<img src=x onerror=alert(1)>" * 5}),
    ("N tokens 3x10^7", LINE, 4, 9, {"mode": "N tokens", "n": 3 * 10**7}),
    ("N tokens abc", LINE, 4, 9, {"mode": "N tokens", "n": "abc"}),
    ("dial abc", LINE, 4, 9, {"steps": "abc"}),
    ("dial None", LINE, 4, 9, {"threshold": None}),
    ("one-element selection", LINE, 4, None, {}),
    ("span inside a ZWJ emoji", "family: \U0001F468\u200D\U0001F469\u200D\U0001F467 ok " + LINE, 10, 11, {}),
]
CLI_FLAG_BAD = [
    ("temperature nan", ["--temperature", "nan"]),
    ("reversed span", ["--span", "10:5"]),
    ("device bogus", ["--device", "bogus"]),
]
CLI_JSONL_BAD = [
    ("temperature inf", {"text": LINE, "spans": [[4, 9]], "temperature": float("inf")}),
    ("threshold nan", {"text": LINE, "spans": [[4, 9]], "threshold": float("nan")}),
    ("reversed span", {"text": LINE, "spans": [[9, 4]]}),
    ("NUL bytes", {"text": "abc\x00def " + LINE, "spans": [[4, 9]]}),
    ("lone surrogate", {"text": "ab\ud800cd " + LINE, "spans": [[4, 9]]}),
    ("huge candidates", {"text": LINE, "spans": [[4, 9]], "candidates": 10**9}),
    ("true as a count", {"text": LINE, "spans": [[4, 9]], "candidates": True}),
    ("HTML in constraint", {"text": LINE, "spans": [[4, 9]], "constraint": "<img src=x>"}),
]


def scripted_model():
    """The tests' scripted model (no weights): it wants ordinary words at every position."""
    import torch

    from engine import TextCodec
    from tests.tiny import ScriptedModel, byte_bpe_tokenizer
    codec = TextCodec.from_tokenizer(byte_bpe_tokenizer(bos=True))
    words = torch.tensor(codec.encode(LINE * 400)[:4096])
    confidence = 0.3 + 0.65 * torch.rand(4096, generator=torch.Generator().manual_seed(0))
    return ScriptedModel(codec, words, confidence)


def serve(model_name: str, db: str, port: int) -> None:
    """The child: the page for `model_name` on 127.0.0.1:`port`, until killed; logs as app.py does."""
    import logging

    from editor.history import History
    from engine import load_model
    from page.access import Limits
    from page.demo import build_demo, launch
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if model_name == "scripted":
        model = scripted_model()
    else:  # the bundled model caches its weights under SHARPEN_DATA (the repository's data/ if unset)
        model = load_model(None if model_name == "bundled" else model_name)
    # The sessions check is heavy on purpose (memory); the per-request budget is tested on its own.
    unbounded = Limits(budget=10**12)
    demo = launch(build_demo(model, History(db), unbounded), server_name="127.0.0.1", server_port=port, quiet=True,
                  prevent_thread_lock=True)
    print("READY", flush=True)
    demo.block_thread()


# -- the page in a child process ------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def running_page(model: str, db: str, folder: Path, timeout: float = 300) -> Iterator[subprocess.Popen]:
    """The page in a child process (stderr to `folder`/page.log); its url is `child.url`."""
    port = free_port()
    env = dict(os.environ, GRADIO_ANALYTICS_ENABLED="False", HF_HUB_OFFLINE="1", TMPDIR=str(folder),
               GRADIO_TEMP_DIR=str(folder / "gradio"), GRADIO_HEARTBEAT_INTERVAL="1", PYTHONUNBUFFERED="1")
    log = open(folder / "page.log", "a")
    child = subprocess.Popen([sys.executable, "-m", "tests.probe", "serve", model, db, str(port)], cwd=REPO,
                             env=env, stdout=subprocess.PIPE, stderr=log, text=True)
    child.url, child.log = f"http://127.0.0.1:{port}/", folder / "page.log"  # type: ignore[attr-defined]
    try:
        ready = threading.Timer(timeout, child.kill)
        ready.start()
        lines = iter(child.stdout.readline, "")
        started = any(line.startswith("READY") for line in lines)  # gradio prints blank lines first
        ready.cancel()
        if not started:
            raise RuntimeError(f"the page did not start; see {folder / 'page.log'}")
        yield child
    finally:
        if child.poll() is None:
            child.terminate()
            try:
                child.wait(10)
            except subprocess.TimeoutExpired:
                child.kill()
        log.close()


def memory_mb(pid: int) -> dict[str, float]:
    """Resident memory of a process now and at its peak (VmRSS, VmHWM), in MB."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines())
    return {"rss": int(fields["VmRSS"].split()[0]) / 1024, "peak": int(fields["VmHWM"].split()[0]) / 1024}


def client(url: str):
    from gradio_client import Client
    return Client(url, verbose=False, download_files=False)


def tracebacks_in(path: Path) -> int:
    """Tracebacks in a log, less gradio's own print of every gr.Error (a refusal shown in the page)
    and less the page's own log of a refusal it showed as a message (logged with its traceback,
    on purpose, by a record that names the page's logger)."""
    pieces = path.read_text(errors="replace").split(TRACEBACK)
    count = 0
    for before, chunk in zip(pieces, pieces[1:]):
        shown = any(line.startswith("gradio.exceptions.Error") for line in chunk.splitlines())
        logged = PAGE_LOGGER in (before.rstrip().splitlines() or [""])[-1]
        count += not (shown or logged)
    return count


def say(line: str) -> None:
    print(f"[probe] {line}", file=sys.stderr, flush=True)


def regenerate_args(text: Any, a: int, b: int, **given: Any) -> tuple:
    """The page's regenerate inputs: document with its selection, language, length mode, N, constraint,
    heatmap, then the dial in SamplerSettings' field order (the quality preset, with `given`
    values, even nonsense ones, put in by field name)."""
    from engine import PRESETS
    from engine.settings import knobs
    from page.dial import dial_values
    page = dict(language="text", mode="keep", n=8, constraint="", ends_with="", include="", heatmap=False)
    page.update({k: v for k, v in given.items() if k in page})
    dial = dial_values(PRESETS["quality"])
    names = [k.name for k in knobs()]
    for name, value in given.items():
        if name not in page:
            dial[names.index(name)] = value
    selection = [a] if b is None else [a, b]  # b None: a broken client's one-element selection
    document = {"text": text, "selection": selection}  # the document editor's value: text, UTF-16 selection
    return (document, page["language"], page["mode"], page["n"], page["constraint"], page["ends_with"],
            page["include"], page["heatmap"], *dial)


# -- the checks -------------------------------------------------------------------------------------

def call(url: str, api: str, data: tuple) -> str:
    """One request through gradio's REST API (JSON with ASCII escapes, so lone surrogates travel);
    its event stream as text."""
    import httpx
    endpoint = f"{url}gradio_api/call/{api}"
    posted = httpx.post(endpoint, content=json.dumps({"data": list(data)}), timeout=TRY_TIMEOUT,
                        headers={"content-type": "application/json"})
    if posted.status_code != 200:
        return f"HTTP {posted.status_code}: {posted.text}"
    return httpx.get(f"{endpoint}/{posted.json()['event_id']}", timeout=TRY_TIMEOUT).text


def page_bad_inputs(child: subprocess.Popen) -> dict:
    """Each bad request once. A traceback: gradio's answer to an unhandled exception (an error
    without a message), a traceback in the answer, or one in the page's log. HTML echoed raw in an
    answer is counted too."""
    out: dict[str, Any] = {"tries": 0, "tracebacks": 0, "accepted": 0, "html_echoed": 0, "failures": []}
    for what, text, a, b, dial in PAGE_BAD:
        before = tracebacks_in(child.log)
        try:
            answer = call(child.url, "regenerate_selection", regenerate_args(text, a, b, **dial))
        except Exception as err:  # noqa: BLE001 - a hung or broken request is classified too
            answer = f"{type(err).__name__}: {err}"
        time.sleep(0.2)  # the log line of an unhandled error follows the answer
        out["tries"] += 1
        say(f"page {what}: {answer[-160:]!r}")
        if UNHANDLED in answer or TRACEBACK in answer or tracebacks_in(child.log) > before:
            out["tracebacks"] += 1
            out["failures"].append(what)
        out["accepted"] += "event: complete" in answer
        if "<img" in answer:
            out["html_echoed"] += 1
    return out


def cli_bad_inputs(folder: Path, flag_tries: int, line_tries: int) -> dict:
    """`python -m engine infill` on the tiny fixture: bad flags one process each, bad JSONL lines in
    one process (resumed after the line that killed it); a traceback on stderr counts, and so does
    a bad input that is accepted (exit status 0, or a JSONL answer without an error)."""
    out: dict[str, Any] = {"tries": 0, "tracebacks": 0, "accepted": 0, "failures": []}
    doc = folder / "doc.txt"
    doc.write_text(LINE)
    base = [sys.executable, "-m", "engine", "infill", "--model", str(TINY_MODEL)]
    for what, flags in CLI_FLAG_BAD[:flag_tries]:
        spans = [] if "--span" in flags else ["--span", "4:9"]
        done = subprocess.run(base + ["--text-file", str(doc), *spans, *flags], cwd=REPO, capture_output=True,
                              text=True, timeout=300)
        out["tries"] += 1
        out["accepted"] += done.returncode == 0
        if TRACEBACK in done.stderr:
            out["tracebacks"] += 1
            out["failures"].append(f"flag: {what}")
    lines = CLI_JSONL_BAD[:line_tries]
    while lines:
        batch = folder / "bad.jsonl"
        batch.write_text("".join(json.dumps(item) + "\n" for _, item in lines))
        done = subprocess.run(base + ["--jsonl", str(batch)], cwd=REPO, capture_output=True, text=True, timeout=300)
        answers = done.stdout.splitlines()
        answered = len(answers)
        out["accepted"] += sum('"error"' not in answer for answer in answers)
        out["tries"] += min(answered + 1, len(lines))
        if TRACEBACK not in done.stderr:
            break
        out["tracebacks"] += 1
        out["failures"].append(f"jsonl: {lines[min(answered, len(lines) - 1)][0]}")
        lines = lines[answered + 1:]
    return out


def kill_mid_save(model: str, folder: Path, rounds: int) -> dict:
    """Save revisions in a loop, kill -9 the page at a random moment, reopen the database and
    look for every revision the page acknowledged (and run SQLite's integrity check)."""
    db = f"sqlite:///{folder / 'kill.db'}"
    acked: dict[int, str] = {}
    out = {"rounds": 0, "saves": 0, "lost_revisions": 0, "integrity": "ok"}
    rng = random.Random(0)
    for r in range(rounds):
        kill_round(model, db, folder, r, rng, acked, out)
    return out


def kill_round(model: str, db: str, folder: Path, r: int, rng: random.Random, acked: dict[int, str],
               out: dict) -> None:
    """One round of kill_mid_save: save until a random moment, SIGKILL, then check every revision
    acknowledged so far in the reopened database."""
    from sqlalchemy import create_engine, text

    with running_page(model, db, folder) as child:
        stop = threading.Event()

        def saves() -> None:  # each through the REST API: a new document and its first revision
            i = 0
            while not stop.is_set():
                body = f"round {r} save {i}\n" + LINE
                try:
                    saved = re.search(r"Saved as revision \d+", call(child.url, "save", (body, "kill.txt", "text")))
                except Exception:  # noqa: BLE001 - the kill ends the loop
                    return
                if saved:  # each save is a new document's revision 1: the unique body says which
                    acked[len(acked)] = body
                i += 1
        writer = threading.Thread(target=saves, daemon=True)
        writer.start()
        deadline = time.time() + 60
        while len(acked) <= out["saves"] and time.time() < deadline:
            time.sleep(0.01)
        time.sleep(rng.uniform(0.05, 0.5))
        os.kill(child.pid, signal.SIGKILL)
        child.wait(10)
        stop.set()
        writer.join(10)
    out["rounds"] += 1
    out["saves"] = len(acked)
    with create_engine(db).connect() as con:
        stored = {row[0] for row in con.execute(text("SELECT text FROM revisions"))}
    out["lost_revisions"] = sum(body not in stored for body in acked.values())
    with create_engine(db).connect() as con:
        out["integrity"] = con.execute(text("PRAGMA integrity_check")).scalar()


def many_sessions(child: subprocess.Popen, sessions: int, span: int, candidates: int, doc_tokens: int,
                  max_rss_mb: float, settle_s: float = 4.0) -> dict:
    """Open sessions one after another, each running one heavy regeneration (a `span`-token span,
    `candidates` candidates, one forward per token, in a ~`doc_tokens`-token document) and keeping
    its run; then close them all and see what the page gives back."""
    text = LINE * max(1, doc_tokens // 30)  # a line is 30 tokens of the scripted model
    mid = len(text) // 2
    start = memory_mb(child.pid)
    out = {"sessions": 0, "rss_start_mb": round(start["rss"]), "seconds": 0.0}
    clients, t0 = [], time.perf_counter()
    try:
        for _ in range(sessions):
            if memory_mb(child.pid)["rss"] > max_rss_mb:
                out["stopped_at_rss_cap"] = True
                break
            c = client(child.url)
            clients.append(c)
            job = c.submit(*regenerate_args(text, mid, mid + 40, mode="N tokens", n=span, candidates=candidates),
                           api_name="/regenerate_selection")
            job.result(timeout=SESSION_TIMEOUT)
            out["sessions"] += 1
            say(f"session {out['sessions']}: {memory_mb(child.pid)['rss']:.0f} MB resident")
        out["seconds"] = round(time.perf_counter() - t0, 1)
        held = memory_mb(child.pid)
        out["rss_held_mb"] = round(held["rss"])
        out["per_session_mb"] = round((held["rss"] - start["rss"]) / max(out["sessions"], 1), 1)
    finally:
        for c in clients:
            c.close()
    time.sleep(settle_s)  # the page notices closed sessions at its next heartbeat (1 s here)
    end = memory_mb(child.pid)
    out.update(rss_after_close_mb=round(end["rss"]), peak_rss_mb=round(end["peak"]))
    return out


# -- the engine service in a child process (issue 20) -------------------------------------------------

SERVICE_MAX_SECONDS = 5.0  # the probed service's --max-seconds: an edit must answer within twice it
EDIT = {"text": "def add(a, b):\n    return a + b\n", "spans": [[19, 31]]}
JSON_TYPE = {"content-type": "application/json"}
HUGE = {"2^64": 2**64, "1e308": 1e308, "10^30": 10**30}


def service_requests() -> list[tuple[str, str, bytes, dict[str, str]]]:
    """(what, route, body, headers): each one a request the service must refuse or bound."""
    from engine.settings import knobs

    def edit(what: str, body: dict, route: str = "/v1/edits") -> tuple[str, str, bytes, dict[str, str]]:
        return what, route, json.dumps(body).encode(), JSON_TYPE

    out = [
        edit("max_tokens 10^9", {"prompt": "a", "max_tokens": 10**9}, "/v1/completions"),
        edit("max_tokens 10^10", {"prompt": "a", "max_tokens": 10**10}, "/v1/completions"),
        edit("max_tokens 10^30", {"prompt": "a", "max_tokens": 10**30}, "/v1/completions"),
        edit("n 10^30", {"prompt": "a", "n": 10**30}, "/v1/completions"),
        edit("span of 10^9 tokens", {**EDIT, "spans": [[0, 3, 10**9]]}),
        edit("span of 8000 tokens", {**EDIT, "spans": [[0, 3, 8000]]}),
        edit("remask 0.99, steps 10^9", {**EDIT, "remask_below": 0.99, "steps": 10**9, "stream": True}),
        edit("64 candidates, 1000 tokens", {**EDIT, "spans": [[0, 3, 1000]], "candidates": 64}),
        edit("span edge inside a ZWJ emoji", {"text": "a \U0001F468\u200D\U0001F469 b", "spans": [[0, 3]]}),
        edit("NUL in the text", {**EDIT, "text": "a\x00b"}),
        ("lone surrogate", "/v1/edits", b'{"text": "ab\\ud800cd", "spans": [[0, 1]]}', JSON_TYPE),
        ("100,000 [", "/v1/edits", b"[" * 100_000, JSON_TYPE),
        ("an integer of 5000 digits", "/v1/edits", b'{"text": "ab", "spans": [[0, 1]], "seed": 1' + b"0" * 5000 + b"}",
         JSON_TYPE),
        ("form post from a web page", "/v1/edits", json.dumps(EDIT).encode(),
         {"content-type": "text/plain", "origin": "http://evil.example"}),
        ("curl -d (form encoded)", "/v1/edits", json.dumps(EDIT).encode(),
         {"content-type": "application/x-www-form-urlencoded"}),
        ("Origin evil.example", "/v1/edits", json.dumps(EDIT).encode(), {**JSON_TYPE, "origin": "http://evil.example"}),
        ("Host attacker.example", "/v1/edits", json.dumps(EDIT).encode(), {**JSON_TYPE, "host": "attacker.example"}),
    ]
    for knob in knobs():
        for name, value in HUGE.items():
            out.append(edit(f"{knob.name} {name}", {**EDIT, knob.name: value}))
    return out


def service_bad_inputs(folder: Path, abandoned: int) -> dict:
    """The engine service on the tiny fixture, sent every request of `service_requests`, one edit that
    self-corrects for as long as it may, and `abandoned` plain clients that give up after 1 s. Each
    answer is a clean refusal (4xx with a JSON error), accepted (2xx), a 500 (plain text or not), a
    hang (no answer within twice --max-seconds and 30 s more) or a kill (the process died)."""
    import httpx

    from engine.tools.service import running_service
    out: dict[str, Any] = {"tries": 0, "clean_refusals": 0, "accepted": 0, "errors_500": 0, "plain_text_500": 0,
                           "hangs": 0, "kills": 0, "failures": []}
    options = ["--model", str(TINY_MODEL), "--max-batch", "4", "--max-queue", "64",
               "--max-seconds", str(SERVICE_MAX_SECONDS)]
    patience = 2 * SERVICE_MAX_SECONDS + 30
    with running_service(options, folder / "service.log", ready_timeout=300, env={"OMP_NUM_THREADS": "1"}) as service, \
            httpx.Client(timeout=patience) as c:
        pid = service.process.pid
        c.post(service.url + "/v1/edits", json=EDIT)  # warm: the baseline holds what any edit allocates
        out["rss_before_mb"] = round(memory_mb(pid)["rss"])
        for what, route, body, headers in service_requests():
            out["tries"] += 1
            verdict = service_try(c, service, route, body, headers)
            if verdict != "clean":
                out["failures"].append(f"{what}: {verdict}")
            out[{"clean": "clean_refusals", "accepted": "accepted", "500": "errors_500", "plain 500": "plain_text_500",
                 "hang": "hangs", "kill": "kills"}[verdict]] += 1
            if verdict == "kill":
                break
        if service.process.poll() is None:
            out.update(held_edit(c, service.url))
            out["abandoned_busy_s"] = abandoned_clients(service.url, abandoned)
            time.sleep(1.0)
            memory = memory_mb(pid)
            out.update(rss_after_mb=round(memory["rss"]), peak_rss_mb=round(memory["peak"]))
    return out


def service_try(c: Any, service: Any, route: str, body: bytes, headers: dict[str, str]) -> str:
    import httpx
    try:
        answer = c.post(service.url + route, content=body, headers=headers)
    except httpx.TransportError:  # a timeout, or the connection gone with the process
        return "kill" if service.process.poll() is not None else "hang"
    try:
        message = answer.json().get("error")
    except ValueError:  # not JSON: a plain-text answer
        message = None
    if answer.status_code < 300:
        return "accepted"
    if answer.status_code < 500 and isinstance(message, str) and message:
        return "clean"
    return "500" if message else "plain 500"


def held_edit(c: Any, url: str) -> dict:
    """An edit that may self-correct for 65,536 steps: it must answer, with its text, within its deadline."""
    body = {**EDIT, "remask_below": 0.99, "steps": 2**16, "strategy": "low_confidence"}
    start = time.perf_counter()
    answer = c.post(url + "/v1/edits", json=body).json()
    seconds = time.perf_counter() - start
    say(f"service: a self-correcting edit answered in {seconds:.1f} s: {str(answer)[:160]!r}")
    return {"deadline_edit_s": round(seconds, 1), "held_past_deadline": int(seconds > 2 * SERVICE_MAX_SECONDS),
            "deadline_said": int("deadline" in answer)}


def abandoned_clients(url: str, clients: int) -> float:
    """`clients` plain requests that give up after 1 s: seconds the model stays busy after they left."""
    import httpx
    long = {**EDIT, "spans": [[0, 31, 40]], "strategy": "low_confidence", "cache": "none"}

    def leave() -> None:
        try:
            httpx.post(url + "/v1/edits", json=long, timeout=httpx.Timeout(5, read=1.0))
        except httpx.TimeoutException:
            pass
    threads = [threading.Thread(target=leave) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    left = time.perf_counter()
    while time.perf_counter() - left < 120:
        health = httpx.get(url + "/health", timeout=10).json()
        if health["active"] == 0 and health["queued"] == 0:
            break
        time.sleep(0.05)
    return round(time.perf_counter() - left, 2)


def main(argv: list[str] | None = None) -> dict:
    if argv is None:
        argv = sys.argv[1:]
    if argv[:1] == ["serve"]:
        serve(*argv[1:3], int(argv[3]))
        return {}
    p = argparse.ArgumentParser(prog="python -m tests.probe", description=__doc__)
    p.add_argument("--model", default="scripted", help="scripted (default), bundled, or a model folder")
    p.add_argument("--sessions", type=int, default=40)
    p.add_argument("--span", type=int, default=128, help="tokens regenerated per session")
    p.add_argument("--candidates", type=int, default=4)
    p.add_argument("--doc-tokens", type=int, default=3900, help="about how long the sessions' document is")
    p.add_argument("--max-rss-mb", type=float, default=8000, help="open no more sessions past this")
    p.add_argument("--kills", type=int, default=3, help="kill -9 rounds")
    p.add_argument("--cli-flag-tries", type=int, default=len(CLI_FLAG_BAD), help="one process each (~7 s)")
    p.add_argument("--cli-lines", type=int, default=len(CLI_JSONL_BAD), help="bad JSONL lines, one process")
    p.add_argument("--abandoned", type=int, default=32, help="service: plain clients that give up after 1 s")
    p.add_argument("--skip", action="append", default=[],
                   choices=["page", "cli", "kill", "sessions", "service"])
    args = p.parse_args(argv)
    figures: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="sharpen-probe-") as tmp:
        folder = Path(tmp)
        db = f"sqlite:///{folder / 'probe.db'}"
        if "sessions" not in args.skip:  # first, in a page of its own: its peak is the sessions' peak
            with running_page(args.model, db, folder) as child:
                figures["sessions"] = many_sessions(child, args.sessions, args.span, args.candidates,
                                                    args.doc_tokens, args.max_rss_mb)
        if "page" not in args.skip:
            with running_page(args.model, db, folder) as child:
                figures["page_bad_input"] = page_bad_inputs(child)
        if "service" not in args.skip:
            figures["service_bad_input"] = service_bad_inputs(folder, args.abandoned)
        if "cli" not in args.skip:
            figures["cli_bad_input"] = cli_bad_inputs(folder, args.cli_flag_tries, args.cli_lines)
        if "kill" not in args.skip:
            figures["kill_mid_save"] = kill_mid_save(args.model, folder, args.kills)
    for check, values in figures.items():
        print(f"{check}: " + ", ".join(f"{k}={v}" for k, v in values.items()))
    print(json.dumps(figures))
    return figures


if __name__ == "__main__":
    main()
