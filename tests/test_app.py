"""The page starts, streams real denoising steps, and leaves the document alone on bad input."""
import pytest
import torch

from app import build_demo, utf16_to_index
from engine import TextCodec
from tests.tiny import ScriptedModel, byte_bpe_tokenizer


@pytest.fixture(scope="module")
def client():
    from gradio_client import Client
    codec = TextCodec.from_tokenizer(byte_bpe_tokenizer(bos=True))
    model = ScriptedModel(codec, torch.randint(10, 300, (512,), generator=torch.Generator().manual_seed(0)),
                          torch.full((512,), 0.5))
    demo = build_demo(model)
    demo.launch(prevent_thread_lock=True, server_port=None, quiet=True)
    yield Client(demo.local_url, verbose=False)
    demo.close()


def test_regenerate_streams_steps_then_the_final_document(client):
    text = "The quick brown fox jumps over the lazy dog."
    job = client.submit(text, 4, 15, "low_confidence", 32, 0, fn_index=0)
    updates = list(job)
    drafts = [u[1] for u in updates]
    assert len(drafts) >= 3 and any("\u2591" in d for d in drafts[:-1])  # masked slots shown mid-way
    final_doc = updates[-1][0]
    assert final_doc.startswith("The ") and final_doc.endswith(" jumps over the lazy dog.")


def test_empty_selection_is_a_clear_error_not_a_change(client):
    with pytest.raises(Exception, match="Select some text"):
        client.predict("Some text", 3, 3, "threshold", 8, 0, fn_index=0)


def test_utf16_offsets_become_python_indices():
    text = "a🙂b"  # the emoji is two UTF-16 units, one Python character
    assert [utf16_to_index(text, u) for u in (0, 1, 3, 4)] == [0, 1, 2, 3]
