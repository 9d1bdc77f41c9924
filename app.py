"""Sharpen's browser page: `python app.py [--model PATH] [--db URL] [--host H] [--port P]` (README.md)."""
from __future__ import annotations

import argparse
import logging
import os


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", help="model folder or cached hub id (default: the bundled model)")
    parser.add_argument("--db", help="database URL (default: SHARPEN_DATABASE_URL, else sharpen.db in the data folder)")
    parser.add_argument("--device", help="cpu or cuda")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=7860)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # Nothing leaves the machine: no analytics, no hub lookups (set before gradio is imported).
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    from editor.db import sqlite_url
    from editor.history import History
    from engine import load_model
    from engine.paths import data_dir
    from page.demo import build_demo, launch

    model = load_model(args.model, device=args.device)
    url = args.db or os.environ.get("SHARPEN_DATABASE_URL") or sqlite_url(data_dir())
    launch(build_demo(model, History(url)), server_name=args.host, server_port=args.port)


if __name__ == "__main__":
    main()
