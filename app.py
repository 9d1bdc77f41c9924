"""Sharpen's browser page: `python app.py [--model PATH | --engine URL] [--db URL] [--host H] [--port P] ...`."""
from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path


def main(argv: list[str] | None = None) -> None:
    from engine.load import add_load_flags
    from page.access import LOGIN_MODES, Limits

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--models", action="append", default=[], type=Path, metavar="DIR",
                        help="a folder of model folders the page's model picker offers, besides the bundled "
                             "model and the Hugging Face cache's (repeatable)")
    parser.add_argument("--db", help="database URL (default: SHARPEN_DATABASE_URL, else sharpen.db in the data folder)")
    add_load_flags(parser)
    parser.add_argument("--engine", metavar="URL", help="run edits on `python -m engine serve` at URL instead of "
                        "loading the model here (the page then holds only its tokenizer); its key comes from "
                        "SHARPEN_API_KEY or SHARPEN_API_KEY_FILE. openai:URL: a hosted model's OpenAI-compatible "
                        "fill-in-the-middle API (URL: its base, https://host/v1), its key from SHARPEN_ENGINE_KEY")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=7860)
    parser.add_argument("--login", choices=LOGIN_MODES, default="auto",
                        help="auto (default): a login whenever --host is not loopback; on: always; off: never")
    parser.add_argument("--users", type=Path, help="users file (default: SHARPEN_USERS, else users in the data folder)")
    parser.add_argument("--budget", type=int, default=Limits.budget,
                        help="most steps x candidates x tokens one request may cost (default: %(default)s)")
    parser.add_argument("--runs-per-user", type=int, default=Limits.runs_per_user,
                        help="runs one user may have waiting or running at once (default: %(default)s)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for chatty in ("alembic", "httpx"):  # "Context impl SQLiteImpl.", Gradio's own startup requests
        logging.getLogger(chatty).setLevel(logging.WARNING)
    log = logging.getLogger("sharpen")
    # Nothing leaves the machine: no analytics, no hub lookups (set before gradio is imported).
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    log.info("starting: importing torch, transformers and gradio (the first start takes longest)")

    from editor.db import sqlite_url
    from editor.history import History
    from engine import load_model
    from engine.paths import data_dir
    from page.access import AccessError, logins_for, users_file
    from page.demo import build_demo, launch
    from page.quiet import quiet_stdout

    try:  # before the model loads: a page that may not start says so at once
        logins = logins_for(args.host, args.users or users_file(data_dir()), args.login)
        limits = Limits(args.budget, args.runs_per_user)
    except AccessError as err:
        raise SystemExit(str(err)) from None
    for folder in args.models:
        if not folder.is_dir():
            raise SystemExit(f"error: --models {folder}: no such folder")
    engine_client = connect(args.engine, args.model, args.device) if args.engine else None
    if engine_client is not None:
        model = engine_client.model
        log.info("engine service ready: %s", model.label)
    else:
        log.info("loading the model: %s", args.model or "the bundled SmolLM2-135M (its first start builds a "
                 "weights cache in the data folder: 10-30 s)")
        try:
            model = load_model(args.model, device=args.device, dtype=args.dtype, compile=args.compile,
                               quantize=args.quantize)
        except (OSError, ValueError) as err:  # ModelNotFound, UnsupportedModel, a device this machine lacks
            raise SystemExit(f"error: {err}") from None
        log.info("model ready: %s on %s; memory: %s", model.label, model.device, model.memory)
    url = args.db or os.environ.get("SHARPEN_DATABASE_URL") or sqlite_url(data_dir())
    log.info("opening the history: %s", url.split("@")[-1])  # no password in the log
    history = History(url)
    models = None if engine_client is not None else picker_models(model, args)
    quiet_stdout()
    # quiet: Gradio's banner would suggest share=True (a public tunnel, never wanted here); the URL is ours.
    demo = launch(build_demo(model, history, limits, engine_client=engine_client, models=models),
                  server_name=args.host, server_port=args.port, auth=logins,
                  auth_message="Sharpen: log in to see your documents." if logins else None,
                  quiet=True, prevent_thread_lock=True)
    log.info("ready: open %s in a browser (Ctrl+C stops the page)", demo.local_url)
    demo.block_thread()


def picker_models(model, args: argparse.Namespace):
    """The model picker's choices: the models on this machine (engine/catalog.py), each loaded as
    --device, --dtype, --compile and --quantize say."""
    import functools

    from engine import load_model
    from engine.catalog import local_models
    from page.models import Models

    load = functools.partial(load_model, device=args.device, dtype=args.dtype, compile=args.compile,
                             quantize=args.quantize)
    scan = functools.partial(local_models, args.models, device=model.device, quantize=args.quantize)
    return Models.around(model, args.model, scan(), load, scan)


def connect(url: str, model: str | None, device: str | None):
    """The page's client of the engine service at `url` (its model and device are the service's)."""
    from engine.serve.guard import read_keys
    from page import openai_engine
    from page.engine_client import EngineError, HttpEngine

    if model or device:
        raise SystemExit("error: --engine runs the service's model: leave out --model and --device "
                         "(give them to `python -m engine serve`)")
    try:
        if url.startswith(openai_engine.PREFIX):  # a hosted model: its key is SHARPEN_ENGINE_KEY
            return openai_engine.connect(url)
        keys = read_keys()  # the service's key: SHARPEN_API_KEY, else the first of SHARPEN_API_KEY_FILE
        return HttpEngine(url, api_key=keys[0] if keys else None)
    except (EngineError, ValueError) as err:
        raise SystemExit(f"error: {err}") from None


if __name__ == "__main__":
    main()
