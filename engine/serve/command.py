"""`python -m engine serve`: load the model, then serve it with uvicorn until interrupted."""
from __future__ import annotations

import argparse
import functools
import math
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from ..model import DiffusionLM
from ..settings import SamplerSettings
from .guard import Policy, read_keys, startup_note

if TYPE_CHECKING:
    import uvicorn


def serve(args: argparse.Namespace, settings_for: Callable[[DiffusionLM | None], SamplerSettings],
          stderr: TextIO) -> int:
    """Flags come from engine.cli's `serve` parser; `settings_for(model)` gives the edits' defaults
    from its preset (None: the model's own) and sampler flags."""
    from ..load import load_model

    settings_for(None)  # bad sampler flags are refused before the model loads
    if args.max_batch < 1 or args.max_queue < 0:
        print(f"error: --max-batch must be >= 1 and --max-queue >= 0, got {args.max_batch} and {args.max_queue}",
              file=stderr)
        return 2
    if args.budget < 1 or not 0 < args.max_seconds < math.inf:
        print(f"error: --budget must be >= 1 and --max-seconds > 0, got {args.budget} and {args.max_seconds}",
              file=stderr)
        return 2
    try:
        policy = Policy(read_keys(args.api_key, args.api_key_file), tuple(args.allowed_host),
                        tuple(args.allowed_origin), args.open_health)
    except ValueError as err:
        print(f"error: {err}", file=stderr)
        return 2
    sources = args.model if isinstance(args.model, list) else [args.model]  # --model is repeatable
    args.model, names = sources[0] if sources else None, [model_name(s) for s in sources]
    if len(set(names)) < len(names):
        print(f"error: --model: two models would be served as one name ({', '.join(names)}); "
              "give folders with different names", file=stderr)
        return 2
    if args.tp != 1 or "WORLD_SIZE" in os.environ:  # under torchrun: one shard per process
        if len(sources) > 1:
            print("error: --tp serves one model: give --model once", file=stderr)
            return 2
        from .sharded import serve_sharded
        return serve_sharded(args, functools.partial(start, args, settings_for, policy, stderr), stderr)
    t0 = time.perf_counter()
    try:
        model, *others = [load_model(s, device=args.device, dtype=args.dtype, compile=args.compile,
                                     quantize=args.quantize) for s in sources or [None]]
    except (OSError, ValueError) as err:  # ModelNotFound, UnsupportedModel, a device this machine lacks
        print(f"error: {err}", file=stderr)
        return 2
    more = {name: (m, settings_for(m)) for name, m in zip(names[1:], others)}
    start(args, settings_for, policy, stderr, model, t0, more).run()
    return 0


def model_name(source: str | None) -> str:
    """The id a served model answers to: its folder's or hub repo's last part; the bundled one's."""
    return Path(source).name if source else "sharpen-default"


def start(args: argparse.Namespace, settings_for: Callable[[DiffusionLM | None], SamplerSettings],
          policy: Policy, stderr: TextIO, model: DiffusionLM, t0: float,
          more: dict[str, tuple[DiffusionLM, SamplerSettings]] | None = None) -> uvicorn.Server:
    """The server of `model` and `more` models by name (loaded since `t0`), said on stderr, not yet running."""
    import uvicorn

    from .app import create_app

    model_id = model_name(args.model)
    also = "".join(f", {m.label} as {name!r}" for name, (m, _) in (more or {}).items())
    print(f"loaded {model.label} in {time.perf_counter() - t0:.1f} s; serving it as {model_id!r}{also} "
          f"at http://{args.host}:{args.port}", file=stderr, flush=True)
    print(startup_note(policy, args.host), file=stderr, flush=True)
    app = create_app(model, defaults=settings_for(model), max_batch=args.max_batch, max_queue=args.max_queue,
                     model_id=model_id, policy=policy, budget=args.budget, max_seconds=args.max_seconds,
                     docs=args.docs, more=more)
    return uvicorn.Server(uvicorn.Config(app, host=args.host, port=args.port, log_level="info"))


@contextmanager
def in_thread(app: Any, host: str = "127.0.0.1", start_timeout: float = 20.0) -> Iterator[str]:
    """`app` served by uvicorn on a free port of `host` in a thread (for tests and benchmarks);
    yields its base URL and stops the server on the way out."""
    import uvicorn

    sock = socket.socket()
    sock.bind((host, 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=2))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + start_timeout
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError(f"the service did not start within {start_timeout:g} s")
        time.sleep(0.01)
    try:
        yield f"http://{host}:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(10)  # the app's shutdown waits at most SHUTDOWN_WAIT for its scheduler
        sock.close()
