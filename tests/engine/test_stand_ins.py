"""Every stand-in for a model (the scheduler's JobModel, the length tokens' wrapper, the instruction's
Guided, the page's RemoteModel) shows every public attribute of DiffusionLM, with the model's value."""
import dataclasses

import pytest
import torch

from engine import Span, TextCodec, build_canvas
from engine.concepts import Steered
from engine.instruct import Guided, with_instruction
from engine.model import MODEL_ATTRIBUTES, DiffusionLM
from engine.resize import LengthTokensAllowed
from engine.scheduler import JobModel
from engine.serve import wire
from page.engine_client import RemoteModel
from tests.tiny import ScriptedModel, byte_bpe_tokenizer

METHODS = sorted(name for name in dir(DiffusionLM) if not name.startswith("_") and callable(getattr(DiffusionLM, name)))


@pytest.fixture(scope="module")
def model() -> DiffusionLM:
    """A model whose every attribute differs from DiffusionLM's defaults, so a stand-in that shows
    the default instead of the model's value is caught."""
    tok = byte_bpe_tokenizer(bos=True)
    tok.add_special_tokens({"additional_special_tokens": ["<|expand|>", "<|delete|>"]})
    codec = TextCodec.from_tokenizer(tok)
    out = ScriptedModel(codec, torch.zeros(64, dtype=torch.long), torch.full((64,), 0.9))
    out.supports_cache, out.demonstration, out.label = True, True, "scripted, every attribute set"
    out.expand_id, out.delete_id = tok.convert_tokens_to_ids(["<|expand|>", "<|delete|>"])
    out.memory = object()  # type: ignore[assignment]  # load_model's plan: any value shows through
    out.attention_block = 16
    return out


def stand_ins(model: DiffusionLM) -> dict[str, DiffusionLM]:
    canvas = build_canvas(model.codec, "Make it shorter. The quick brown fox.", [Span(4, 9)])
    instructed = with_instruction(canvas, "shorter", model.max_length)
    return {"job": JobModel(model, lambda calls: model.forward_many(calls)),
            "length tokens": LengthTokensAllowed(model, dataclasses.replace(model.codec, banned_ids=())),
            "guided": Guided(model, instructed, 1.0, slice(0, instructed.length)),
            "steered": Steered(model, (("a concept", 2.0),))}


def test_every_attribute_and_method_of_the_model_reaches_each_stand_in(model):
    assert {"codec", "expand_id", "delete_id", "memory", "demonstration"} <= set(MODEL_ATTRIBUTES)
    for kind, stand_in in stand_ins(model).items():
        for name in MODEL_ATTRIBUTES:
            if kind == "length tokens" and name == "codec":
                continue  # the one attribute this stand-in exists to change
            assert getattr(stand_in, name) is getattr(model, name), (kind, name)
        for name in METHODS:
            assert callable(getattr(stand_in, name)), (kind, name)


def test_a_stand_in_shows_the_model_as_it_is_now(model):
    job = stand_ins(model)["job"]
    before = model.memory
    model.memory = "estimated after the stand-in was made"  # type: ignore[assignment]
    try:
        assert job.memory == "estimated after the stand-in was made"
    finally:
        model.memory = before


def test_a_stand_in_forwards_the_models_logits(model):
    ids = torch.full((1, 8), model.codec.mask_id)
    for kind, stand_in in stand_ins(model).items():
        if kind != "guided":  # Guided mixes the instructed canvas's logits (tests/engine/test_instruct.py)
            assert torch.equal(stand_in.logits(ids), model.logits(ids)), kind


def test_a_served_model_shows_what_the_wire_carries(model):
    info = {"model": "scripted", **wire.model_json(model)}
    remote = RemoteModel(info, "http://127.0.0.1:1")
    for name in wire.DESCRIBED:
        if name != "label":
            assert getattr(remote, name) == getattr(model, name), name
    assert remote.label == "scripted, every attribute set (served by http://127.0.0.1:1)"
    assert remote.codec.encode("The quick brown fox.") == model.codec.encode("The quick brown fox.")
    assert remote.mask_id == model.mask_id
    for name in [*MODEL_ATTRIBUTES, *METHODS]:
        assert hasattr(remote, name), name
    # No weights here: no cache, no length tokens (the page never resizes through the service).
    assert (remote.supports_cache, remote.expand_id) == (False, None)
    assert remote.fluency() is None and remote.causal_view() is None
