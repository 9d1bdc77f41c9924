"""A real Sharpen page in headless Chromium: the app in-process on a free port, a scripted model
that can be slowed down, and a temporary SQLite history."""
from __future__ import annotations

import os
import socket
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch

CHROMIUM = Path("/usr/bin/chromium")
# Screenshots go to a temp folder; SHARPEN_SCREENSHOTS=docs/screenshots refreshes the README's.
VIEWPORT = {"width": 1280, "height": 800}  # the laptop screen the page is laid out for
SCREENSHOTS = Path(os.environ.get("SHARPEN_SCREENSHOTS") or tempfile.gettempdir() + "/sharpen-screenshots")


class SlowModel:
    """Wraps the scripted model: each forward sleeps `delay` seconds, like a real model on a CPU."""

    def __new__(cls, codec):
        from tests.tiny import ScriptedModel

        class _Slow(ScriptedModel):
            delay = 0.05

            def logits(self, ids):
                time.sleep(self.delay)
                return super().logits(ids)

        # It wants the tokens of ordinary sentences at every position, so regenerated spans read as words.
        words = codec.encode(" It was the best of times, the quick brown fox jumps over the lazy dog." * 40)
        target = torch.tensor(words[:1024])
        confidence = 0.3 + 0.65 * torch.rand(1024, generator=torch.Generator().manual_seed(0))
        return _Slow(codec, target, confidence)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def model():
    from engine import TextCodec
    from tests.tiny import byte_bpe_tokenizer
    return SlowModel(TextCodec.from_tokenizer(byte_bpe_tokenizer(bos=True)))


@contextmanager
def serve(model, folder: Path, **launch_options):
    """The app on a free port with `model` and a fresh SQLite history in `folder`; yields its URL."""
    from editor.history import History
    from page.demo import build_demo, launch
    demo = build_demo(model, History(f"sqlite:///{folder / 'sharpen.db'}"))
    launch(demo, prevent_thread_lock=True, server_name="127.0.0.1", server_port=free_port(), quiet=True,
           **launch_options)
    try:
        yield demo.local_url
    finally:
        demo.close()


@contextmanager
def open_page(browser, url: str):
    """A fresh browser context on `url`, recording dialogs and any request that leaves the app."""
    context = browser.new_context(viewport=VIEWPORT)
    pg = context.new_page()
    pg.set_default_timeout(15_000)
    pg.dialogs = []
    pg.on("dialog", lambda d: (pg.dialogs.append(d.message), d.dismiss()))
    pg.external = []  # requests that leave the app's own server (fonts, scripts, analytics)
    pg.on("request", lambda r: r.url.startswith("http") and not r.url.startswith(url.rstrip("/"))
          and pg.external.append(r.url))
    pg.goto(url)
    pg.wait_for_selector("#document .cm-content")
    pg.wait_for_selector("body[data-sharpen-ready]")  # the last document is reopened: typing may start
    try:
        yield pg
    finally:
        context.close()


@pytest.fixture(scope="session")
def app_url(model, tmp_path_factory):
    with serve(model, tmp_path_factory.mktemp("db")) as url:
        yield url


@pytest.fixture(scope="session")
def browser():
    if not CHROMIUM.exists():
        pytest.skip("no /usr/bin/chromium: install Debian's chromium package to run the browser tests")
    from playwright.sync_api import sync_playwright
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        yield b
        b.close()


@pytest.fixture
def page(browser, app_url, model):
    model.delay = 0.05
    with open_page(browser, app_url) as pg:
        yield pg
