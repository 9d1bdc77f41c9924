"""The page on the tiny Steerling checkpoint: the title says the attention is block-causal, the Dial's
steer refuses an unknown concept with a message and steers a run with a known one, and the token
inspector lists the concepts behind a committed token."""
from __future__ import annotations

import pytest

from tests.steerling_tiny import write_tiny_steerling
from tests.ui.conftest import SCREENSHOTS, open_page, serve
from tests.ui.helpers import document, open_file, select

pytestmark = pytest.mark.browser

TEXT = " ".join(f"t{i}" for i in range(10, 60))
PHRASE = "t20 t21 t22 t23"
STEER = "#dial-steer textarea, #dial-steer input"


@pytest.fixture(scope="module")
def steerling_url(tmp_path_factory):
    from engine import load_model

    folder = tmp_path_factory.mktemp("steerling")
    write_tiny_steerling(folder)
    with serve(load_model(folder, device="cpu"), tmp_path_factory.mktemp("db")) as url:
        yield url


def set_steer(page, value: str, shot: str | None = None) -> None:
    page.click("#dial .toggle-button")
    if not page.is_visible(STEER):
        page.click("#dial-advanced .label-wrap")
    page.fill(STEER, value)
    page.locator(STEER).press("Tab")  # the textbox's change reaches the page before the run
    if shot:
        page.locator(STEER).scroll_into_view_if_needed()
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / shot))
    page.click("#dial .toggle-button")


def regenerate(page) -> None:
    a = TEXT.index(PHRASE)
    select(page, a, a + len(PHRASE))
    page.click("#go-selection")


def test_steer_in_the_dial_and_concepts_in_the_inspector(browser, steerling_url):
    with open_page(browser, steerling_url) as page:
        note = page.locator("#block-causal")
        assert note.inner_text() == "block-causal (16)" and "end of its block" in note.get_attribute("title")
        open_file(page, "steer.txt", TEXT)

        set_steer(page, "sarcasm=2")
        regenerate(page)
        page.wait_for_selector("#message :text(\"steer: unknown concept 'sarcasm'\")")
        assert document(page) == TEXT

        set_steer(page, "concept 0=30", shot="steerling-dial.png")
        regenerate(page)
        page.wait_for_selector("#metrics [data-state='done']", timeout=30_000)
        page.wait_for_selector("#candidates", state="visible")
        page.click("#live .tok.new, #live .tok.settled >> nth=0")
        page.wait_for_selector("#inspector .sh-concepts")
        rows = page.inner_text("#inspector .sh-concepts")
        assert "concepts behind this token" in rows and "unknown + residual" in rows
        assert "concept 0" in rows  # steered to weight 30: it dominates what raised the token
        page.screenshot(path=str(SCREENSHOTS / "steerling-inspector.png"))
        assert document(page) == TEXT  # unchanged until Accept
