"""`python -m engine.tools.loadtest`: concurrent clients against the engine service, batched beside one at a time.

One run starts two services on the same model, `--max-batch 1` (one edit at a time) and batched,
and sends both the same edits from 1, 4, 16 and 32 concurrent clients (closed loop: each client
sends its next edit when the last one came back). Every response is checked against its own
request: the text outside the span byte for byte, and each client's document is distinct, so an
edit lost or crossed between clients fails the check. Figures per level: edits/s, tokens/s,
p50/p99 latency, the mean batch the scheduler ran (from /metrics), the service's CPU seconds per
edit (its cost, which other jobs on a shared machine do not inflate as they do wall time), errors.

The documents are the benchmark's held-out text (engine.tools.corpus: BENCH_FILES and the
benchmark's pydoc topics), cut into ~512-token pieces on line breaks; spans are 32 tokens.
"""
from __future__ import annotations

import argparse
import json
import logging
import math
import os
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import asdict, dataclass
from pathlib import Path

from tokenizers import Tokenizer

from ..scheduler import MAX_BATCH
from . import corpus
from .service import Reply, Service, get, metrics, post_json, running_service

log = logging.getLogger(__name__)

LEVELS = (1, 4, 16, 32)
QUICK_LEVELS = (1, 4)
BATCH_METRIC = "sharpen_batch_size"  # a histogram: one observation per batched forward
TARGET_LEVEL, TARGET_SPEEDUP, TARGET_TAIL = 16, 1.5, 3.0


@dataclass(frozen=True)
class Edit:
    """One request: a client's document and the span (characters) to regenerate at `tokens` tokens."""

    client: int
    text: str
    start: int
    end: int
    tokens: int
    seed: int

    def payload(self) -> dict:
        return {"text": self.text, "spans": [[self.start, self.end, self.tokens]], "seed": self.seed}


def source_text() -> str:
    """The benchmark's held-out code (BENCH_FILES) and prose (its leading pydoc topics)."""
    code = [(corpus.stdlib_root() / name).read_text() for name in corpus.BENCH_FILES]
    prose_docs = corpus.prose_documents()
    names = corpus.bench_prose_names(prose_docs)
    return "\n\n".join(code + [doc.text for doc in prose_docs if doc.name in names])


def documents(tokenizer: Tokenizer, text: str, count: int, tokens: int) -> list[str]:
    """`count` distinct documents of about `tokens` tokens each: consecutive runs of whole lines."""
    lines = text.splitlines(keepends=True)
    sizes = [len(e.ids) for e in tokenizer.encode_batch(lines, add_special_tokens=False)]
    docs: list[str] = []
    current: list[str] = []
    used = 0
    for line, size in zip(lines, sizes):
        if used and used + size / 2 > tokens:  # the line break nearest to `tokens`
            docs.append("".join(current))
            current, used = [], 0
        current.append(line)
        used += size
    docs = [d for d in dict.fromkeys(docs) if d.strip()]  # distinct, so a crossed reply shows
    if len(docs) < count:
        raise ValueError(f"the source text gives {len(docs)} distinct {tokens}-token documents, {count} needed")
    return docs[:count]


def client_edits(tokenizer: Tokenizer, doc: str, client: int, requests: int, span_tokens: int) -> list[Edit]:
    """`requests` edits of one document, spans on token edges spread over its middle half."""
    offsets = tokenizer.encode(doc, add_special_tokens=False).offsets
    if len(offsets) < 2 * span_tokens:
        raise ValueError(f"a {len(offsets)}-token document is too short for {span_tokens}-token spans")
    edits = []
    for r in range(requests):
        share = 0.25 + 0.5 * ((client * requests + r) * 0.618 % 1.0)  # golden-ratio spread: no two alike
        first = int(share * (len(offsets) - span_tokens))
        start, end = offsets[first][0], offsets[first + span_tokens - 1][1]
        edits.append(Edit(client, doc, start, end, span_tokens, seed=1000 * client + r))
    return edits


def check(edit: Edit, reply: Reply) -> str | None:
    """What is wrong with `reply` as the answer to `edit`, or None: HTTP 200, one span where the
    request's was, and the text outside it exactly the request's own (`check_text`)."""
    if reply.status != 200:
        error = reply.body.get("error") if isinstance(reply.body, dict) else reply.body
        return f"HTTP {reply.status}: {str(error)[:200]}"
    body = reply.body
    if not isinstance(body, dict) or not isinstance(body.get("text"), str):
        return f"no text in the reply: {str(body)[:200]}"
    text, spans = body["text"], body.get("spans")
    if not isinstance(spans, list) or len(spans) != 1 or len(spans[0]) < 2:
        return f"expected one span in the reply, got {spans!r}"
    start, end = spans[0][:2]
    if start != edit.start or end - start != len(text) - (len(edit.text) - (edit.end - edit.start)):
        return f"the reply's span {start}:{end} is not where the new text lies ({len(text)} characters)"
    return check_text(edit, text)


def check_text(edit: Edit, text: str) -> str | None:
    """What is wrong with `text` as the edited document, or None: everything outside the span is the
    request's own text byte for byte. Each client's document is distinct, so a text meant for
    another client fails here."""
    before, after = edit.text[:edit.start], edit.text[edit.end:]
    if len(text) < len(before) + len(after):
        return f"the edited text is shorter ({len(text)}) than the text outside the span ({len(before) + len(after)})"
    if not text.startswith(before):
        return f"text before the span changed (first difference at {_first_difference(text, before)})"
    if not text.endswith(after):
        return "text after the span changed"
    return None


def _first_difference(a: str, b: str) -> int:
    return next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))


@dataclass(frozen=True)
class Outcome:
    started: float
    finished: float
    tokens: int   # the span's tokens: the edit's generated tokens
    problem: str | None


@dataclass(frozen=True)
class Row:
    """One concurrency level against one service."""

    mode: str
    clients: int
    edits: int
    errors: int
    edits_per_s: float
    tokens_per_s: float
    p50_ms: float
    p99_ms: float
    mean_batch: float | None
    cpu_s_per_edit: float | None  # the service's CPU seconds per answered edit: its cost on a shared machine


def run_level(url: str, work: Sequence[Sequence[Edit]]) -> list[Outcome]:
    """Each client (a thread) sends its edits one after another; all start together."""
    start_together = threading.Barrier(len(work))

    def client(edits: Sequence[Edit]) -> list[Outcome]:
        start_together.wait()
        outcomes = []
        for edit in edits:
            started = time.perf_counter()
            try:
                problem = check(edit, post_json(url + "/v1/edits", edit.payload()))
            except OSError as err:  # refused, reset, timed out
                problem = f"{type(err).__name__}: {err}"
            outcomes.append(Outcome(started, time.perf_counter(), edit.tokens, problem))
        return outcomes

    with ThreadPoolExecutor(len(work)) as pool:
        return [o for outcomes in pool.map(client, work) for o in outcomes]


def measure(mode: str, service: Service, work: Sequence[Sequence[Edit]]) -> tuple[Row, list[str]]:
    """One level's row, and the problems its responses had."""
    before, cpu_before = metrics(service.url), service.cpu_seconds()
    outcomes = run_level(service.url, work)
    after, cpu_after = metrics(service.url), service.cpu_seconds()
    good = [o for o in outcomes if o.problem is None]
    wall = max(o.finished for o in outcomes) - min(o.started for o in outcomes)
    latencies = sorted(1000 * (o.finished - o.started) for o in good) or [math.nan]
    cpu = cpu_after - cpu_before if cpu_before is not None and cpu_after is not None else None
    row = Row(mode, len(work), len(outcomes), len(outcomes) - len(good), len(good) / wall,
              sum(o.tokens for o in good) / wall, statistics.median(latencies), percentile(latencies, 0.99),
              mean_batch(before, after), cpu / len(good) if cpu is not None and good else None)
    return row, [o.problem for o in outcomes if o.problem]


def percentile(ordered: Sequence[float], share: float) -> float:
    """Nearest rank: the smallest value with at least `share` of the values at or below it."""
    return ordered[max(0, math.ceil(share * len(ordered)) - 1)]


def mean_batch(before: dict[str, float], after: dict[str, float]) -> float | None:
    """Edits per batched forward between two scrapes of /metrics (None when the metric is absent)."""
    total, count = (after.get(f"{BATCH_METRIC}_{k}", 0.0) - before.get(f"{BATCH_METRIC}_{k}", 0.0)
                    for k in ("sum", "count"))
    return total / count if count else None


def verdict(rows: Sequence[Row]) -> str:
    """The issue's target at 16 clients: batched >= 1.5x the edits/s of one at a time, p99 <= 3x p50, 0 errors."""
    at = {r.mode: r for r in rows if r.clients == TARGET_LEVEL}
    if set(at) != {"one-at-a-time", "batched"}:
        return f"target: not measured ({TARGET_LEVEL} clients not in this run)"
    single, batched = at["one-at-a-time"], at["batched"]
    speedup, tail = batched.edits_per_s / single.edits_per_s, batched.p99_ms / batched.p50_ms
    met = speedup >= TARGET_SPEEDUP and tail <= TARGET_TAIL and batched.errors == single.errors == 0
    cpu = (f"; its CPU seconds per edit {single.cpu_s_per_edit / batched.cpu_s_per_edit:.2f}x fewer"
           if single.cpu_s_per_edit and batched.cpu_s_per_edit else "")
    return (f"target at {TARGET_LEVEL} clients: batched {speedup:.2f}x the edits/s of one at a time "
            f"(>= {TARGET_SPEEDUP}x), p99 {tail:.2f}x p50 (<= {TARGET_TAIL:g}x), errors {batched.errors}"
            f"+{single.errors} (0): {'MET' if met else 'MISSED'}{cpu}")


def table(rows: Sequence[Row]) -> str:
    """Markdown rows; speed-up: a batched row's edits/s over the one-at-a-time row of its level."""
    single = {r.clients: r.edits_per_s for r in rows if r.mode == "one-at-a-time"}
    lines = ["| clients | mode | edits | edits/s | speed-up | tokens/s | p50 ms | p99 ms | mean batch | CPU s/edit "
             "| errors |", "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        batch = "n/a" if r.mean_batch is None else f"{r.mean_batch:.2f}"
        cpu = "n/a" if r.cpu_s_per_edit is None else f"{r.cpu_s_per_edit:.2f}"
        ratio = f"{r.edits_per_s / single[r.clients]:.2f}x" if r.mode == "batched" and single.get(r.clients) else ""
        lines.append(f"| {r.clients} | {r.mode} | {r.edits} | {r.edits_per_s:.3g} | {ratio} | {r.tokens_per_s:.3g} "
                     f"| {r.p50_ms:,.0f} | {r.p99_ms:,.0f} | {batch} | {cpu} | {r.errors} |")
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m engine.tools.loadtest", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="model folder (default: the bundled model)")
    parser.add_argument("--clients", help="comma-separated concurrency levels (default: 1,4,16,32; --quick 1,4)")
    parser.add_argument("--requests", type=int, default=2, help="edits each client sends per level (%(default)s)")
    parser.add_argument("--max-batch", type=int, default=MAX_BATCH,
                        help="the batched service's --max-batch (%(default)s)")
    parser.add_argument("--doc-tokens", type=int, help="document length in tokens (512; --quick 128)")
    parser.add_argument("--span-tokens", type=int, help="span length in tokens (32; --quick 8)")
    parser.add_argument("--threads", type=int, help="torch threads of each service (OMP_NUM_THREADS; default: torch's)")
    parser.add_argument("--quick", action="store_true", help="a toy run: 1 and 4 clients, short documents")
    parser.add_argument("--json", action="store_true", help="print the rows as JSON lines instead of a table")
    args = parser.parse_args(argv)
    args.levels = [int(n) for n in args.clients.split(",")] if args.clients else \
        list(QUICK_LEVELS if args.quick else LEVELS)
    args.doc_tokens = args.doc_tokens or (128 if args.quick else 512)
    args.span_tokens = args.span_tokens or (8 if args.quick else 32)
    if min(args.levels) < 1 or args.requests < 1 or args.max_batch < 2:
        parser.error("clients and --requests must be >= 1, --max-batch >= 2")
    return args


def tokenizer_of(service_url: str) -> Tokenizer:
    """The service's own tokenizer (GET /v1/tokenizer), so spans fall on the token edges it sees."""
    return Tokenizer.from_str(json.loads(get(service_url + "/v1/tokenizer").body)["tokenizer"])


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="[%(module)s] %(message)s")  # progress to stderr
    args = parse_args(argv)
    load_before = os.getloadavg()[0]
    with ExitStack() as stack, tempfile.TemporaryDirectory() as logs:
        threads = {"OMP_NUM_THREADS": str(args.threads)} if args.threads else None
        services = {mode: stack.enter_context(running_service(options, Path(logs) / f"{mode}.log", env=threads))
                    for mode, options in service_options(args).items()}
        model = json.loads(get(services["batched"].url + "/health").body)["model"]
        rows, problems = run_levels(services, args)
    for problem in problems[:20]:
        log.error("%s", problem)
    if args.json:
        print("\n".join(json.dumps(asdict(r)) for r in rows))
    else:
        print(f"{model}; {args.span_tokens}-token spans in ~{args.doc_tokens}-token documents, {args.requests} "
              f"edits per client per level; batched: --max-batch {args.max_batch}; torch threads: "
              f"{args.threads or 'default'}; {os.cpu_count()} cores, "
              f"load average {load_before:.1f} before, {os.getloadavg()[0]:.1f} after\n")
        print(table(rows) + "\n\n" + verdict(rows))
    return 1 if problems else 0


def service_options(args: argparse.Namespace) -> dict[str, list[str]]:
    """The two services' flags: the same model and queue, one at a time or batched."""
    model = ["--model", args.model] if args.model else []
    queue = ["--max-queue", str(2 * max(args.levels))]  # room for every client: no 503 in a closed loop
    return {"one-at-a-time": [*model, *queue, "--max-batch", "1"],
            "batched": [*model, *queue, "--max-batch", str(args.max_batch)]}


def run_levels(services: dict[str, Service], args: argparse.Namespace) -> tuple[list[Row], list[str]]:
    """Every level against every service, interleaved (so a busy spell on a shared machine hits both
    alike), after one warm-up edit each; the rows and every problem found."""
    tokenizer = tokenizer_of(services["batched"].url)
    docs = documents(tokenizer, source_text(), max(args.levels), args.doc_tokens)
    rows: list[Row] = []
    problems: list[str] = []
    for mode, service in services.items():  # not counted: the first forwards allocate and initialise
        warm_up = run_level(service.url, [client_edits(tokenizer, docs[0], 0, 1, args.span_tokens)])
        problems += [f"{mode}, warm-up: {o.problem}" for o in warm_up if o.problem]
    for clients in args.levels:
        work = [client_edits(tokenizer, docs[c], c, args.requests, args.span_tokens) for c in range(clients)]
        for mode, service in services.items():
            row, found = measure(mode, service, work)
            rows.append(row)
            problems += [f"{mode}, {clients} clients: {p}" for p in found]
            log.info("%s, %d clients: %.2f edits/s, p50 %.0f ms, %d errors",
                     mode, clients, row.edits_per_s, row.p50_ms, row.errors)
    return rows, problems


if __name__ == "__main__":
    sys.exit(main())
