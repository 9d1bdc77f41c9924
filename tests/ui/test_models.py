"""The model picker in headless Chromium at 1280x800: two tiny checkpoints in a --models folder, the
switch from one to the other while the page stays usable, and a regeneration on the new one."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.ui.conftest import SCREENSHOTS, free_port, open_page
from tests.ui.helpers import run_action, select, type_document

pytestmark = pytest.mark.browser

TINY = Path(__file__).resolve().parents[1] / "fixtures" / "tiny-dream"
TEXT = "def add(a, b):\n    return a + b\n"


@pytest.fixture(scope="module")
def picker_url(tmp_path_factory):
    """The page on tiny-a, its picker offering tiny-b beside it (and the bundled model, when installed)."""
    import functools

    from editor.history import History
    from engine import load_model
    from engine.catalog import local_models
    from page.demo import build_demo, launch
    from page.models import Models

    root = tmp_path_factory.mktemp("models")
    for name in ("tiny-a", "tiny-b"):
        shutil.copytree(TINY, root / name)
    first = str(root / "tiny-a")
    model = load_model(first, device="cpu")
    load = functools.partial(load_model, device="cpu")
    scan = functools.partial(local_models, [root], cache_dir=root / "no-hub-cache", device=model.device)
    models = Models.around(model, first, scan(), load, scan)
    demo = build_demo(model, History(f"sqlite:///{root / 'sharpen.db'}"), models=models)
    launch(demo, prevent_thread_lock=True, server_name="127.0.0.1", server_port=free_port(), quiet=True)
    try:
        yield demo.local_url, root
    finally:
        demo.close()


def test_the_picker_lists_the_models_and_switching_swaps_in_the_new_one_for_every_tab(browser, picker_url):
    url, root = picker_url
    with open_page(browser, url) as page:
        assert "tiny-a" in page.inner_text("#title")
        page.click("#dial .toggle-button")
        assert page.inner_text("#model-status") == "running tiny-a"
        page.click("#model-picker input")
        options = page.locator("#model-picker li[role=option]")
        texts = [t.removeprefix("✓").strip() for t in options.all_inner_texts()]
        assert any(t.startswith("tiny-b · dream · 1.1 M params · 2 MB · needs 0.1 GB") for t in texts)
        options.filter(has_text="tiny-b ·").click()
        page.wait_for_function("document.querySelector('#model-status').innerText.trim() == "
                               "'running tiny-b (runs started before the switch finish on tiny-a)'", timeout=60_000)
        assert "tiny-b" in page.inner_text("#title")
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / "model-picker.png"))
        page.click("#dial .toggle-button")
        type_document(page, TEXT)
        select(page, TEXT.index("a + b"), TEXT.index("a + b") + 5)
        run_action(page, "#go-selection")
        assert "done" in page.inner_text("#metrics")

    # Another tab opened after the switch: the model now running, and a model added since.
    shutil.copytree(TINY, root / "tiny-c")  # as `python -m engine pull` or a copy would add one
    with open_page(browser, url) as later:
        later.wait_for_function("document.querySelector('#title').innerText.includes('tiny-b')")
        later.click("#dial .toggle-button")
        assert later.inner_text("#model-status") == "running tiny-b"
        later.click("#model-picker input")
        later.locator("#model-picker li[role=option]", has_text="tiny-c ·").wait_for()
