"""One edit in the browser through a hosted model (`--engine openai:URL`), the host being Sharpen's
own service in process: the text streams into the span, then the candidates are offered and accepted."""
import torch

from editor.history import History
from engine import load_model
from engine.serve.app import create_app
from engine.serve.command import in_thread as served
from page.demo import build_demo, launch
from page.openai_engine import OpenAIEngine
from tests.engine.serve.conftest import FIXTURE
from tests.ui.conftest import SCREENSHOTS, free_port, open_page
from tests.ui.helpers import RECORD_LIVE, document, select, wait_document

TEXT = "for i in range(10):\n    print(i)\n"


def test_an_edit_through_a_hosted_model_streams_then_offers_candidates(browser, tmp_path):
    torch.set_num_threads(1)
    with served(create_app(load_model(FIXTURE, device="cpu"))) as base:
        engine = OpenAIEngine(base + "/v1")
        demo = build_demo(engine.model, History(f"sqlite:///{tmp_path / 'sharpen.db'}"), engine_client=engine)
        launch(demo, prevent_thread_lock=True, server_name="127.0.0.1", server_port=free_port(), quiet=True)
        try:
            with open_page(browser, demo.local_url) as page:
                page.set_input_files("input[type=file]", files=[
                    {"name": "loop.py", "mimeType": "text/x-python", "buffer": TEXT.encode()}])
                wait_document(page, TEXT)
                a = TEXT.index("print(i)")
                select(page, a, a + len("print(i)"))
                page.evaluate(RECORD_LIVE)
                page.click("#go-selection")
                page.wait_for_selector("#metrics [data-state='done']", timeout=30_000)
                page.wait_for_selector("#candidates", state="visible")
                SCREENSHOTS.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(SCREENSHOTS / "hosted-model.png"))
                frames = page.evaluate("window.__frames")
                assert any("tok masked" in f for f in frames)  # drawn while it streamed
                assert "hosted at" in page.inner_text("body")
                title = page.inner_text("#title").strip().splitlines()
                assert title[-1].startswith("hosted at")  # cut short by the layout, "hosted" still shows
                # Its figures in its own terms: chunks of text, not forwards, tokens or confidences.
                metrics = page.locator("#metrics .sh-metrics")
                assert "hosted model" in metrics.inner_text() and "chunks" in metrics.inner_text()
                assert "forwards of the model" not in metrics.get_attribute("title")
                assert "no base model here reads them" in page.inner_text("#candidates")
                page.locator("#live .tok[data-pos]").first.click()
                page.wait_for_selector("#inspector :text('streamed by the hosted model')")
                assert "sure" not in page.inner_text("#inspector")
                assert document(page) == TEXT  # unchanged until Accept
                page.click("#accept")
                page.wait_for_selector("#confirm-text :text('Accept it anyway'), #message :text('Accepted candidate')")
                if page.is_visible("#confirm"):
                    page.click("#accept-anyway")
                wait_document(page, TEXT, changed=True)
                edited = document(page)
                assert edited.startswith(TEXT[:a]) and edited.endswith(TEXT[a + len("print(i)"):])
        finally:
            demo.close()
